"""Store-and-forward: each delivered message waits in its recipient's inbox until it is acked, expires or
is dead-lettered. The inbox entry is the MessageLog row itself (written in the echo's own INSERT).

States: ``queued`` → ``leased`` (one consumer until ``leased_until``, proved by its receipt) → ``acked``; a
lease that runs out, or a nack, makes it receivable again (after the nack's delay). After the organization's
``max_deliveries`` leases it is ``dead`` (``max_deliveries``); past ``expires_at`` (received + ttl_ms) before
an ack, ``dead`` (``expired``). Dead-lettering happens in ``sweep`` only, so it is audited in one place.

A receipt is ``<message id>:<token>``; it is valid while its lease holds. Results per receipt: ``ok``,
``stale`` (a message in your inbox whose current lease is not this receipt's, or has run out), ``unknown``.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from agents.models import Organization
from audit.actions import AuditAction
from audit.services import record
from coordination import leasing, metrics, wakeup
from coordination.answers import envelope_ttl_ms, iso
from coordination.models import DeliveryAttempt, MessageLog

Delivery, DeadReason = MessageLog.Delivery, MessageLog.DeadReason
UNDELIVERED = (Delivery.QUEUED, Delivery.LEASED)
OK, STALE, UNKNOWN = "ok", "stale", "unknown"
SWEEP_BATCH = 500


def receipt_of(message_id, token: str) -> str:
    return f"{message_id}:{token}"


def parse_receipt(receipt) -> tuple[uuid.UUID, str] | None:
    if not isinstance(receipt, str) or receipt.count(":") != 1:
        return None
    message_id, token = receipt.split(":")
    try:
        return uuid.UUID(message_id), token
    except ValueError:
        return None


def max_deliveries_of(organization_id) -> int:
    return Organization.objects.filter(pk=organization_id).values_list("max_deliveries", flat=True).first() or 10


def receive(
    agent_id,
    organization_id,
    *,
    max_messages: int,
    lease_seconds: int,
    consumer: leasing.Consumer = leasing.Consumer(),  # noqa: B008 - frozen dataclass
    now=None,
) -> list[dict]:
    """Lease the agent's oldest available messages; each item is the envelope plus its lease."""
    now = now or timezone.now()
    leases = leasing.lease(
        agent_id,
        now=now,
        limit=max_messages,
        lease_seconds=lease_seconds,
        max_deliveries=max_deliveries_of(organization_id),
        consumer=consumer,
    )
    if leases:
        metrics.INBOX_DELIVERIES.inc(len(leases))
        redelivered = sum(1 for item in leases if item.delivery_count > 1)
        if redelivered:
            metrics.INBOX_REDELIVERIES.inc(redelivered)
        for item in leases:
            if item.delivery_count == 1:
                metrics.ACCEPTED_TO_RECEIVED.observe(max((now - item.received_at).total_seconds(), 0))
    return [receive_item(item) for item in leases]


def receive_item(lease: leasing.Lease) -> dict:
    """What a consumer gets for a lease: the envelope as sent plus its lease (receive, stream, push body)."""
    return {
        **(lease.request_body or {}),
        "id": str(lease.id),
        "receipt": receipt_of(lease.id, lease.token),
        "delivery_count": lease.delivery_count,
        "leased_until": iso(lease.leased_until),
        "accepted_at": iso(lease.received_at),
    }


def next_available_in(agent_id, *, now=None) -> float | None:
    """Seconds until one of the agent's messages becomes receivable without any write (a nack's delay ends,
    a lease runs out), or None. A waiting consumer sleeps until then at most; new messages wake it sooner."""
    now = now or timezone.now()
    return seconds_until_available(MessageLog.objects.filter(recipient_id=agent_id), now=now)


