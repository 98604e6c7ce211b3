"""Inbox test tooling: queue many messages fast (rows written directly) and call the inbox API."""

from datetime import timedelta

from django.utils import timezone
from uuid6 import uuid7

from coordination.models import MessageLog


def queue_messages(sender, recipient, count, *, ttl=timedelta(hours=1), now=None) -> list[MessageLog]:
    """``count`` delivered messages queued in ``recipient``'s inbox, oldest first, as the echo writes them."""
    now = now or timezone.now()
    rows = []
    for number in range(count):
        message_id = uuid7()
        rows.append(
            MessageLog(
                id=uuid7(),
                organization_id=sender.organization_id,
                message_id=message_id,
                sender_id=sender.pk,
                recipient_id=recipient.pk,
                type="message",
                status=MessageLog.Status.DELIVERED,
                http_status=200,
                attempts=1,
                request_body={
                    "version": "1.0",
                    "message_id": str(message_id),
                    "ts": "2026-01-01T00:00:00Z",
                    "type": "message",
                    "sender": {"agent_id": str(sender.pk)},
                    "recipient": {"agent_id": str(recipient.pk)},
                    "payload": {"n": number},
                },
                received_at=now,
                delivery_state=MessageLog.Delivery.QUEUED,
                available_at=now,
                expires_at=now + ttl,
            )
        )
    return MessageLog.objects.bulk_create(rows, batch_size=500)


def inbox_post(client, key, action, body):
    return client.post(f"/api/v1/inbox/{action}", body, format="json", HTTP_X_BRIKK_KEY=key)
