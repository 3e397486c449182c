"""Cezbek settings: everything comes from the environment (OPERATIONS.md).

Every variable has a default that serves the embedded single-machine setup (SQLite, local
files, no servers); production values come from the environment only.
"""

import base64
import hashlib
import os
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CEZBEK_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    word = value.strip().lower()
    if word not in TRUE_WORDS | FALSE_WORDS:
        raise ImproperlyConfigured(f"{name}={value!r}: must be one of 1, true, yes, on, 0, false, no, off")
    return word in TRUE_WORDS


def _number(name: str, default, parse, kind: str, minimum, above: bool):
    """The variable parsed, or the default when unset; a clear startup error naming it otherwise.
    Every number here is a count, a size, an amount or a duration: never negative, and where
    zero means nothing sensible (`above`), more than `minimum`."""
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        number = parse(value.strip())
        finite = number == number and number not in (float("inf"), float("-inf"))  # NaN and infinities too
    except (ValueError, ArithmeticError):  # a signalling NaN raises on comparison
        finite = False
    if not finite:
        raise ImproperlyConfigured(f"{name}={value!r}: must be {kind}")
    if number < minimum or (above and number == minimum):
        raise ImproperlyConfigured(f"{name}={value!r}: must be {'more than' if above else 'at least'} {minimum}")
    return number


def envint(name: str, default: int, *, minimum: int = 0, above: bool = False) -> int:
    return _number(name, default, int, "a whole number", minimum, above)


def envfloat(name: str, default: float, *, minimum: float = 0, above: bool = False) -> float:
    return float(_number(name, default, float, "a number", minimum, above))


def envdecimal(name: str, default: str, *, minimum: Decimal = Decimal(0), above: bool = False) -> Decimal:
    return _number(name, Decimal(default), Decimal, "a decimal number", minimum, above)


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEVELOPMENT_SECRET_KEY = "django-insecure-cezbek-development-only"
SECRET_KEY = envstr("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY)
DEBUG = envbool("DJANGO_DEBUG", True)
DEVELOPMENT_ALLOWED_HOSTS = "localhost,127.0.0.1,[::1],testserver"
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", DEVELOPMENT_ALLOWED_HOSTS)
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "cezbek.apps.CezbekConfig",  # the deploy checks (cezbek/checks.py)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "partners",
    "cashback",
    "loyalty",
    "wallets",
    "reports",
]

MIDDLEWARE = [
    # First, so every response and log line has a request id (cezbek/middleware.py).
    "cezbek.middleware.RequestIdMiddleware",
    # Django's HTML error pages (its debug pages under DEBUG) as JSON, outside the admin (API.md).
    "cezbek.api.exception_handlers.ErrorsAsJsonMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS and JS) served by the app itself: no proxy needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Latency histogram (/metrics) and one log line per request; static files are not counted.
    "cezbek.middleware.RequestMetricsMiddleware",
    # Django's own for the admin's pages, skipped for the signed partner API (cezbek/middleware.py).
    "cezbek.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "cezbek.middleware.AuthenticationMiddleware",
    "cezbek.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cezbek.urls"
WSGI_APPLICATION = "cezbek.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],  # cezbek/templates is an app's (cezbek, first in INSTALLED_APPS: its admin templates win)
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=envint("DATABASE_CONN_MAX_AGE", 600),
            # A SELECT 1 before every request's first query: off by default, as in Django (a dropped
            # connection fails one request, which partners retry idempotently, then reconnects).
            conn_health_checks=envbool("DATABASE_CONN_HEALTH_CHECKS", False),
        )
    }
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # A database host that does not answer fails a connect within this many seconds, instead of
        # the operating system's minutes; `?connect_timeout=N` in DATABASE_URL takes precedence.
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", envint("DATABASE_CONNECT_TIMEOUT", 10))
else:
    # SQLite serialises writers; IMMEDIATE transactions and WAL let web, worker and beat share it.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "cezbek.sqlite3",
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": VAR_DIR / "test-cezbek.sqlite3"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, replay guard, rate limits ------------------------------------------------------
REDIS_URL = envstr("REDIS_URL")
# A Redis that stops answering fails the request (500, nothing stored) within seconds, instead of
# holding a web worker until gunicorn's timeout (300 s). Its commands take well under a
# millisecond when it answers. (django-redis would take 0 as "no timeout": refused.)
REDIS_CONNECT_TIMEOUT = envfloat("REDIS_CONNECT_TIMEOUT", 2, above=True)
REDIS_SOCKET_TIMEOUT = envfloat("REDIS_SOCKET_TIMEOUT", 5, above=True)
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": envstr("CEZBEK_CACHE_PREFIX", "cezbek"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": REDIS_CONNECT_TIMEOUT,
                "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            },
        }
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cezbek"},
        # What every process of the machine must see without Redis: the configuration's version
        # (cezbek/snapshots.py), so that a key revoked or a fee changed by another process (the
        # admin, `partner_credentials`, `cezbek_config import`) reaches the web and worker processes.
        "shared": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "KEY_PREFIX": envstr("CEZBEK_CACHE_PREFIX", "cezbek"),
        },
    }