def seconds_until_available(messages, *, now: datetime) -> float | None:
    """Seconds until one of ``messages`` (a queryset) becomes available without any write, or None."""
    rows = messages.filter(delivery_state__in=UNDELIVERED, expires_at__gt=now)
    candidates = [
        rows.filter(delivery_state=Delivery.QUEUED, available_at__gt=now).aggregate(at=Min("available_at"))["at"],
        rows.filter(delivery_state=Delivery.LEASED, leased_until__gt=now).aggregate(at=Min("leased_until"))["at"],
    ]
    upcoming = [moment for moment in candidates if moment is not None]
    return max((min(upcoming) - now).total_seconds(), 0.0) if upcoming else None


def release_stream_leases_after(agent_id, message_id, *, now=None) -> int:
    """A stream resumed with ``Last-Event-ID``: the messages its streams leased after that one, still unacked,
    are receivable again at once (the connection may have dropped them) instead of when their lease runs out.
    Those up to it were seen by the consumer, which acks them with their receipts."""
    now = now or timezone.now()
    with transaction.atomic():
        leased = (
            MessageLog.objects.select_for_update(skip_locked=True)
            .filter(recipient_id=agent_id, delivery_state=Delivery.LEASED, leased_until__gt=now, pk__gt=message_id)
            .values_list("pk", "receipt")
        )
        rows = dict(leased)
        streamed = set(
            DeliveryAttempt.objects.filter(
                message_id__in=rows, kind=DeliveryAttempt.Kind.STREAM, token__in=rows.values(), outcome=""
            ).values_list("message_id", flat=True)
        )
        if not streamed:
            return 0
        MessageLog.objects.filter(pk__in=streamed).update(
            delivery_state=Delivery.QUEUED, receipt="", leased_until=None, available_at=now, updated_at=now
        )
        DeliveryAttempt.objects.filter(message_id__in=streamed, outcome="").update(
            outcome=DeliveryAttempt.Outcome.RELEASED, ended_at=now
        )
        wakeup.announce(agent_id)
    return len(streamed)


def _settle(
    agent_id, receipts: list, now: datetime, change: Callable, attempt: dict, settled: Callable | None = None
) -> list[dict]:
    """Check each receipt against its message's current lease (rows locked) and apply ``change`` to the
    queryset of those whose lease holds, and ``attempt`` (field values) to those leases' delivery attempts.
    After the transaction, ``settled`` gets the ``received_at`` of each message changed (for the metrics).
    One result per receipt, in the order given."""
    parsed = {receipt: parse_receipt(receipt) for receipt in receipts}
    ids = {value[0] for value in parsed.values() if value is not None}
    results = {}
    with transaction.atomic():
        rows = {
            pk: (state, token, leased_until, expires_at, received_at)
            for pk, state, token, leased_until, expires_at, received_at in MessageLog.objects.select_for_update()
            .filter(recipient_id=agent_id, pk__in=ids, delivery_state__in=list(Delivery.values))
            .values_list("pk", "delivery_state", "receipt", "leased_until", "expires_at", "received_at")
        }
        valid, tokens = set(), set()
        for receipt, value in parsed.items():
            if value is None or value[0] not in rows:
                results[receipt] = UNKNOWN
                continue
            state, token, leased_until, expires_at, _ = rows[value[0]]
            holds = state == Delivery.LEASED and token and token == value[1] and leased_until > now
            if holds and expires_at > now:
                results[receipt] = OK
                valid.add(value[0])
                tokens.add(value[1])
            else:
                results[receipt] = STALE
        if valid:
            change(MessageLog.objects.filter(pk__in=valid))
            DeliveryAttempt.objects.filter(message_id__in=valid, token__in=tokens, outcome="").update(**attempt)
    if settled is not None and valid:
        settled([rows[pk][4] for pk in valid])
    return [{"receipt": receipt, "result": results[receipt]} for receipt in receipts]


