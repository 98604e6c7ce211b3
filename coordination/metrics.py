"""Prometheus counters of the echo and its layers, derived from audit events (see audit/metrics.py)."""

from prometheus_client import Counter

from audit.actions import AuditAction
from audit.metrics import bounded_reason

ECHOES = Counter("brikk_echo_total", "Echo outcomes (delivered, accepted, failed, rejected).", ["outcome"])
RATE_LIMIT_REFUSALS = Counter("brikk_rate_limit_refusals_total", "Requests refused by the rate limiter.")
RATE_LIMIT_DEGRADED = Counter(
    "brikk_rate_limit_degraded_total", "Requests let through (or refused) because the rate limiter's Redis was down."
)
IDEMPOTENCY = Counter("brikk_idempotency_total", "Idempotency outcomes: replayed, conflict, in_progress.", ["result"])
INBOX_DELIVERIES = Counter("brikk_inbox_deliveries_total", "Messages leased to a consumer (receives).")
INBOX_REDELIVERIES = Counter("brikk_inbox_redeliveries_total", "Leases of a message received before (count > 1).")
INBOX_ACKS = Counter("brikk_inbox_acks_total", "Messages acknowledged by their recipient.")
DEAD_LETTERS = Counter("brikk_dead_letters_total", "Messages dead-lettered, by reason.", ["reason"])
REJECTED_REQUESTS = Counter("brikk_requests_rejected_total", "Requests refused by the request guards.", ["reason"])

ECHO_OUTCOMES = {
    AuditAction.ECHO_DELIVERED: "delivered",
    AuditAction.ECHO_ACCEPTED: "accepted",
    AuditAction.ECHO_FAILED: "failed",
    AuditAction.ECHO_REJECTED: "rejected",
}
IDEMPOTENCY_RESULTS = {
    AuditAction.IDEMPOTENCY_REPLAYED: "replayed",
    AuditAction.IDEMPOTENCY_CONFLICT: "conflict",
    AuditAction.IDEMPOTENCY_IN_PROGRESS: "in_progress",
}


def observe(sender, *, action: str, details: dict | None = None, **kwargs) -> None:
    if action in ECHO_OUTCOMES:
        ECHOES.labels(outcome=ECHO_OUTCOMES[action]).inc()
    elif action in IDEMPOTENCY_RESULTS:
        IDEMPOTENCY.labels(result=IDEMPOTENCY_RESULTS[action]).inc()
    elif action == AuditAction.RATE_LIMIT_REFUSED:
        RATE_LIMIT_REFUSALS.inc()
    elif action == AuditAction.RATE_LIMIT_DEGRADED:
        RATE_LIMIT_DEGRADED.inc()
    elif action == AuditAction.MESSAGE_DEAD_LETTERED:
        DEAD_LETTERS.labels(reason=(details or {}).get("reason", "unknown")).inc()
    elif action == AuditAction.REQUEST_REJECTED:
        REJECTED_REQUESTS.labels(reason=bounded_reason(details)).inc()
