# One image for every Cezbek process (web, worker, beat, sandbox); the command picks the process.
# No secret is baked in: everything is configured at run time through the environment
# (OPERATIONS.md "Processes and environment"; docker-compose.yml shows a full set).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system --gid 10001 cezbek \
 && useradd --system --uid 10001 --gid cezbek --home-dir /home/cezbek --create-home --shell /usr/sbin/nologin cezbek

# Dependencies first, so code changes do not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# Static files at build time. The secret here is a throwaway that exists only for this command
# and is not kept in the image's environment.
RUN DJANGO_SECRET_KEY=collectstatic-build-only CEZBEK_VAR_DIR=/tmp/build-var \
    python manage.py collectstatic --noinput --verbosity 0 \
 && rm -rf /tmp/build-var \
 && mkdir -p /app/var \
 && chown -R cezbek:cezbek /app/var

USER cezbek

# Local state (SQLite when DATABASE_URL is unset, media) lives in /app/var; mount a volume there.
ENV CEZBEK_VAR_DIR=/app/var \
    GUNICORN_BIND=0.0.0.0:8000
EXPOSE 8000

# The web process. Others: `celery -A cezbek worker -l info`, `celery -A cezbek beat -l info`,
# `python -m wallets.sandbox --host 0.0.0.0 --port 8765`, `python manage.py migrate --noinput`.
CMD ["gunicorn", "cezbek.wsgi", "--config", "gunicorn.conf.py", "--access-logfile", "-"]