# The cache every process shares: Redis when configured, else files in VAR_DIR (one machine).
SHARED_CACHE = "default" if REDIS_URL else "shared"

# --- Celery: at-least-once delivery ---------------------------------------------------------
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir),
    }
else:
    # Longer than any countdown or ETA we schedule, so Redis never redelivers a task early.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 7200)}
if CELERY_BROKER_URL.startswith("redis://"):
    CELERY_BROKER_TRANSPORT = "cezbek.broker:Transport"  # kombu's, one redis-py client per channel
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = envint("CELERY_WORKER_PREFETCH_MULTIPLIER", 4)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
# django-celery-beat's database scheduler, reading only the rows cezbek/schedule.py syncs (cezbek/jobs.py).
CELERY_BEAT_SCHEDULER = "cezbek.jobs:DatabaseScheduler"
CELERY_TASK_DEFAULT_QUEUE = envstr("CEZBEK_QUEUE", "celery")
CELERY_TIMEZONE = "Asia/Jakarta"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "Asia/Jakarta"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(envstr("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # collectstatic fills it; WhiteNoise expects it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Without collectstatic (development, tests) WhiteNoise serves straight from the apps.
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "media/"
MEDIA_ROOT = Path(envstr("CEZBEK_MEDIA_ROOT", str(VAR_DIR / "media")))
# Uploaded files (partner logos, reports) go to S3 through django-storages when a bucket is named, to
# local files under MEDIA_ROOT otherwise. Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY, or the instance's role), never from here; objects are private, read back
# through the app or signed URLs.
CEZBEK_S3_BUCKET = envstr("CEZBEK_S3_BUCKET") or envstr("AWS_STORAGE_BUCKET_NAME")
if CEZBEK_S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": CEZBEK_S3_BUCKET,
            "endpoint_url": envstr("AWS_S3_ENDPOINT_URL") or None,  # MinIO, an emulator, a VPC endpoint
            "region_name": envstr("AWS_S3_REGION_NAME") or None,
            "location": envstr("CEZBEK_S3_PREFIX"),
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }

# --- REST framework and OpenAPI ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["partners.authentication.SignedRequestAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["partners.throttling.PartnerRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["cezbek.api.parsers.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "cezbek.api.negotiation.UsualRequestNegotiation",
    "EXCEPTION_HANDLER": "cezbek.api.exception_handlers.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cezbek partner API",
    "DESCRIPTION": (
        "Record purchases, get cashback and loyalty rewards paid into the customer's e-wallet. "
        "Every request is signed: see the `SignedRequest` security scheme."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Swagger UI's files served by the app itself (drf-spectacular-sidecar), not from a CDN: the
    # docs load on a machine without internet, and the UI's version is the one pinned here.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Cezbek ---------------------------------------------------------------------------------
# Partner secrets at rest: one or more Fernet keys (comma-separated, newest first); any other
# string is stretched into a key. The development default is derived from SECRET_KEY.
_ENCRYPTION_KEYS_GIVEN = envlist("CEZBEK_ENCRYPTION_KEY", "")
CEZBEK_ENCRYPTION_KEY_DERIVED = not _ENCRYPTION_KEYS_GIVEN  # `check --deploy` refuses it (cezbek/checks.py)
CEZBEK_ENCRYPTION_KEYS = _ENCRYPTION_KEYS_GIVEN or [
    base64.urlsafe_b64encode(hashlib.sha256(("cezbek-dev:" + SECRET_KEY).encode()).digest()).decode()
]
CEZBEK_SIGNATURE_MAX_SKEW_SECONDS = 300
# How often a process checks whether another changed the configuration it caches (cezbek/snapshots.py).
CEZBEK_CONFIG_CACHE_SECONDS = envfloat("CEZBEK_CONFIG_CACHE_SECONDS", 1.0)
CEZBEK_RATE_LIMIT_PER_MINUTE = envint("CEZBEK_RATE_LIMIT_PER_MINUTE", 6000, above=True)
CEZBEK_VELOCITY_WINDOW_SECONDS = envint("CEZBEK_VELOCITY_WINDOW_SECONDS", 600, above=True)
CEZBEK_VELOCITY_LIMIT = envdecimal("CEZBEK_VELOCITY_LIMIT", "2000000.00", above=True)

CEZBEK_SANDBOX_URL = envstr("CEZBEK_SANDBOX_URL", "http://127.0.0.1:8765").rstrip("/")
CEZBEK_PROVIDER_CONNECT_TIMEOUT = envfloat("CEZBEK_PROVIDER_CONNECT_TIMEOUT", 3.05)
CEZBEK_PROVIDER_READ_TIMEOUT = envfloat("CEZBEK_PROVIDER_READ_TIMEOUT", 10.0)
# Honour HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE and .netrc for provider calls (off: direct).
CEZBEK_PROVIDER_TRUST_ENV = envbool("CEZBEK_PROVIDER_TRUST_ENV", False)


def _provider_url(code: str) -> str:
    return envstr(f"CEZBEK_PROVIDER_{code}_URL") or f"{CEZBEK_SANDBOX_URL}/{code.lower()}"


# Wire details and sandbox defaults: docs/providers.md.
CEZBEK_PROVIDERS = {
    "LSAJAH2H": {
        "url": _provider_url("LSAJAH2H"),
        "email": envstr("CEZBEK_LSAJAH2H_EMAIL", "cezbek@sandbox.local"),
        "password": envstr("CEZBEK_LSAJAH2H_PASSWORD", "lsaja-sandbox-secret"),
    },
    "GOPAIDH2H": {
        "url": _provider_url("GOPAIDH2H"),
        "api_key": envstr("CEZBEK_GOPAIDH2H_API_KEY", "gopaid-sandbox-key"),
    },
    "JOSVOH2H": {
        "url": _provider_url("JOSVOH2H"),
        "api_key": envstr("CEZBEK_JOSVOH2H_API_KEY", "josvo-sandbox-key"),
    },
    "MTRANS": {
        "url": _provider_url("MTRANS"),
        "username": envstr("CEZBEK_MTRANS_USERNAME", "cezbek"),
        "password": envstr("CEZBEK_MTRANS_PASSWORD", "mtrans-sandbox-secret"),
    },
    "XENIT": {
        "url": _provider_url("XENIT"),
        "api_key": envstr("CEZBEK_XENIT_API_KEY", "xenit-sandbox-key"),
        "callback_token": envstr("CEZBEK_XENIT_CALLBACK_TOKEN", "xenit-callback-token"),
    },
}
# Where providers reach us for callbacks (Xenit).
CEZBEK_PUBLIC_URL = envstr("CEZBEK_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

# --- Operations endpoints (cezbek/health.py) -------------------------------------------------------
# /metrics is open unless a token is set; then it wants `Authorization: Bearer <token>`.
CEZBEK_METRICS_TOKEN = envstr("CEZBEK_METRICS_TOKEN")
CEZBEK_READYZ_TIMEOUT = envfloat("CEZBEK_READYZ_TIMEOUT", 2.0)  # seconds, per backend, for /readyz

# --- Logging: never a secret, signature or full key ---------------------------------------------
# Every line carries its request id (cezbek/logs.py). `json`: one JSON object per line, the
# default in production; `plain`: readable text, the default with DEBUG on.
CEZBEK_LOG_FORMAT = envstr("CEZBEK_LOG_FORMAT", "plain" if DEBUG else "json")
if CEZBEK_LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"CEZBEK_LOG_FORMAT must be json or plain, not {CEZBEK_LOG_FORMAT!r}")
CEZBEK_LOG_LEVEL = envstr("CEZBEK_LOG_LEVEL", "INFO").strip().upper()
if CEZBEK_LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"CEZBEK_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {CEZBEK_LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "cezbek.logs.RequestIdFilter", "missing": None if CEZBEK_LOG_FORMAT == "json" else "-"}},
    "formatters": {
        "json": {"()": "cezbek.logs.JsonLogFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": CEZBEK_LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": CEZBEK_LOG_LEVEL},
    # Django's own console handler (DEBUG only) would print its lines a second time, as plain text.
    "loggers": {"django": {"handlers": [], "level": "INFO"}, "django.db.backends": {"level": "WARNING"}},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = envint("DJANGO_SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Probes and scrapes reach a pod's plain-HTTP port directly: answer them, don't redirect.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Payout delivery (DOMAIN.md §4–5) ------------------------------------------------------------
CEZBEK_BREAKER_FAIL_MAX = envint("CEZBEK_BREAKER_FAIL_MAX", 5, above=True)
CEZBEK_BREAKER_RESET_SECONDS = envfloat("CEZBEK_BREAKER_RESET_SECONDS", 30)
# An unknown outcome is inquired about only after this long: longer than any request can stay
# in flight (connect + read timeout, with margin), so "no such transfer" really means nothing moved.
CEZBEK_UNKNOWN_GRACE_SECONDS = envfloat(
    "CEZBEK_UNKNOWN_GRACE_SECONDS", 2 * (CEZBEK_PROVIDER_CONNECT_TIMEOUT + CEZBEK_PROVIDER_READ_TIMEOUT)
)
CEZBEK_CALLBACK_WAIT_SECONDS = envfloat("CEZBEK_CALLBACK_WAIT_SECONDS", 45)  # Xenit calls back within 30 s
CEZBEK_RETRY_BASE_SECONDS = envfloat("CEZBEK_RETRY_BASE_SECONDS", 5)
CEZBEK_RETRY_MAX_SECONDS = envfloat("CEZBEK_RETRY_MAX_SECONDS", 600)
CEZBEK_RESOLVE_MAX_CHECKS = envint("CEZBEK_RESOLVE_MAX_CHECKS", 8, above=True)
# A payout SENDING for longer than this lost its worker: it must exceed connect + read timeout.
CEZBEK_SENDING_STALE_SECONDS = envfloat(
    "CEZBEK_SENDING_STALE_SECONDS", max(60.0, 3 * (CEZBEK_PROVIDER_CONNECT_TIMEOUT + CEZBEK_PROVIDER_READ_TIMEOUT))
)
CEZBEK_PENDING_IDLE_SECONDS = envfloat("CEZBEK_PENDING_IDLE_SECONDS", 60)
CEZBEK_SWEEP_INTERVAL_SECONDS = envfloat("CEZBEK_SWEEP_INTERVAL_SECONDS", 30)
# New payouts are delivered in batches (wallets.payouts_deliver, celery-batches): a worker gathers
# up to this many, or what came within the wait, claims them in one statement and sends them in
# parallel. The worker's prefetch (concurrency × CELERY_WORKER_PREFETCH_MULTIPLIER) must exceed it.
CEZBEK_PAYOUT_BATCH_SIZE = envint("CEZBEK_PAYOUT_BATCH_SIZE", 16, above=True)
CEZBEK_PAYOUT_BATCH_WAIT_SECONDS = envfloat("CEZBEK_PAYOUT_BATCH_WAIT_SECONDS", 0.05)
# A web worker gathers the new payouts its purchases queue, for up to this long and up to
# CEZBEK_PAYOUT_BATCH_SIZE of them, and queues them as one message (cezbek/gathering.py);
# 0 queues each one in its own request, right after the purchase commits. Under load a group
# fills up (16) before the wait ends; a quiet shop's payout waits at most this long.
CEZBEK_PAYOUT_GATHER_SECONDS = envfloat("CEZBEK_PAYOUT_GATHER_SECONDS", 0.2)

from cezbek.schedule import beat_schedule  # noqa: E402

# Every periodic job (the sweeper, invoices, tier expiry, …) is defined in cezbek/schedule.py and synced
# into django-celery-beat's tables after `migrate`. This is the same list, under the same names, for
# celery's file scheduler only (`worker -B`, the end-to-end tests); the database scheduler ignores it.
CELERY_BEAT_SCHEDULE = beat_schedule(sweep_interval=CEZBEK_SWEEP_INTERVAL_SECONDS)
# JobRun rows of interval jobs (the sweepers) are kept this long; daily and monthly ones for good.
CEZBEK_JOB_RUNS_KEEP_DAYS = envint("CEZBEK_JOB_RUNS_KEEP_DAYS", 7)
# Sender of invoices and other mail (Django's email API; backend and SMTP host: Django's EMAIL_* settings).
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "Kezbek <no-reply@cezbek.local>")
# Email transport: Amazon SES through boto3 (django-ses) when CEZBEK_EMAIL_BACKEND=ses, or when an SES
# region or endpoint is set; smtp / console / file (one .log file per message under var/mail, the
# default for `make run`) otherwise. Tests use Django's locmem backend unless a test says otherwise.
CEZBEK_EMAIL_BACKEND = envstr("CEZBEK_EMAIL_BACKEND").strip().lower() or (
    "ses" if envstr("AWS_SES_REGION_NAME") or envstr("AWS_SES_REGION_ENDPOINT_URL") else "file"
)
_EMAIL_BACKENDS = {
    "ses": "django_ses.SESBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
}
if CEZBEK_EMAIL_BACKEND not in _EMAIL_BACKENDS:
    raise ImproperlyConfigured(f"CEZBEK_EMAIL_BACKEND must be one of {sorted(_EMAIL_BACKENDS)}, not {CEZBEK_EMAIL_BACKEND!r}")
EMAIL_BACKEND = _EMAIL_BACKENDS[CEZBEK_EMAIL_BACKEND]
EMAIL_FILE_PATH = envstr("CEZBEK_EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
# django-ses: None lets boto3 resolve them itself (AWS_REGION, AWS_ENDPOINT_URL_SES / AWS_ENDPOINT_URL,
# so moto works); credentials always come from boto3's own chain (keys, instance or task role).
AWS_SES_REGION_NAME = envstr("AWS_SES_REGION_NAME") or None
AWS_SES_REGION_ENDPOINT_URL = envstr("AWS_SES_REGION_ENDPOINT_URL") or None
AWS_SES_CONFIGURATION_SET = envstr("AWS_SES_CONFIGURATION_SET") or None
# Customer emails (wallets/notifications.py): attempts of one email before it is marked FAILED.
CEZBEK_EMAIL_MAX_ATTEMPTS = envint("CEZBEK_EMAIL_MAX_ATTEMPTS", 5, above=True)
# A PENDING customer email untouched this long lost its message (a broker outage at queueing);
# the email sweeper queues it again. Longer than the longest retry back-off (1 h) plus the time a
# message held by a dead worker takes to come back (CELERY_VISIBILITY_TIMEOUT, 2 h).
CEZBEK_EMAIL_STRANDED_SECONDS = envint("CEZBEK_EMAIL_STRANDED_SECONDS", 4 * 3600)

# --- Partner webhooks (API.md "Webhooks to partners", partners/webhooks.py) ----------------------
CEZBEK_WEBHOOK_CONNECT_TIMEOUT = envfloat("CEZBEK_WEBHOOK_CONNECT_TIMEOUT", 3.05)
CEZBEK_WEBHOOK_READ_TIMEOUT = envfloat("CEZBEK_WEBHOOK_READ_TIMEOUT", 10.0)
# Back-off: base × 2^(attempt-1), capped, with jitter, until the window after the first attempt ends.
CEZBEK_WEBHOOK_RETRY_BASE_SECONDS = envfloat("CEZBEK_WEBHOOK_RETRY_BASE_SECONDS", 30)
CEZBEK_WEBHOOK_RETRY_MAX_SECONDS = envfloat("CEZBEK_WEBHOOK_RETRY_MAX_SECONDS", 3600)
CEZBEK_WEBHOOK_RETRY_WINDOW_SECONDS = envfloat("CEZBEK_WEBHOOK_RETRY_WINDOW_SECONDS", 24 * 3600)
# One run of partners.webhooks_retry_due sends at most this many deliveries, for at most this long.
CEZBEK_WEBHOOK_DUE_BATCH = envint("CEZBEK_WEBHOOK_DUE_BATCH", 100, above=True)
CEZBEK_WEBHOOK_DUE_BUDGET_SECONDS = envfloat("CEZBEK_WEBHOOK_DUE_BUDGET_SECONDS", 60)
# Honour HTTP(S)_PROXY / NO_PROXY / REQUESTS_CA_BUNDLE for webhook calls (an egress proxy); off: direct.
CEZBEK_WEBHOOK_TRUST_ENV = envbool("CEZBEK_WEBHOOK_TRUST_ENV", False)

# --- Batch uploads (DOMAIN.md §9, cashback/batches.py) -------------------------------------------
from kombu import Exchange, Queue  # noqa: E402

CEZBEK_BATCH_MAX_ROWS = envint("CEZBEK_BATCH_MAX_ROWS", 100_000, above=True)
CEZBEK_BATCH_MAX_BYTES = envint("CEZBEK_BATCH_MAX_BYTES", 32 * 1024 * 1024, above=True)
CEZBEK_BATCH_CHUNK_SIZE = envint("CEZBEK_BATCH_CHUNK_SIZE", 500, above=True)  # rows per database transaction
CEZBEK_BATCH_STALL_SECONDS = envfloat("CEZBEK_BATCH_STALL_SECONDS", 600)
# Chunks wait in a queue of their own, so live purchases' payouts never queue behind a big upload;
# a worker started without -Q consumes both queues.
CEZBEK_BATCH_QUEUE = envstr("CEZBEK_BATCH_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}.batches")
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name, type="direct"), routing_key=name) for name in (CELERY_TASK_DEFAULT_QUEUE, CEZBEK_BATCH_QUEUE)
]
