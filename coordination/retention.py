"""What coordination keeps for a while, registered with the archive-then-purge run (audit/retention.py).

Idempotency records are registered before messages: they point at the messages they answered.
"""

from audit import retention
from coordination.models import IdempotencyRecord, MessageLog

IDEMPOTENCY = retention.TableKind(
    "idempotency",
    "idempotency.jsonl.gz",
    # Expired records only, and only once past expiry by the retention's days (the cutoff).
    lambda cutoff: IdempotencyRecord.objects.expired(cutoff),
)
MESSAGES = retention.TableKind(
    "messages",
    "messages.jsonl.gz",
    # Never a message still waiting for its recipient (queued or leased): acked and dead ones, and those
    # without a delivery state (refused, failed), follow the policy.
    lambda cutoff: MessageLog.objects.filter(created_at__lt=cutoff).exclude(
        delivery_state__in=[MessageLog.Delivery.QUEUED, MessageLog.Delivery.LEASED]
    ),
)


def register() -> None:
    retention.register(IDEMPOTENCY)
    retention.register(MESSAGES)
