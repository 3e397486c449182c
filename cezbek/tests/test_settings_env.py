"""Settings from the environment: a bad value stops the process at startup with one line naming
the variable (ImproperlyConfigured), instead of a traceback deep in a parser or a silently wrong
setting (NaN, a negative limit, a zero window that turns the velocity hold off)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def settings_read(**env: str) -> subprocess.CompletedProcess:
    """`import cezbek.settings` in a fresh process with these variables set."""
    printed = ("CEZBEK_VELOCITY_LIMIT", "CEZBEK_VELOCITY_WINDOW_SECONDS", "DJANGO_DEBUG")  # their defaults, unless given
    environ = {k: v for k, v in os.environ.items() if k not in env and k not in printed}
    return subprocess.run(
        [sys.executable, "-c", "import cezbek.settings as s; print(s.CEZBEK_VELOCITY_LIMIT, s.CEZBEK_VELOCITY_WINDOW_SECONDS, s.DEBUG)"],
        env={**environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CEZBEK_VELOCITY_WINDOW_SECONDS", "abc", "CEZBEK_VELOCITY_WINDOW_SECONDS='abc': must be a whole number"),
        ("CEZBEK_VELOCITY_WINDOW_SECONDS", "1.5", "CEZBEK_VELOCITY_WINDOW_SECONDS='1.5': must be a whole number"),
        ("CEZBEK_VELOCITY_WINDOW_SECONDS", "0", "CEZBEK_VELOCITY_WINDOW_SECONDS='0': must be more than 0"),
        ("CEZBEK_VELOCITY_WINDOW_SECONDS", "-1", "CEZBEK_VELOCITY_WINDOW_SECONDS='-1': must be more than 0"),
        ("CEZBEK_VELOCITY_LIMIT", "abc", "CEZBEK_VELOCITY_LIMIT='abc': must be a decimal number"),
        ("CEZBEK_VELOCITY_LIMIT", "NaN", "CEZBEK_VELOCITY_LIMIT='NaN': must be a decimal number"),
        ("CEZBEK_VELOCITY_LIMIT", "Infinity", "CEZBEK_VELOCITY_LIMIT='Infinity': must be a decimal number"),
        ("CEZBEK_VELOCITY_LIMIT", "sNaN", "CEZBEK_VELOCITY_LIMIT='sNaN': must be a decimal number"),
        ("CEZBEK_VELOCITY_LIMIT", "-5", "CEZBEK_VELOCITY_LIMIT='-5': must be more than 0"),
        ("REDIS_SOCKET_TIMEOUT", "x", "REDIS_SOCKET_TIMEOUT='x': must be a number"),
        ("CEZBEK_READYZ_TIMEOUT", "nan", "CEZBEK_READYZ_TIMEOUT='nan': must be a number"),
        ("CEZBEK_PAYOUT_GATHER_SECONDS", "-1", "CEZBEK_PAYOUT_GATHER_SECONDS='-1': must be at least 0"),
        ("CEZBEK_BATCH_CHUNK_SIZE", "0", "CEZBEK_BATCH_CHUNK_SIZE='0': must be more than 0"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG='maybe': must be one of 1, true, yes, on, 0, false, no, off"),
        ("CEZBEK_LOG_LEVEL", "LOUD", "CEZBEK_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not 'LOUD'"),
        ("REDIS_URL", "notaurl", "REDIS_URL must start with redis://, rediss:// or unix://"),
    ],
)
def test_a_bad_value_stops_the_process_with_one_line_naming_the_variable(name, value, message):
    result = settings_read(**{name: value})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"django.core.exceptions.ImproperlyConfigured: {message}"


def test_good_values_are_read_and_unset_ones_take_their_defaults():
    assert settings_read().stdout.split() == ["2000000.00", "600", "True"]
    read = settings_read(CEZBEK_VELOCITY_LIMIT=" 1500.50 ", CEZBEK_VELOCITY_WINDOW_SECONDS="60", DJANGO_DEBUG="off")
    assert read.stdout.split() == ["1500.50", "60", "False"], read.stderr