def ack(agent_id, receipts: list, *, now=None) -> list[dict]:
    now = now or timezone.now()
    return _settle(
        agent_id,
        receipts,
        now,
        lambda rows: rows.update(
            delivery_state=Delivery.ACKED, acked_at=now, receipt="", leased_until=None, updated_at=now
        ),
        {"outcome": DeliveryAttempt.Outcome.ACKED, "ended_at": now},
        settled=lambda received: _observe_acks(received, now),
    )


def _observe_acks(received: list[datetime], now: datetime) -> None:
    """Acks are counted, not audited; each one's time since its message was accepted is observed."""
    metrics.INBOX_ACKS.inc(len(received))
    for moment in received:
        metrics.ACCEPTED_TO_ACKED.observe(max((now - moment).total_seconds(), 0))


def nack(agent_id, receipts: list, *, delay_seconds: int = 0, now=None) -> list[dict]:
    now = now or timezone.now()
    results = _settle(
        agent_id,
        receipts,
        now,
        lambda rows: rows.update(
            delivery_state=Delivery.QUEUED,
            available_at=now + timedelta(seconds=delay_seconds),
            receipt="",
            leased_until=None,
            updated_at=now,
        ),
        {"outcome": DeliveryAttempt.Outcome.NACKED, "ended_at": now},
        settled=lambda received: metrics.INBOX_NACKS.inc(len(received)),
    )
    wakeup.announce(agent_id)  # after the commit; waiters of a delayed nack then sleep until the delay ends
    return results


def extend(agent_id, receipts: list, *, lease_seconds: int, now=None) -> list[dict]:
    now = now or timezone.now()
    until = now + timedelta(seconds=lease_seconds)
    return _settle(
        agent_id,
        receipts,
        now,
        lambda rows: rows.update(leased_until=until, updated_at=now),
        {"leased_until": until},
    )


def stats(agent_id, *, now=None) -> dict:
    """Counts per state of the agent's inbox and the age of its oldest available message."""
    now = now or timezone.now()
    counts = dict.fromkeys(Delivery.values, 0)
    for state, count in (
        MessageLog.objects.filter(recipient_id=agent_id, delivery_state__in=list(Delivery.values))
        .order_by()
        .values_list("delivery_state")
        .annotate(count=Count("id"))
    ):
        counts[state] = count
    oldest = (
        MessageLog.objects.filter(leasing.available(now), recipient_id=agent_id, expires_at__gt=now)
        .order_by("id")
        .values_list("received_at", flat=True)
        .first()
    )
    return {
        "counts": counts,
        "oldest_available_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
    }


@dataclass
class SweepResult:
    expired: int = 0
    max_deliveries: int = 0
    leases_returned: int = 0


def sweep(*, now=None, batch_size: int = SWEEP_BATCH) -> SweepResult:
    """Idempotent, and safe with several instances at once: expired messages and those out of deliveries are
    dead-lettered (each row locked with SKIP LOCKED, re-checked, audited once); leases that ran out go back to
    ``queued``. Receiving does not need the sweep (a lapsed lease is available anyway); the stats and the dead
    letters do."""
    now = now or timezone.now()
    result = SweepResult()
    result.expired = _dead_letter(
        Q(delivery_state__in=UNDELIVERED, expires_at__lte=now), DeadReason.EXPIRED, now, batch_size
    )
    with transaction.atomic():
        result.leases_returned = MessageLog.objects.filter(
            delivery_state=Delivery.LEASED, leased_until__lte=now
        ).update(delivery_state=Delivery.QUEUED, receipt="", leased_until=None, available_at=now, updated_at=now)
        if result.leases_returned:
            wakeup.announce_all()
    result.max_deliveries = _dead_letter(
        Q(delivery_state=Delivery.QUEUED, delivery_count__gte=F("organization__max_deliveries")),
        DeadReason.MAX_DELIVERIES,
        now,
        batch_size,
    )
    return result


