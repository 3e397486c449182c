"""`manage.py check --deploy` is clean with production settings from the environment, and refuses the
development defaults (OPERATIONS.md). Each run is a fresh process, as an operator would start it."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_ONLY = ("DJANGO_DEBUG", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "CEZBEK_ENCRYPTION_KEY", "CEZBEK_LOG_FORMAT")


def environment(**production: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DEVELOPMENT_ONLY}
    env.update(production, DJANGO_SETTINGS_MODULE="cezbek.settings")
    return env


def production() -> dict:
    return environment(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="cezbek.example.com",
        CEZBEK_ENCRYPTION_KEY=secrets.token_urlsafe(32),
    )


def check_deploy(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = check_deploy(production())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_check_deploy_refuses_the_development_defaults():
    result = check_deploy(environment())
    assert result.returncode != 0
    output = result.stdout + result.stderr
    # OPERATIONS.md: the development values are refused, as errors (a plain `check --deploy` fails too)
    for error in ("cezbek.E001", "cezbek.E002", "cezbek.E003", "cezbek.E004"):
        assert error in output
    assert "security.W018" in output  # DEBUG on
    assert "security.W009" in output  # the development secret key
    # HSTS, HTTPS, the session and CSRF cookies. The session cookie's warning names the sessions app
    # (W010): Django looks for its own SessionMiddleware by name, and ours is a subclass (W011, or
    # W012 for both, would name the middleware).
    for setting in ("security.W004", "security.W008", "security.W010", "security.W016"):
        assert setting in output


def test_check_deploy_refuses_a_short_secret_key():
    env = production()
    env["DJANGO_SECRET_KEY"] = "too-short"
    result = check_deploy(env)
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


PROBE = """
import django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="cezbek.example.com")
for path in ("/healthz", "/api/v1/cashbacks", "/admin/login/"):
    response = client.get(path)
    print(path, response.status_code, response.get("Location", ""), response.get("Strict-Transport-Security", ""))
print("secure", client.get("/healthz", secure=True).get("Strict-Transport-Security", ""))
print("wrong-host", Client(HTTP_HOST="attacker.example").get("/healthz").status_code)
"""


def test_production_redirects_to_https_but_answers_probes_on_plain_http():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=production(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert lines["/healthz"].split()[0] == "200"  # a load balancer's or kubelet's plain-HTTP probe
    assert lines["/api/v1/cashbacks"].split()[:2] == ["301", "https://cezbek.example.com/api/v1/cashbacks"]
    assert lines["/admin/login/"].split()[0] == "301"
    assert lines["secure"].startswith("max-age=31536000; includeSubDomains; preload")
    assert lines["wrong-host"] == "400"  # DJANGO_ALLOWED_HOSTS still applies to probes


def database_options(**env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default'].get('OPTIONS'))"],
        cwd=ROOT, env=environment(**env), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_postgresql_connect_gives_up_after_a_timeout_unless_the_url_sets_one():
    url = "postgres://cezbek@db.example.com:5432/cezbek"
    assert database_options(DATABASE_URL=url) == "{'connect_timeout': 10}"
    assert database_options(DATABASE_URL=url, DATABASE_CONNECT_TIMEOUT="3") == "{'connect_timeout': 3}"
    assert database_options(DATABASE_URL=f"{url}?connect_timeout=5") == "{'connect_timeout': 5}"


def test_plain_check_deploy_fails_on_each_development_value_alone():
    # each development value left in an otherwise production environment, without --fail-level
    for name, error in (
        ("DJANGO_DEBUG", "cezbek.E001"),
        ("DJANGO_SECRET_KEY", "cezbek.E002"),
        ("DJANGO_ALLOWED_HOSTS", "cezbek.E003"),
        ("CEZBEK_ENCRYPTION_KEY", "cezbek.E004"),
    ):
        env = production()
        del env[name]
        result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0, name
        assert error in result.stderr, (name, result.stderr)
    clean = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=production(), capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
