"""Brikk settings: one module, driven by environment variables (see README, "Configuration").

Without DATABASE_URL the project runs on SQLite; without REDIS_URL on Django's in-process cache
with Celery tasks run eagerly. Production behaviour (JSON logs, HTTPS, HSTS) follows from
DJANGO_DEBUG=false, which is the default.
"""

import base64
import hashlib
import ipaddress
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from brikk.config import env_bool, env_choice, env_int, env_list, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
BRIKK_VERSION = "1.0.0"

# --- Core -----------------------------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)

_DEV_SECRET_KEY = "django-insecure-brikk-development-only-never-use-in-production-0123456789"
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off; "
            'generate one with: python -c "import secrets; print(secrets.token_urlsafe(64))"'
        )
    SECRET_KEY = _DEV_SECRET_KEY
elif not DEBUG and len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 characters long when DJANGO_DEBUG is off.")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# HTTPS-only cookies, redirects and HSTS: on by default in production, off for local http.
HTTPS = env_bool("DJANGO_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
# Behind our reverse proxy (deploy/nginx.conf): trust the X-Forwarded-Proto and X-Forwarded-For it sets. The
# connection's address is then the proxy's, so /metrics stops counting loopback as a trusted scraper.
BEHIND_PROXY = env_bool("DJANGO_BEHIND_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "no-referrer"
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI from our own static files, not a CDN
    "django_htmx",
    "template_partials",
    "django_prometheus",
    "django_filters",
    "axes",
    "audit",
    "agents",
    "coordination",
    "brikk.dashboard",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "brikk.lib.middleware.CorrelationIdMiddleware",
    "brikk.lib.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "brikk.lib.middleware.StaticFilesMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "brikk.dashboard.middleware.DashboardReferrerPolicyMiddleware",
    # Last but for the metrics: turns a refused login (django-axes) into its 429 answer.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "brikk.urls"
WSGI_APPLICATION = "brikk.wsgi.application"
ASGI_APPLICATION = "brikk.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "brikk.dashboard.context_processors.workspace",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # psycopg 3's connection pool (Django >= 5.1); CONN_MAX_AGE must stay 0 with a pool.
        _db["OPTIONS"] = {
            "pool": {
                "min_size": env_int("BRIKK_DB_POOL_MIN", 2, minimum=0),
                "max_size": env_int("BRIKK_DB_POOL_MAX", 20, minimum=1),
                "timeout": env_int("BRIKK_DB_POOL_TIMEOUT", 5, minimum=1),
            },
            "connect_timeout": env_int("BRIKK_DB_CONNECT_TIMEOUT", 3, minimum=1),
            # Parameters bound by the server (psycopg's C adapters) instead of quoted into the SQL in
            # Python, and statements a connection runs often prepared once: less CPU in both processes.
            "server_side_binding": env_bool("BRIKK_DB_SERVER_SIDE_BINDING", True),
            # 0 turns prepared statements off (needed behind a transaction-pooling PgBouncer < 1.21).
            "prepare_threshold": env_int("BRIKK_DB_PREPARE_THRESHOLD", 5, minimum=0) or None,
        }
    DATABASES = {"default": _db}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("BRIKK_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # IMMEDIATE: a transaction takes the write lock when it begins, so concurrent echoes
            # queue up (timeout) instead of failing when a reading transaction starts to write.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, Redis, Celery -------------------------------------------------------------------

REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("BRIKK_CACHE_PREFIX", "brikk"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
                # A cache outage must degrade (slower key checks), never fail a request.
                "IGNORE_EXCEPTIONS": True,
            },
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
    # Session state lives in Redis (read there, no database query per request); every write also goes
    # to the database, so a Redis restart or outage logs nobody out.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "brikk"}}

CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", ("redis", "rediss", "amqp")) or REDIS_URL
CELERY_TASK_ALWAYS_EAGER = env_bool("BRIKK_TASKS_EAGER", CELERY_BROKER_URL is None)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 2}
# celery beat: seal new audit rows into the hash chain, off the request path.
BRIKK_AUDIT_SEAL_INTERVAL_SECONDS = env_int("BRIKK_AUDIT_SEAL_INTERVAL_SECONDS", 10, minimum=1)
# celery beat: the inbox sweep (dead letters, lapsed leases; coordination/inbox.py).
BRIKK_INBOX_SWEEP_INTERVAL_SECONDS = env_int("BRIKK_INBOX_SWEEP_INTERVAL_SECONDS", 5, minimum=1)
# Inbox streams (GET /api/v1/inbox/stream): a comment line this often keeps proxies from closing an idle
# stream and shows a dead connection.
BRIKK_STREAM_HEARTBEAT_SECONDS = env_int("BRIKK_STREAM_HEARTBEAT_SECONDS", 15, minimum=1, maximum=300)
# A stream ends (event: closed, reason max_duration) after this long; the client reconnects with
# Last-Event-ID. Bounds what a stream opened long ago may still hold (its key is also checked at heartbeats).
# How often an open stream checks that its key still authenticates (revoked, expired, agent inactive).
BRIKK_STREAM_KEY_CHECK_SECONDS = env_int("BRIKK_STREAM_KEY_CHECK_SECONDS", 60, minimum=1, maximum=3600)
BRIKK_STREAM_MAX_SECONDS = env_int("BRIKK_STREAM_MAX_SECONDS", 3600, minimum=1, maximum=86400)
# The ASGI server (brikk/asgi.py): threads that run the synchronous part of requests (Django's
# middleware, DRF's authentication, database work). Waiting consumers hold none of them.
BRIKK_ASGI_THREADS = env_int("BRIKK_ASGI_THREADS", 8, minimum=1, maximum=256)
# Push delivery (webhooks, coordination/push.py). Plain http only where allowed (development, tests); the
# networks an endpoint may reach beyond the public Internet (brikk/lib/addresses.py), e.g. 127.0.0.1/32.
BRIKK_WEBHOOK_ALLOW_HTTP = env_bool("BRIKK_WEBHOOK_ALLOW_HTTP", DEBUG)
BRIKK_WEBHOOK_ALLOWED_NETWORKS = env_list("BRIKK_WEBHOOK_ALLOWED_NETWORKS", [])
for _network in BRIKK_WEBHOOK_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"BRIKK_WEBHOOK_ALLOWED_NETWORKS holds {_network!r}, which is not an IP address or network."
        ) from None
# After a rotation the old secret still signs (a second signature) for this long.
BRIKK_WEBHOOK_SECRET_GRACE_HOURS = env_int("BRIKK_WEBHOOK_SECRET_GRACE_HOURS", 24, minimum=0, maximum=720)
# The push dispatcher (coordination/push.py, `manage.py push_dispatcher`): a push that has not answered 2xx
# within the timeout failed (its lease lasts 2 x timeout + 5 s); deliveries in flight per endpoint and in all;
# an endpoint without a success for this many days while failing is disabled.
BRIKK_PUSH_TIMEOUT_SECONDS = env_int("BRIKK_PUSH_TIMEOUT_SECONDS", 15, minimum=1, maximum=120)
BRIKK_PUSH_CONCURRENCY_PER_ENDPOINT = env_int("BRIKK_PUSH_CONCURRENCY_PER_ENDPOINT", 8, minimum=1, maximum=256)
BRIKK_PUSH_MAX_IN_FLIGHT = env_int("BRIKK_PUSH_MAX_IN_FLIGHT", 512, minimum=1, maximum=10000)
BRIKK_PUSH_DISABLE_AFTER_DAYS = env_int("BRIKK_PUSH_DISABLE_AFTER_DAYS", 5, minimum=1, maximum=90)
# The embedded defaults (no DATABASE_URL, no REDIS_URL: `make run`) push from a thread of the web process,
# started by the first message committed while an endpoint is enabled; production runs `push_dispatcher`.
BRIKK_PUSH_IN_PROCESS = env_bool("BRIKK_PUSH_IN_PROCESS", DATABASE_URL is None and REDIS_URL is None)
CELERY_BEAT_SCHEDULE = {
    "audit-seal": {"task": "audit.seal", "schedule": float(BRIKK_AUDIT_SEAL_INTERVAL_SECONDS)},
    "inbox-sweep": {"task": "coordination.sweep_inbox", "schedule": float(BRIKK_INBOX_SWEEP_INTERVAL_SECONDS)},
}

# --- Auth, API ------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "dashboard:login"

# Password guessing, on every login door (agents/login_guard.py, on django-axes): failed logins per
# username at one address, per address and per username, remembered for a window.
BRIKK_LOGIN_MAX_FAILURES = env_int("BRIKK_LOGIN_MAX_FAILURES", 5, minimum=1)
BRIKK_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("BRIKK_LOGIN_MAX_FAILURES_PER_ADDRESS", 25, minimum=1)
BRIKK_LOGIN_MAX_FAILURES_PER_USERNAME = env_int("BRIKK_LOGIN_MAX_FAILURES_PER_USERNAME", 25, minimum=1)
BRIKK_LOGIN_FAILURE_WINDOW_SECONDS = env_int("BRIKK_LOGIN_FAILURE_WINDOW_SECONDS", 300, minimum=1)
AUTHENTICATION_BACKENDS = ["agents.login_guard.LoginGuardBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "agents.login_guard.LoginGuardHandler"
AXES_CACHE = "default"
AXES_FAILURE_LIMIT = BRIKK_LOGIN_MAX_FAILURES  # informational: the three limits are the handler's
AXES_COOLOFF_TIME = "agents.login_guard.cool_off"
AXES_CLIENT_IP_CALLABLE = "agents.login_guard.client_address"
AXES_LOCKOUT_CALLABLE = "agents.login_guard.lockout_response"
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # refused attempts neither count nor extend the wait
AXES_ENABLE_ADMIN = False  # failures live in the cache, not in axes' tables
AXES_VERBOSE = False
# How often the dashboard's live panels poll while the browser tab is visible.
BRIKK_DASHBOARD_POLL_SECONDS = env_int("BRIKK_DASHBOARD_POLL_SECONDS", 5, minimum=1, maximum=300)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents.authentication.APIKeyAuthentication",
        "agents.authentication.JWTAuthentication",
        "agents.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["brikk.lib.parsers.GuardedJSONParser"],
    # The header and query guards run first in every API view, with content negotiation (brikk/lib/parsers.py).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "brikk.lib.parsers.GuardedContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "audit.refusals.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "brikk.lib.pagination.NewestFirstPagination",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("BRIKK_JWT_ACCESS_MINUTES", 15, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("BRIKK_JWT_REFRESH_DAYS", 1, minimum=1)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Brikk API",
    "DESCRIPTION": "Agent coordination platform: agents, API keys and the echo workflow.",
    "VERSION": BRIKK_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf-spectacular-sidecar's static files: /api/docs/ works offline and pinned.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "AgentStatusEnum": "agents.models.Agent.Status",
        "MessageStatusEnum": "coordination.models.MessageLog.Status",
        "MessageTypeEnum": "coordination.models.MessageLog.Type",
        "EchoStatusEnum": ["delivered", "accepted"],
        "DeliveryStateEnum": "coordination.models.MessageLog.Delivery",
        "DeadReasonEnum": "coordination.models.MessageLog.DeadReason",
        "ReceiptResultEnum": ["ok", "stale", "unknown"],
        "EnvelopeTypeEnum": ["message", "event", "command", "result", "error"],
    },
    # The error statuses the shared layers answer on every operation (guards, authentication, database).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "brikk.openapi.document_errors"],
}

