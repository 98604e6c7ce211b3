"""What coordination keeps for a while, registered with the archive-then-purge run (audit/retention.py).

Idempotency records are registered before messages: they point at the messages they answered. A message's
delivery attempts go with it (CASCADE), so they are archived inside its record (``deliveries``); its replies
stay, unlinked (``in_reply_to`` SET NULL).
"""

from collections import defaultdict

from django.db.models import Exists, OuterRef
from django.db.models.functions import Now

from audit import retention
from coordination.models import DeliveryAttempt, IdempotencyRecord, MessageLog


def attach_deliveries(batch: list[dict]) -> None:
    """Each archived message with its delivery attempts, in order: one query per batch."""
    by_message = defaultdict(list)
    attempts = DeliveryAttempt.objects.filter(message_id__in=[row["id"] for row in batch]).order_by("started_at", "id")
    for attempt in attempts.values():
        by_message[attempt.pop("message_id")].append(attempt)
    for row in batch:
        row["deliveries"] = by_message.get(row["id"], [])


def _live_records_answered_by(message):
    return IdempotencyRecord.objects.filter(message=message, response_body__isnull=True, expires_at__gt=Now())


IDEMPOTENCY = retention.TableKind(
    "idempotency",
    "idempotency.jsonl.gz",
    # Expired records only, and only once past expiry by the retention's days (the cutoff).
    lambda cutoff: IdempotencyRecord.objects.expired(cutoff),
)
MESSAGES = retention.TableKind(
    "messages",
    "messages.jsonl.gz",
    # Never a message still waiting for its recipient (queued or leased), nor one whose answer a live idempotency
    # record replays (coordination/idempotency.py: the record keeps no copy); acked and dead ones, and those
    # without a delivery state (refused, failed), follow the policy.
    lambda cutoff: (
        MessageLog.objects.filter(created_at__lt=cutoff)
        .exclude(delivery_state__in=[MessageLog.Delivery.QUEUED, MessageLog.Delivery.LEASED])
        .exclude(Exists(_live_records_answered_by(OuterRef("pk"))))
    ),
    # Every change of a message's delivery sets updated_at: one redriven (and leased again) while the run
    # archives is left for the next run, never purged in another state than archived.
    changed_at="updated_at",
    attach=attach_deliveries,
    attached="deliveries",
)


def register() -> None:
    retention.register(IDEMPOTENCY)
    retention.register(MESSAGES)