def _dead_letter(condition: Q, reason: str, now: datetime, batch_size: int, actor_id: str = "inbox-sweep") -> int:
    """Dead-letter the rows matching ``condition`` (locked, SKIP LOCKED), each audited once."""
    total = 0
    while True:
        with transaction.atomic():
            rows = list(
                MessageLog.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(condition)
                .order_by()
                .values_list("pk", "organization_id", "recipient_id", "message_id", "delivery_count")[:batch_size]
            )
            if not rows:
                return total
            MessageLog.objects.filter(pk__in=[row[0] for row in rows]).update(
                delivery_state=Delivery.DEAD,
                dead_reason=reason,
                dead_at=now,
                receipt="",
                leased_until=None,
                updated_at=now,
            )
            for pk, organization_id, recipient_id, message_id, delivery_count in rows:
                record(
                    AuditAction.MESSAGE_DEAD_LETTERED,
                    organization_id=organization_id,
                    actor_kind="system",
                    actor_id=actor_id,
                    resource_kind="message",
                    resource_id=pk,
                    details={
                        "reason": reason,
                        "recipient_id": str(recipient_id) if recipient_id else None,
                        "message_id": str(message_id) if message_id else None,
                        "delivery_count": delivery_count,
                    },
                )
        total += len(rows)
        if len(rows) < batch_size:
            return total


def dead_letter_leased(message_id, token: str, reason: str, *, actor_id: str, now: datetime) -> bool:
    """Dead-letter one message while the lease ``token`` still holds it (a push out of attempts); audited as the
    sweep's dead letters are. False if the lease no longer holds."""
    condition = Q(pk=message_id, delivery_state=Delivery.LEASED, receipt=token)
    return _dead_letter(condition, reason, now, 1, actor_id=actor_id) == 1


def requeue(rows, *, now: datetime) -> int:
    """Messages back to ``queued`` as if new: available now, their deliveries counted from 0, their ttl started
    again (now + the envelope's ``ttl_ms``), no dead reason, ack or lease. ``rows``: (id, request body) pairs.
    The one rule behind redrive, and a push endpoint's resend and recover (coordination/push_endpoints.py)."""
    by_ttl: dict[int, list] = {}
    for pk, body in rows:
        by_ttl.setdefault(envelope_ttl_ms(body), []).append(pk)
    for ttl_ms, pks in by_ttl.items():
        MessageLog.objects.filter(pk__in=pks).update(
            delivery_state=Delivery.QUEUED,
            delivery_count=0,
            dead_reason="",
            dead_at=None,
            acked_at=None,
            receipt="",
            leased_until=None,
            available_at=now,
            expires_at=now + timedelta(milliseconds=ttl_ms),
            updated_at=now,
        )
    return sum(len(pks) for pks in by_ttl.values())


def redrive(organization_id, ids: list, *, actor_id, now=None) -> dict:
    """Dead letters of the organization back to ``queued``, their count reset and their ttl started again."""
    now = now or timezone.now()
    wanted = [uuid.UUID(str(value)) for value in ids]  # the serializer checked them
    redriven = []
    with transaction.atomic():
        rows = list(
            MessageLog.objects.select_for_update()
            .filter(organization_id=organization_id, pk__in=wanted, delivery_state=Delivery.DEAD)
            .values_list("pk", "request_body", "dead_reason", "delivery_count")
        )
        requeue([(pk, body) for pk, body, _, _ in rows], now=now)
        for pk, _, reason, count in rows:
            record(
                AuditAction.MESSAGE_REDRIVEN,
                organization_id=organization_id,
                actor_kind="user",
                actor_id=actor_id,
                resource_kind="message",
                resource_id=pk,
                details={"previous_reason": reason, "delivery_count": count},
            )
            redriven.append(str(pk))
        for recipient_id in set(
            MessageLog.objects.filter(pk__in=[row[0] for row in rows]).values_list("recipient_id", flat=True)
        ):
            wakeup.announce(recipient_id)
    done = set(redriven)
    return {"redriven": redriven, "not_found": [str(value) for value in wanted if str(value) not in done]}