# --- Brikk product settings -----------------------------------------------------------------

BRIKK_HMAC_REQUIRED = env_bool("BRIKK_HMAC_REQUIRED", False)
BRIKK_HMAC_WINDOW_SECONDS = env_int("BRIKK_HMAC_WINDOW_SECONDS", 300, minimum=1, maximum=3600)
BRIKK_RATE_LIMIT_ENABLED = env_bool("BRIKK_RATE_LIMIT_ENABLED", True)
BRIKK_RATE_LIMIT_FAIL_OPEN = env_bool("BRIKK_RATE_LIMIT_FAIL_OPEN", True)
BRIKK_RATE_LIMIT_AGENT_PER_MINUTE = env_int("BRIKK_RATE_LIMIT_AGENT_PER_MINUTE", 600, minimum=1)
BRIKK_RATE_LIMIT_ORG_PER_MINUTE = env_int("BRIKK_RATE_LIMIT_ORG_PER_MINUTE", 6000, minimum=1)
BRIKK_IDEMPOTENCY_ENABLED = env_bool("BRIKK_IDEMPOTENCY_ENABLED", True)
BRIKK_IDEMPOTENCY_TTL_SECONDS = env_int("BRIKK_IDEMPOTENCY_TTL_SECONDS", 86400, minimum=60)
BRIKK_MAX_BODY_BYTES = env_int("BRIKK_MAX_BODY_BYTES", 262144, minimum=1024)
# How deep arrays and objects may nest in a JSON body (brikk/lib/values.py); far below Python's recursion limit.
BRIKK_MAX_JSON_DEPTH = env_int("BRIKK_MAX_JSON_DEPTH", 32, minimum=2, maximum=200)
BRIKK_ASYNC_DEFAULT = env_bool("BRIKK_ASYNC_DEFAULT", False)
# Async echo processing: Celery queue, retries with exponential backoff (base * 2**n seconds).
BRIKK_ASYNC_QUEUE = env_str("BRIKK_ASYNC_QUEUE", "celery")
BRIKK_ASYNC_MAX_RETRIES = env_int("BRIKK_ASYNC_MAX_RETRIES", 5, minimum=0, maximum=20)
BRIKK_ASYNC_RETRY_BASE_SECONDS = env_int("BRIKK_ASYNC_RETRY_BASE_SECONDS", 1, minimum=1, maximum=600)
# Test-only fault injection: a payload "_brikk_fault" directive makes processing fail; never enable in production.
BRIKK_ECHO_FAULT_INJECTION = env_bool("BRIKK_ECHO_FAULT_INJECTION", False)

