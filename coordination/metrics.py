"""Prometheus series of the echo, its layers and delivery.

The echo's outcomes and dead letters are derived from audit events (see audit/metrics.py); deliveries, acks
and nacks are counted by the inbox itself (coordination/inbox.py: acks are not audited, for volume), which
also observes the two latency histograms. The inbox depth is read from the database at scrape time
(``InboxDepthCollector``, registered by /metrics in brikk/metrics.py): one GROUP BY query per scrape.
"""

import logging

from django.db import DatabaseError, connection
from django.db.models import Count, Q
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from audit.actions import AuditAction
from audit.metrics import bounded_reason
from coordination.models import MessageLog

logger = logging.getLogger("brikk.coordination")

ECHOES = Counter("brikk_echo_total", "Echo outcomes (delivered, accepted, failed, rejected).", ["outcome"])
RATE_LIMIT_REFUSALS = Counter("brikk_rate_limit_refusals_total", "Requests refused by the rate limiter.")
RATE_LIMIT_DEGRADED = Counter(
    "brikk_rate_limit_degraded_total", "Requests let through (or refused) because the rate limiter's Redis was down."
)
IDEMPOTENCY = Counter("brikk_idempotency_total", "Idempotency outcomes: replayed, conflict, in_progress.", ["result"])
INBOX_DELIVERIES = Counter("brikk_inbox_deliveries_total", "Messages leased to a consumer (receives).")
INBOX_REDELIVERIES = Counter("brikk_inbox_redeliveries_total", "Leases of a message received before (count > 1).")
INBOX_ACKS = Counter("brikk_inbox_acks_total", "Messages acknowledged by their recipient.")
INBOX_NACKS = Counter("brikk_inbox_nacks_total", "Messages given back by their recipient (nack).")
# From 10 ms to the 14 days a message may wait (ttl_ms at most).
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 1209600)
ACCEPTED_TO_RECEIVED = Histogram(
    "brikk_inbox_accepted_to_received_seconds",
    "From a message's acceptance (received_at) to its first delivery to a consumer.",
    buckets=LATENCY_BUCKETS,
)
ACCEPTED_TO_ACKED = Histogram(
    "brikk_inbox_accepted_to_acked_seconds",
    "From a message's acceptance (received_at) to its acknowledgement.",
    buckets=LATENCY_BUCKETS,
)
PUSHES = Counter(
    "brikk_push_total",
    "Push attempts by outcome: acked, http_error, gone, timeout, connection_error, refused.",
    ["outcome"],
)
PUSH_LATENCY = Histogram(
    "brikk_push_latency_seconds",
    "From a push's request to its answer (or its failure), whatever the status.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120),
)
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


def observe(sender, *, action: str, details: dict | None = None, count: int = 1, **kwargs) -> None:
    if action in ECHO_OUTCOMES:
        ECHOES.labels(outcome=ECHO_OUTCOMES[action]).inc(count)
    elif action in IDEMPOTENCY_RESULTS:
        IDEMPOTENCY.labels(result=IDEMPOTENCY_RESULTS[action]).inc(count)
    elif action == AuditAction.RATE_LIMIT_REFUSED:
        RATE_LIMIT_REFUSALS.inc(count)
    elif action == AuditAction.RATE_LIMIT_DEGRADED:
        RATE_LIMIT_DEGRADED.inc(count)
    elif action == AuditAction.MESSAGE_DEAD_LETTERED:
        DEAD_LETTERS.labels(reason=(details or {}).get("reason", "unknown")).inc(count)
    elif action == AuditAction.REQUEST_REJECTED:
        REJECTED_REQUESTS.labels(reason=bounded_reason(details)).inc(count)


DEPTH_STATES = (MessageLog.Delivery.QUEUED, MessageLog.Delivery.LEASED, MessageLog.Delivery.DEAD)


def inbox_depth() -> dict[tuple[str, str], int]:
    """Messages per (organization id, state) for queued, leased and dead ones: one GROUP BY query whose
    condition is the two partial indexes' (msg_inbox: queued or leased; msg_dead_letters: dead), so acked
    history is never read."""
    rows = (
        MessageLog.objects.filter(
            Q(delivery_state__in=[MessageLog.Delivery.QUEUED, MessageLog.Delivery.LEASED])
            | Q(delivery_state=MessageLog.Delivery.DEAD)
        )
        .order_by()
        .values_list("organization_id", "delivery_state")
        .annotate(count=Count("pk"))
    )
    return {(str(organization), state): count for organization, state, count in rows}


class InboxDepthCollector:
    """``brikk_inbox_depth{organization,state}`` read at scrape time (a gauge, not a counter: true in any
    process, so it needs no multiprocess files). Every state of an organization that has any is reported
    (0 included); a database that cannot be read leaves the gauge empty and never fails the scrape."""

    def collect(self):
        family = GaugeMetricFamily(
            "brikk_inbox_depth",
            "Messages queued, leased or dead per organization, read at scrape time.",
            labels=["organization", "state"],
        )
        try:
            depth = inbox_depth()
        except DatabaseError as exc:
            connection.close_if_unusable_or_obsolete()  # a broken pooled connection must not be reused
            logger.warning("inbox depth not read for /metrics: %s", exc.__class__.__name__)
            depth = {}
        for organization in sorted({organization for organization, _ in depth}):
            for state in DEPTH_STATES:
                family.add_metric([organization, state.value], depth.get((organization, state.value), 0))
        yield family
