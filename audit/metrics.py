"""Prometheus counters of the audit trail itself. Other apps derive theirs from the same event
(``audit.services.audit_recorded``): see agents/metrics.py and coordination/metrics.py.

Counters work in prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR), one file per
gunicorn worker, summed at scrape time.
"""

from prometheus_client import Counter

AUDIT_EVENTS = Counter("brikk_audit_events_total", "Audit events recorded.", ["action", "outcome"])

MAX_REASON_LENGTH = 40


def bounded_reason(details: dict | None) -> str:
    """``details["reason"]`` cut short, so a caller cannot blow up a counter's series."""
    reason = str((details or {}).get("reason") or "unknown")
    return reason[:MAX_REASON_LENGTH]


def observe(sender, *, action: str, outcome: str, count: int = 1, **kwargs) -> None:
    AUDIT_EVENTS.labels(action=action, outcome=outcome).inc(count)