# Audit trail and retention (manage.py seal_audit / verify_audit / purge_records).
BRIKK_AUDIT_CHECKPOINT_FILE = env_str("BRIKK_AUDIT_CHECKPOINT_FILE")
BRIKK_ARCHIVE_DIR = env_str("BRIKK_ARCHIVE_DIR", str(BASE_DIR / "archive"))
BRIKK_AUDIT_RETENTION_DAYS = env_int("BRIKK_AUDIT_RETENTION_DAYS", 365, minimum=1)
BRIKK_MESSAGE_RETENTION_DAYS = env_int("BRIKK_MESSAGE_RETENTION_DAYS", 90, minimum=1)
BRIKK_IDEMPOTENCY_RETENTION_DAYS = env_int("BRIKK_IDEMPOTENCY_RETENTION_DAYS", 0, minimum=0)

# Operations: who may scrape /metrics (a bearer token, or a client address in the allowlist).
BRIKK_METRICS_TOKEN = env_str("BRIKK_METRICS_TOKEN")
BRIKK_METRICS_ALLOWED_IPS = env_list("BRIKK_METRICS_ALLOWED_IPS", ["127.0.0.1/32", "::1/128"])
for _network in BRIKK_METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"BRIKK_METRICS_ALLOWED_IPS holds {_network!r}, which is not an IP address or network."
        ) from None

