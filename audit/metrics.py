"""Prometheus counters derived from audit events, in one place: ``audit.services.record`` calls
``observe`` for every event, so the metrics and the audit trail cannot disagree.

Counters work in prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR), one file per
gunicorn worker, summed at scrape time.
"""

from prometheus_client import Counter

AUDIT_EVENTS = Counter("brikk_audit_events_total", "Audit events recorded.", ["action", "outcome"])
ECHOES = Counter("brikk_echo_total", "Echo outcomes (delivered, accepted, failed, rejected).", ["outcome"])
AUTH_FAILURES = Counter("brikk_auth_failures_total", "Refused authentications and signatures.", ["reason"])
RATE_LIMIT_REFUSALS = Counter("brikk_rate_limit_refusals_total", "Requests refused by the rate limiter.")
RATE_LIMIT_DEGRADED = Counter(
    "brikk_rate_limit_degraded_total", "Requests let through (or refused) because the rate limiter's Redis was down."
)
IDEMPOTENCY = Counter("brikk_idempotency_total", "Idempotency outcomes: replayed, conflict, in_progress.", ["result"])
REJECTED_REQUESTS = Counter("brikk_requests_rejected_total", "Requests refused by the request guards.", ["reason"])

# Bounded label values: anything else is counted as "other", so a caller cannot blow up the series.
ECHO_OUTCOMES = {"delivered", "accepted", "failed", "rejected"}
IDEMPOTENCY_RESULTS = {"replayed", "conflict", "in_progress"}
MAX_REASON_LENGTH = 40


def _reason(details: dict | None) -> str:
    reason = str((details or {}).get("reason") or "unknown")
    return reason[:MAX_REASON_LENGTH]


def observe(action: str, outcome: str, details: dict | None = None) -> None:
    AUDIT_EVENTS.labels(action=action[:64], outcome=outcome).inc()
    family, _, kind = action.partition(".")
    if family == "echo":
        ECHOES.labels(outcome=kind if kind in ECHO_OUTCOMES else "other").inc()
    elif action == "auth.failed":
        AUTH_FAILURES.labels(reason=_reason(details)).inc()
    elif action == "rate_limit.refused":
        RATE_LIMIT_REFUSALS.inc()
    elif action == "rate_limit.degraded":
        RATE_LIMIT_DEGRADED.inc()
    elif family == "idempotency":
        IDEMPOTENCY.labels(result=kind if kind in IDEMPOTENCY_RESULTS else "other").inc()
    elif action == "request.rejected":
        REJECTED_REQUESTS.labels(reason=_reason(details)).inc()
