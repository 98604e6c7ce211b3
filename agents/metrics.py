"""Prometheus counters of authentication, derived from audit events (see audit/metrics.py)."""

from prometheus_client import Counter

from audit.actions import AuditAction
from audit.metrics import bounded_reason

AUTH_FAILURES = Counter("brikk_auth_failures_total", "Refused authentications and signatures.", ["reason"])


def observe(sender, *, action: str, details: dict | None = None, count: int = 1, **kwargs) -> None:
    if action in (AuditAction.AUTH_FAILED, AuditAction.AUTH_THROTTLED):
        AUTH_FAILURES.labels(reason=bounded_reason(details)).inc(count)
