#!/usr/bin/env bash
# The test command (README: `make test`). Uses PostgreSQL and Redis when they run on this
# machine, starts them when it can, and otherwise says what it skipped and why.
set -uo pipefail
cd "$(dirname "$0")/.."

# One database per run (pytest-django creates test_<name> and drops it), so runs never collide.
PG_URL="${CEZBEK_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/cezbek_$$}"
REDIS="${CEZBEK_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
PY=.venv/bin/python

pg_up() { "$PY" - "$PG_URL" <<'PYEOF' >/dev/null 2>&1
import sys, psycopg
u = sys.argv[1].rsplit("/", 1)[0] + "/postgres"
psycopg.connect(u, connect_timeout=3).close()
PYEOF
}
redis_up() { "$PY" - "$REDIS" <<'PYEOF' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2).ping()
PYEOF
}

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "test: PostgreSQL is not answering; starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
  fi
fi
if pg_up; then
  export DATABASE_URL="$PG_URL"
  echo "test: PostgreSQL at ${PG_URL%%\?*}"
else
  unset DATABASE_URL
  echo "test: SKIPPING the PostgreSQL tests (concurrency, locking, constraints): no PostgreSQL at $PG_URL and none could be started; the rest runs on SQLite"
fi

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "test: Redis is not answering; starting redis-server on 6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  fi
fi
if redis_up; then
  export REDIS_URL="$REDIS"
  echo "test: Redis at $REDIS"
else
  unset REDIS_URL
  echo "test: SKIPPING the Redis tests (shared replay guard, rate limit, breakers): no Redis at $REDIS and none could be started; in-process equivalents are tested instead"
fi

# The admin walkthrough (cezbek/tests/test_browser.py) drives Debian's chromium; Playwright never
# downloads a browser. Install the package when it is missing and we can; otherwise say why not.
CHROMIUM="${CEZBEK_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: $CHROMIUM is missing; installing Debian's chromium for the browser tests (apt-get, once)"
    export DEBIAN_FRONTEND=noninteractive
    mkdir -p var
    apt-get install -y -q chromium >var/apt-chromium.log 2>&1 \
      || { apt-get update -q >>var/apt-chromium.log 2>&1 && apt-get install -y -q chromium >>var/apt-chromium.log 2>&1; } \
      || echo "test: could not install chromium (see var/apt-chromium.log)"
  fi
  if [ -x "$CHROMIUM" ]; then
    echo "test: chromium at $CHROMIUM"
  elif [ "$(id -u)" != 0 ]; then
    echo "test: SKIPPING the browser tests: $CHROMIUM is absent and installing it needs root (apt-get install chromium)"
  elif ! command -v apt-get >/dev/null 2>&1; then
    echo "test: SKIPPING the browser tests: $CHROMIUM is absent and there is no apt-get to install Debian's chromium"
  else
    echo "test: SKIPPING the browser tests: $CHROMIUM is absent and apt-get could not install it"
  fi
fi

export DJANGO_SETTINGS_MODULE=cezbek.settings
export CEZBEK_VAR_DIR="${CEZBEK_VAR_DIR:-$PWD/var/test}"
export CEZBEK_CACHE_PREFIX="cezbek-test-$$"
export CEZBEK_QUEUE="cezbek-test-$$"  # end-to-end workers of concurrent runs never share a queue
exec "$PY" -m pytest "$@"
