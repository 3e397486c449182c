#!/usr/bin/env bash
# The run command (README: `make run`). Starts the whole stack on one machine with the embedded
# defaults: SQLite and a filesystem Celery broker under the var directory, no servers needed.
# Prepares the database and demo data, prints the URLs and a demo partner key, then runs every
# Procfile process under honcho in the foreground; Ctrl-C stops them all.
#
# Environment it reads (all optional):
#   CEZBEK_VAR_DIR               where the database, broker and demo key live   (default ./var)
#   CEZBEK_HOST, CEZBEK_PORT     where the web process listens         (default 127.0.0.1, 8000)
#   SANDBOX_PORT                 where the provider sandbox listens    (default 8765)
#   CEZBEK_DEMO_ADMIN_PASSWORD   password of the demo superuser `admin` (default admin-demo-only)
#   WEB_CONCURRENCY, CEZBEK_LOG_LEVEL, CEZBEK_VELOCITY_* and the other tunables pass through.
# Server and secret settings (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL, DJANGO_SECRET_KEY,
# CEZBEK_ENCRYPTION_KEY, …) are deliberately ignored here: `make run` is the embedded setup;
# docker-compose.yml is the one with servers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="$ROOT/.venv/bin/python"

say() { printf 'run: %s\n' "$*"; }
die() { printf 'run: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "no virtualenv at .venv; use \`make run\`, which creates it"

# --- Embedded defaults: drop anything that would point the stack elsewhere -------------------
ignored=()
for name in DATABASE_URL REDIS_URL CELERY_BROKER_URL DJANGO_SECRET_KEY DJANGO_DEBUG \
            DJANGO_ALLOWED_HOSTS DJANGO_CSRF_TRUSTED_ORIGINS CEZBEK_ENCRYPTION_KEY \
            CEZBEK_SANDBOX_URL CEZBEK_PUBLIC_URL CELERY_TASK_ALWAYS_EAGER GUNICORN_BIND \
            DJANGO_SETTINGS_MODULE $(compgen -e | grep -E '^CEZBEK_PROVIDER_[A-Z0-9_]+_URL$' || true); do
  if [ -n "${!name+x}" ]; then
    ignored+=("$name")
    unset "$name"
  fi
done
[ ${#ignored[@]} -eq 0 ] || say "ignoring ${ignored[*]} (make run is the embedded setup)"

HOST="${CEZBEK_HOST:-127.0.0.1}"
PORT="${CEZBEK_PORT:-8000}"
SANDBOX_PORT="${SANDBOX_PORT:-8765}"
mkdir -p "${CEZBEK_VAR_DIR:-$ROOT/var}"
CEZBEK_VAR_DIR="$(cd "${CEZBEK_VAR_DIR:-$ROOT/var}" && pwd)"
ADMIN_PASSWORD="${CEZBEK_DEMO_ADMIN_PASSWORD:-admin-demo-only}"
CRED_FILE="$CEZBEK_VAR_DIR/demo-credentials.json"

export CEZBEK_VAR_DIR SANDBOX_PORT
export DJANGO_SETTINGS_MODULE=cezbek.settings
export GUNICORN_BIND="$HOST:$PORT"
export CEZBEK_PUBLIC_URL="http://$HOST:$PORT"
export CEZBEK_SANDBOX_URL="http://127.0.0.1:$SANDBOX_PORT"
export PATH="$ROOT/.venv/bin:$PATH" VIRTUAL_ENV="$ROOT/.venv"
export PYTHONUNBUFFERED=1

# Refuse early, with the reason, rather than let one process die and honcho stop the rest.
port_free() { "$PY" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)' "$1" "$2"; }
port_free "$HOST" "$PORT" || die "port $PORT on $HOST is in use; choose another with CEZBEK_PORT=…"
port_free 127.0.0.1 "$SANDBOX_PORT" || die "port $SANDBOX_PORT (sandbox) is in use; choose another with SANDBOX_PORT=…"

# --- Database, static files, demo data --------------------------------------------------------
say "data in $CEZBEK_VAR_DIR"
"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput --verbosity 0
"$PY" manage.py load_demo

ADMIN_NOTE="$(ADMIN_PASSWORD="$ADMIN_PASSWORD" "$PY" - <<'PYEOF'
import os
import django

django.setup()
from django.contrib.auth import get_user_model

User = get_user_model()
password = os.environ["ADMIN_PASSWORD"]
admin = User.objects.filter(username="admin").first()
if admin is None and not User.objects.filter(is_superuser=True).exists():
    User.objects.create_superuser("admin", "admin@cezbek.invalid", password)
    print(f"user admin, password {password} (demo superuser, just created)")
elif admin is not None and admin.is_superuser and admin.check_password(password):
    print(f"user admin, password {password}")
else:
    print("a superuser already exists; its password is the one set earlier")
PYEOF
)"

# --- Demo partner key: a secret is shown once, so it is kept (mode 600) and reused -----------
cred_valid() { CRED_FILE="$CRED_FILE" "$PY" - <<'PYEOF' 2>/dev/null
import json, os, sys
import django

django.setup()
from partners.models import PartnerCredential
from partners.services import credential_secret

with open(os.environ["CRED_FILE"]) as handle:
    stored = json.load(handle)
credential = PartnerCredential.objects.filter(
    key_id=stored["key_id"], partner__code=stored["partner"], revoked_at__isnull=True
).first()
sys.exit(0 if credential is not None and credential_secret(credential=credential) == stored["secret"] else 1)
PYEOF
}

if [ -f "$CRED_FILE" ] && cred_valid; then
  chmod 600 "$CRED_FILE"
  say "reusing the demo LAJADA key from $CRED_FILE"
else
  [ ! -f "$CRED_FILE" ] || say "$CRED_FILE no longer matches a live key in this database; issuing a new one"
  issued="$("$PY" manage.py partner_credentials LAJADA --json)"
  (
    umask 077
    ISSUED="$issued" "$PY" - "$CRED_FILE.tmp" <<'PYEOF'
import json, os, sys

text = os.environ["ISSUED"].strip()
try:
    data = json.loads(text)
except ValueError:  # tolerate chatter before the JSON line
    data = json.loads(text.splitlines()[-1])
missing = {"partner", "key_id", "secret"} - set(data)
if missing:
    sys.exit(f"run: partner_credentials printed no {', '.join(sorted(missing))}")
with open(sys.argv[1], "w") as handle:
    json.dump({k: data[k] for k in ("partner", "key_id", "secret")}, handle)
    handle.write("\n")
PYEOF
  )
  chmod 600 "$CRED_FILE.tmp"
  mv -f "$CRED_FILE.tmp" "$CRED_FILE"
  say "issued a demo LAJADA key; kept in $CRED_FILE (mode 600)"
fi

# --- Banner: printed once the web process answers, so it is not lost above the start-up logs ---
banner() {
  CRED_FILE="$CRED_FILE" HOST="$HOST" PORT="$PORT" ADMIN_NOTE="$ADMIN_NOTE" "$PY" - <<'PYEOF'
import json, os, shlex

env = os.environ
with open(env["CRED_FILE"]) as handle:
    cred = json.load(handle)
base = f"http://{env['HOST']}:{env['PORT']}"
key, secret = cred["key_id"], cred["secret"]
url_opt = "" if base == "http://127.0.0.1:8000" else f" --url {base}"
body1 = '{"partner_ref": "INV/001", "msisdn": "628118770510", "quantity": 2, "amount": "750000.00", "wallet": "LSAJA"}'
body2 = '{"partner_ref": "INV/002", "msisdn": "628118770510", "quantity": 1, "amount": "1250000.00", "wallet": "LSAJA"}'
q = shlex.quote
rule = "=" * 100
print(f"""
{rule}
 Cezbek is up: SQLite and a filesystem broker in {env['CEZBEK_VAR_DIR']}
   API           {base}/api/v1/
   API docs      {base}/api/docs/      (OpenAPI schema: {base}/api/schema/)
   Admin         {base}/admin/         {env['ADMIN_NOTE']}
   Sandbox       {env['CEZBEK_SANDBOX_URL']}/   (plays the e-wallet providers)

 Demo partner {cred['partner']} (key kept in {env['CRED_FILE']}):
   key id        {key}
   secret        {secret}

 A signed POST /api/v1/cashbacks (201 the first time, 200 when repeated):
   .venv/bin/python scripts/signed_request.py{url_opt} --key {key} --secret {q(secret)} POST /api/v1/cashbacks {q(body1)}

 The same with curl and openssl (string to sign: METHOD, path?query, timestamp, sha256 of the body):
   KEY={q(key)} SECRET={q(secret)}
   BODY={q(body2)}
   P=/api/v1/cashbacks TS=$(date +%s)
   SIG=$(printf 'POST\\n%s\\n%s\\n%s' "$P" "$TS" "$(printf '%s' "$BODY" | openssl dgst -sha256 -r | cut -d' ' -f1)" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
   curl -sS -X POST "{base}$P" -H 'Content-Type: application/json' -H "X-Cezbek-Key: $KEY" -H "X-Cezbek-Timestamp: $TS" -H "X-Cezbek-Signature: $SIG" --data-binary "$BODY"

 Payouts are recorded PENDING and queued. Ctrl-C stops every process.
{rule}
""", flush=True)
PYEOF
}

HONCHO_PID=$$   # this shell becomes honcho below (exec keeps the pid)
(
  for _ in $(seq 1 180); do
    kill -0 "$HONCHO_PID" 2>/dev/null || exit 0
    if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
      sleep 2   # let the worker and beat finish their start-up lines first
      kill -0 "$HONCHO_PID" 2>/dev/null || exit 0
      banner
      exit 0
    fi
    sleep 0.5
  done
  say "the web process did not answer on $HOST:$PORT within 90 s; see the log above"
) &

say "starting web, worker, beat and sandbox (Procfile) under honcho"
colour=()
[ -t 1 ] || colour=(--no-colour)
# --env /dev/null: no .env file may point this embedded setup at other servers.
exec "$ROOT/.venv/bin/honcho" start --procfile Procfile --app-root "$ROOT" --env /dev/null "${colour[@]}"