# Prometheus: with PROMETHEUS_MULTIPROC_DIR every process writes its values to files there and /metrics sums
# them (gunicorn's workers). prometheus_client reads the variable once, when first imported; these settings
# load before any app imports it. A process that imported it before the variable was set would count in
# memory while /metrics reads the directory, and request metrics would vanish: it stops here instead.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
    _prometheus_values = sys.modules.get("prometheus_client.values")
    if _prometheus_values is not None and _prometheus_values.ValueClass is _prometheus_values.MutexValue:
        raise ImproperlyConfigured(
            "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported, so this process would count "
            "in memory while /metrics reads the directory; set it in the environment before the server starts "
            "(brikk/gunicorn.conf.py does)."
        )

# API keys: PBKDF2 work factor, failed-attempt limits, rotation grace, default lifetime.
# The secret is 256 random bits: no work factor makes guessing it any less hopeless, so it is chosen for
# the cost of a check (about 0.07 ms at 100). Stored hashes of another factor are re-hashed on next use.
BRIKK_API_KEY_PBKDF2_ITERATIONS = env_int("BRIKK_API_KEY_PBKDF2_ITERATIONS", 100, minimum=1, maximum=10_000_000)
# Failed key checks allowed per key prefix and per client address in a window, before 429 without hashing.
BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX = env_int("BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX", 10, minimum=1)
BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS = env_int("BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS", 50, minimum=1)
BRIKK_API_KEY_FAILURE_WINDOW_SECONDS = env_int("BRIKK_API_KEY_FAILURE_WINDOW_SECONDS", 300, minimum=1, maximum=86400)
BRIKK_API_KEY_ROTATION_GRACE_SECONDS = env_int("BRIKK_API_KEY_ROTATION_GRACE_SECONDS", 3600, minimum=0)
BRIKK_API_KEY_DEFAULT_TTL_DAYS = env_int("BRIKK_API_KEY_DEFAULT_TTL_DAYS", 365, minimum=0)


