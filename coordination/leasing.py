"""The one raw SQL statement of the inbox: leasing the oldest available messages of a recipient.

On PostgreSQL, receiving is ONE statement: a CTE picks the recipient's oldest available rows over the partial
index ``msg_inbox`` (only queued and leased rows are in it, so it costs the same with 10 or 10 million rows in
the table) with ``FOR UPDATE SKIP LOCKED`` (concurrent consumers never wait for, nor take, each other's rows),
and the UPDATE leases them with a fresh random receipt (``gen_random_uuid()``: PostgreSQL's strong random
source), RETURNING what the consumer gets (as pgmq and procrastinate do). On SQLite (the embedded defaults)
the same logic runs through the ORM inside the transaction; ``BEGIN IMMEDIATE`` serializes writers, so no row
can be leased twice. The model (coordination.models.MessageLog) describes the table; only quoted table and
column names are interpolated here, every value is a parameter.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q

from coordination.models import DeliveryAttempt, MessageLog

QUEUED, LEASED = MessageLog.Delivery.QUEUED.value, MessageLog.Delivery.LEASED.value


@dataclass(frozen=True)
class Lease:
    id: uuid.UUID
    token: str
    delivery_count: int
    leased_until: datetime
    request_body: dict
    received_at: datetime


def available(now: datetime) -> Q:
    """Receivable now: queued and past its nack delay, or leased with a lease that ran out (a lease that runs
    out is available at once, without waiting for a sweep; the sweep only tidies the state for the stats)."""
    return Q(delivery_state=QUEUED, available_at__lte=now) | Q(delivery_state=LEASED, leased_until__lte=now)


@dataclass(frozen=True)
class Consumer:
    """Who takes a lease, as the delivery timeline shows it."""

    kind: str = DeliveryAttempt.Kind.RECEIVE
    name: str = ""


def lease(
    recipient_id,
    *,
    now: datetime,
    limit: int,
    lease_seconds: int,
    max_deliveries: int,
    consumer: Consumer = Consumer(),  # noqa: B008 - frozen, so one shared default is safe
) -> list[Lease]:
    """Lease up to ``limit`` of the recipient's oldest available, unexpired messages that have had fewer than
    ``max_deliveries`` leases (those wait for the sweep to dead-letter them), each lease recorded as a
    DeliveryAttempt in the same statement. Oldest first."""
    until = now + timedelta(seconds=lease_seconds)
    if connection.vendor == "postgresql":
        leases = _lease_postgresql(recipient_id, now, until, limit, max_deliveries, consumer)
    else:
        leases = _lease_portable(recipient_id, now, until, limit, max_deliveries, consumer)
    return sorted(leases, key=lambda item: item.id.bytes)  # uuid7: byte order is arrival order


def _columns() -> dict[str, str]:
    quote, meta = connection.ops.quote_name, MessageLog._meta
    names = [
        "id",
        "recipient",
        "delivery_state",
        "available_at",
        "leased_until",
        "receipt",
        "delivery_count",
        "first_received_at",
        "expires_at",
        "request_body",
        "received_at",
        "updated_at",
    ]
    columns = {name: quote(meta.get_field(name).column) for name in names}
    columns["table"] = quote(meta.db_table)
    attempt = DeliveryAttempt._meta
    columns["attempts"] = quote(attempt.db_table)
    for name in (
        "message",
        "kind",
        "consumer",
        "token",
        "started_at",
        "leased_until",
        "outcome",
        "error",
        "response_excerpt",
    ):
        columns[f"attempt_{name}"] = quote(attempt.get_field(name).column)
    return columns


def lease_statement() -> str:
    """PostgreSQL's one leasing statement (parameters: recipient, now, until, limit, max_deliveries, kind,
    consumer): pick, lease, and record each lease as a delivery attempt."""
    c = _columns()
    return f"""
        WITH picked AS MATERIALIZED (
            SELECT {c["id"]} FROM {c["table"]}
            WHERE {c["recipient"]} = %(recipient)s
              AND {c["delivery_state"]} IN ('{QUEUED}', '{LEASED}')
              AND (({c["delivery_state"]} = '{QUEUED}' AND {c["available_at"]} <= %(now)s)
                   OR ({c["delivery_state"]} = '{LEASED}' AND {c["leased_until"]} <= %(now)s))
              AND {c["expires_at"]} > %(now)s
              AND {c["delivery_count"]} < %(max_deliveries)s
            ORDER BY {c["id"]}
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        , leased AS (
        UPDATE {c["table"]} AS m SET
            {c["delivery_state"]} = '{LEASED}',
            {c["receipt"]} = gen_random_uuid()::text,
            {c["leased_until"]} = %(until)s,
            {c["delivery_count"]} = m.{c["delivery_count"]} + 1,
            {c["first_received_at"]} = COALESCE(m.{c["first_received_at"]}, %(now)s),
            {c["updated_at"]} = %(now)s
        FROM picked WHERE m.{c["id"]} = picked.{c["id"]}
        RETURNING m.{c["id"]} AS id, m.{c["receipt"]} AS receipt, m.{c["delivery_count"]} AS delivery_count,
                  m.{c["leased_until"]} AS leased_until, m.{c["request_body"]} AS request_body,
                  m.{c["received_at"]} AS received_at
        ), recorded AS (
            INSERT INTO {c["attempts"]} ({c["attempt_message"]}, {c["attempt_kind"]}, {c["attempt_consumer"]},
                {c["attempt_token"]}, {c["attempt_started_at"]}, {c["attempt_leased_until"]}, {c["attempt_outcome"]},
                {c["attempt_error"]}, {c["attempt_response_excerpt"]})
            SELECT id, %(kind)s, %(consumer)s, receipt, %(now)s, leased_until, '', '', '' FROM leased
        )
        SELECT id, receipt, delivery_count, leased_until, request_body, received_at FROM leased
    """  # noqa: S608 - only quoted names and the state constants are interpolated


def _lease_postgresql(recipient_id, now, until, limit, max_deliveries, consumer: Consumer) -> list[Lease]:
    sql = lease_statement()
    params = {
        "recipient": recipient_id,
        "now": now,
        "until": until,
        "limit": limit,
        "max_deliveries": max_deliveries,
        "kind": consumer.kind,
        "consumer": consumer.name[:200],
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        Lease(
            id=row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0])),
            token=row[1],
            delivery_count=row[2],
            leased_until=row[3],
            request_body=json.loads(row[4]) if isinstance(row[4], str | bytes) else row[4],
            received_at=row[5],
        )
        for row in rows
    ]


def _lease_portable(recipient_id, now, until, limit, max_deliveries, consumer: Consumer) -> list[Lease]:
    leases = []
    with transaction.atomic():  # BEGIN IMMEDIATE on SQLite: one writer at a time
        picked = list(
            MessageLog.objects.filter(
                available(now),
                recipient_id=recipient_id,
                expires_at__gt=now,
                delivery_count__lt=max_deliveries,
            )
            .order_by("id")
            .values_list("id", "delivery_count", "first_received_at", "request_body", "received_at")[:limit]
        )
        for pk, count, first_received_at, request_body, received_at in picked:
            token = str(uuid.uuid4())
            MessageLog.objects.filter(pk=pk).update(
                delivery_state=LEASED,
                receipt=token,
                leased_until=until,
                delivery_count=count + 1,
                first_received_at=first_received_at or now,
                updated_at=now,
            )
            leases.append(Lease(pk, token, count + 1, until, request_body, received_at))
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(
                message_id=item.id,
                kind=consumer.kind,
                consumer=consumer.name[:200],
                token=item.token,
                started_at=now,
                leased_until=until,
            )
            for item in leases
        )
    return leases
