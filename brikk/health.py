"""Readiness checks: is the database, Redis and the task broker reachable, and how fast.

The database is required: without it nothing can be served (503). Redis is optional while rate
limiting fails open (BRIKK_RATE_LIMIT_FAIL_OPEN): key verification falls back to the database
and the rate limiter lets requests through, so its loss is ``degraded``. The broker only carries
asynchronous echoes; its loss is ``degraded`` too.

Static files are checked once, when the server loads the application (``require_static_files`` in
brikk/wsgi.py and brikk/asgi.py): without the manifest every HTML page would answer 500, so the
server does not start.
"""

import time
from dataclasses import dataclass, field

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import ManifestFilesMixin
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages
from django.db import connection

OK, DOWN, SKIPPED = "ok", "down", "skipped"
READY, DEGRADED, UNAVAILABLE = "ok", "degraded", "unavailable"


@dataclass(frozen=True)
class Check:
    status: str
    latency_ms: float | None = None
    error: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict:
        body = {"status": self.status, "latency_ms": self.latency_ms}
        if self.error:
            body["error"] = self.error
        if self.detail:
            body["detail"] = self.detail
        return body


@dataclass
class Readiness:
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.checks["database"].status == DOWN:
            return UNAVAILABLE
        if self.checks["redis"].status == DOWN and redis_is_required():
            return UNAVAILABLE
        if any(check.status == DOWN for check in self.checks.values()):
            return DEGRADED
        return READY

    @property
    def ready(self) -> bool:
        return self.status != UNAVAILABLE

    def as_dict(self) -> dict:
        return {"status": self.status, "checks": {name: check.as_dict() for name, check in self.checks.items()}}


def redis_is_required() -> bool:
    """Redis is needed to serve only when rate limiting is on and must fail closed."""
    return settings.BRIKK_RATE_LIMIT_ENABLED and not settings.BRIKK_RATE_LIMIT_FAIL_OPEN


def _timed(probe) -> Check:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - any failure means "down"; only the class name is reported
        return Check(DOWN, round((time.perf_counter() - started) * 1000, 2), error=exc.__class__.__name__)
    return Check(OK, round((time.perf_counter() - started) * 1000, 2))


def check_database() -> Check:
    def probe():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception:
            # A broken pooled connection must not be reused by the next request.
            connection.close_if_unusable_or_obsolete()
            raise

    return _timed(probe)


def redis_client():
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def redis_available() -> bool | None:
    """True/False when Redis is configured, None when it is not (in-process cache)."""
    if not settings.REDIS_URL:
        return None
    return check_redis().status == OK


def check_redis() -> Check:
    if not settings.REDIS_URL:
        return Check(SKIPPED, detail="REDIS_URL not set: in-process cache")
    return _timed(lambda: redis_client().ping())


def check_broker() -> Check:
    if settings.CELERY_TASK_ALWAYS_EAGER or not settings.CELERY_BROKER_URL:
        return Check(SKIPPED, detail="tasks run in-process (eager)")

    def probe():
        from brikk.celery import app

        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=1)

    return _timed(probe)


def readiness() -> Readiness:
    return Readiness({"database": check_database(), "redis": check_redis(), "broker": check_broker()})


def static_files_problem() -> str | None:
    """Why the pages cannot link their static files, or None.

    With manifest storage (BRIKK_MANIFEST_STATIC, on by default in production) every ``{% static %}``
    looks its file up in the manifest that ``collectstatic`` writes; no manifest, or one that lacks a
    file the code ships (collected from an older release), makes every page that links it a 500.
    """
    storage = storages["staticfiles"]
    if not isinstance(storage, ManifestFilesMixin):
        return None
    manifest = storage.path(storage.manifest_name)
    try:
        paths, _ = storage.load_manifest()
    except ValueError as exc:
        return f"{exc} at {manifest}; run `manage.py collectstatic`"
    if not paths:
        return (
            f"no static files manifest at {manifest}: run `manage.py collectstatic` before starting "
            "(or set BRIKK_MANIFEST_STATIC=false to serve unhashed files)"
        )
    ignore = apps.get_app_config("staticfiles").ignore_patterns
    shipped = {path.replace("\\", "/") for finder in finders.get_finders() for path, _ in finder.list(ignore)}
    missing = sorted(shipped - set(paths))
    if missing:
        return (
            f"the static files manifest at {manifest} lacks {len(missing)} file(s) the code ships, "
            f"e.g. {missing[0]}: run `manage.py collectstatic` again"
        )
    return None


def require_static_files() -> None:
    """Refuse to serve (at start) when the pages could not link their static files."""
    problem = static_files_problem()
    if problem:
        raise ImproperlyConfigured(f"Static files: {problem}.")