def _fernet_keys() -> list[str]:
    """Keys that encrypt agents' signing secrets at rest; the first encrypts, all decrypt."""
    keys = env_list("BRIKK_ENCRYPTION_KEYS", [])
    if not keys:
        if not DEBUG:
            raise ImproperlyConfigured(
                "BRIKK_ENCRYPTION_KEYS is required when DJANGO_DEBUG is off; generate one with: "
                'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
            )
        # Development only: derived from the (development) secret key.
        keys = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]
    for key in keys:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                "BRIKK_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes)."
            ) from None
    return keys


BRIKK_ENCRYPTION_KEYS = _fernet_keys()

# --- Content-Security-Policy (django-csp) ----------------------------------------------------

# Scripts, styles, images and fonts come from this server only: no CDN, no inline script, no eval
# (htmx runs with allowEval off, templates/base.html). Two inline <style> blocks are allowed by
# their hash: the 500 page's (it must not depend on static files) and Swagger UI's (/api/docs/).
# tests/project/test_csp.py recomputes each from its template.
BRIKK_CSP_STYLE_HASHES = {
    "500.html": "'sha256-mvjjnkt7t8XQ35BwiDSdAf97PrCWd/Q/ASROVmCMVM8='",
    "drf_spectacular/swagger_ui.html": "'sha256-MMpT0iDxyjALd9PdfepImGX3DBfJPXZ4IlDWdPAgtn0='",
}
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", *BRIKK_CSP_STYLE_HASHES.values()],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Static files ---------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("BRIKK_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env_bool("BRIKK_MANIFEST_STATIC", not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging --------------------------------------------------------------------------------

LOG_FORMAT = env_choice("BRIKK_LOG_FORMAT", "text" if DEBUG else "json", ("json", "text"))
LOG_LEVEL = env_choice("BRIKK_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "brikk.lib.logging.RequestContextFilter"}},
    "formatters": {
        "json": {"()": "brikk.lib.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["context"], "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
        # httpx logs each request's URL at INFO; a push endpoint's URL may carry a token in its query.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
