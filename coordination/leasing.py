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

from agents.models import Agent
from coordination.models import DeliveryAttempt, MessageLog, PushEndpoint

QUEUED, LEASED = MessageLog.Delivery.QUEUED.value, MessageLog.Delivery.LEASED.value
DELETED_AGENT = Agent.Status.DELETED.value


@dataclass(frozen=True)
class Lease:
    id: uuid.UUID
    token: str
    delivery_count: int
    leased_until: datetime
    request_body: dict
    received_at: datetime
    # A push lease (lease_for_push): the endpoint it goes to, whose agent the message is for.
    endpoint_id: uuid.UUID | None = None
    recipient_id: uuid.UUID | None = None


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
        "organization",
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
        "endpoint",
        "error",
        "response_excerpt",
    ):
        columns[f"attempt_{name}"] = quote(attempt.get_field(name).column)
    endpoint = PushEndpoint._meta
    columns["endpoints"] = {name: quote(endpoint.get_field(name).column) for name in ("id", "agent", "organization")}
    columns["endpoints"] |= {"table": quote(endpoint.db_table), "enabled": quote(endpoint.get_field("enabled").column)}
    agent = Agent._meta
    columns["agents"] = quote(agent.db_table)
    columns["agent_id"] = quote(agent.pk.column)
    columns["agent_status"] = quote(agent.get_field("status").column)
    return columns


def _pick_for_recipient(c: dict) -> str:
    return f"""
        picked AS MATERIALIZED (
            SELECT {c["id"]} AS id, NULL::uuid AS endpoint FROM {c["table"]}
            WHERE {c["recipient"]} = %(recipient)s
              AND {_available_sql(c)}
            ORDER BY {c["id"]}
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )"""  # noqa: S608


def _available_sql(c: dict, alias: str = "") -> str:
    """The row is available now, unexpired and not out of deliveries (``available()`` in SQL)."""
    m = f"{alias}." if alias else ""
    return f"""{m}{c["delivery_state"]} IN ('{QUEUED}', '{LEASED}')
              AND (({m}{c["delivery_state"]} = '{QUEUED}' AND {m}{c["available_at"]} <= %(now)s)
                   OR ({m}{c["delivery_state"]} = '{LEASED}' AND {m}{c["leased_until"]} <= %(now)s))
              AND {m}{c["expires_at"]} > %(now)s
              AND {m}{c["delivery_count"]} < %(max_deliveries)s"""


def _pick_for_push(c: dict) -> str:
    """Each enabled endpoint's oldest available messages (at most its free slots: the per-endpoint cap less
    what this dispatcher has in flight there), oldest first overall, each recipient's over ``msg_inbox``."""
    e = c["endpoints"]
    return f"""
        capacity AS (
            SELECT e.{e["id"]} AS endpoint, e.{e["agent"]} AS agent, e.{e["organization"]} AS organization,
                   GREATEST(%(per_endpoint)s - COALESCE(busy.count, 0), 0) AS free
            FROM {e["table"]} AS e
            LEFT JOIN unnest(%(busy_endpoints)s::uuid[], %(busy_counts)s::integer[]) AS busy(endpoint, count)
                ON busy.endpoint = e.{e["id"]}
            WHERE e.{e["enabled"]}
              AND NOT EXISTS (  -- a deleted agent's endpoint is never used
                  SELECT 1 FROM {c["agents"]} AS a WHERE a.{c["agent_id"]} = e.{e["agent"]}
                    AND a.{c["agent_status"]} = '{DELETED_AGENT}'
              )
        ),
        picked AS MATERIALIZED (
            SELECT due.id, capacity.endpoint FROM capacity CROSS JOIN LATERAL (
                SELECT m.{c["id"]} AS id FROM {c["table"]} AS m
                WHERE m.{c["recipient"]} = capacity.agent AND m.{c["organization"]} = capacity.organization
                  AND {_available_sql(c, "m")}
                ORDER BY m.{c["id"]}
                LIMIT capacity.free
                FOR UPDATE OF m SKIP LOCKED
            ) AS due
            ORDER BY due.id
            LIMIT %(limit)s
        )"""  # noqa: S608


def lease_statement(*, push: bool = False) -> str:
    """PostgreSQL's one leasing statement: pick, lease, and record each lease as a delivery attempt.
    Parameters: now, until, limit, max_deliveries, kind, consumer, and recipient (a receive) or per_endpoint,
    busy_endpoints, busy_counts (a push: ``consumer`` is then followed by the endpoint's id and ``host``)."""
    c = _columns()
    pick = _pick_for_push(c) if push else _pick_for_recipient(c)
    consumer = "'push ' || leased.endpoint::text || ' from ' || %(consumer)s" if push else "%(consumer)s"
    return f"""
        WITH {pick}
        , leased AS (
        UPDATE {c["table"]} AS m SET
            {c["delivery_state"]} = '{LEASED}',
            {c["receipt"]} = gen_random_uuid()::text,
            {c["leased_until"]} = %(until)s,
            {c["delivery_count"]} = m.{c["delivery_count"]} + 1,
            {c["first_received_at"]} = COALESCE(m.{c["first_received_at"]}, %(now)s),
            {c["updated_at"]} = %(now)s
        FROM picked WHERE m.{c["id"]} = picked.id
        RETURNING m.{c["id"]} AS id, m.{c["receipt"]} AS receipt, m.{c["delivery_count"]} AS delivery_count,
                  m.{c["leased_until"]} AS leased_until, m.{c["request_body"]} AS request_body,
                  m.{c["received_at"]} AS received_at, picked.endpoint AS endpoint, m.{c["recipient"]} AS recipient
        ), recorded AS (
            INSERT INTO {c["attempts"]} ({c["attempt_message"]}, {c["attempt_kind"]}, {c["attempt_consumer"]},
                {c["attempt_token"]}, {c["attempt_started_at"]}, {c["attempt_leased_until"]}, {c["attempt_outcome"]},
                {c["attempt_endpoint"]}, {c["attempt_error"]}, {c["attempt_response_excerpt"]})
            SELECT leased.id, %(kind)s, left({consumer}, 200), leased.receipt, %(now)s, leased.leased_until, '',
                   leased.endpoint, '', ''
            FROM leased
        )
        SELECT id, receipt, delivery_count, leased_until, request_body, received_at, endpoint, recipient FROM leased
    """  # noqa: S608 - only quoted names and the state constants are interpolated


def lease_for_push(
    *,
    now: datetime,
    limit: int,
    lease_seconds: int,
    max_deliveries: int,
    per_endpoint: int,
    busy: dict | None = None,
    host: str = "",
) -> list[Lease]:
    """Lease up to ``limit`` available, unexpired messages of agents with an enabled push endpoint (of their own
    organization), at most ``per_endpoint`` less ``busy[endpoint id]`` (deliveries in flight) per endpoint, oldest
    first; kind ``push``, consumer ``push <endpoint id> from <host>``, each attempt naming its endpoint. Safe with
    several dispatchers at once (``SKIP LOCKED``; SQLite: one writer at a time)."""
    until = now + timedelta(seconds=lease_seconds)
    busy = {str(key): value for key, value in (busy or {}).items() if value > 0}
    if connection.vendor == "postgresql":
        params = {
            "now": now,
            "until": until,
            "limit": limit,
            "max_deliveries": max_deliveries,
            "per_endpoint": per_endpoint,
            "busy_endpoints": list(busy),
            "busy_counts": list(busy.values()),
            "kind": DeliveryAttempt.Kind.PUSH.value,
            "consumer": host,
        }
        leases = _run_postgresql(lease_statement(push=True), params)
    else:
        leases = _lease_push_portable(now, until, limit, max_deliveries, per_endpoint, busy, host)
    return sorted(leases, key=lambda item: item.id.bytes)


def _run_postgresql(sql: str, params: dict) -> list[Lease]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        Lease(
            id=_uuid(row[0]),
            token=row[1],
            delivery_count=row[2],
            leased_until=row[3],
            request_body=json.loads(row[4]) if isinstance(row[4], str | bytes) else row[4],
            received_at=row[5],
            endpoint_id=None if row[6] is None else _uuid(row[6]),
            recipient_id=None if row[7] is None else _uuid(row[7]),
        )
        for row in rows
    ]


def _uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _lease_postgresql(recipient_id, now, until, limit, max_deliveries, consumer: Consumer) -> list[Lease]:
    params = {
        "recipient": recipient_id,
        "now": now,
        "until": until,
        "limit": limit,
        "max_deliveries": max_deliveries,
        "kind": consumer.kind,
        "consumer": consumer.name[:200],
    }
    return _run_postgresql(lease_statement(), params)


def _lease_portable(recipient_id, now, until, limit, max_deliveries, consumer: Consumer) -> list[Lease]:
    with transaction.atomic():  # BEGIN IMMEDIATE on SQLite: one writer at a time
        picked = [
            (row, None, consumer.name)
            for row in _due(now, max_deliveries).filter(recipient_id=recipient_id).values_list(*_DUE_FIELDS)[:limit]
        ]
        return _lease_rows(picked, now, until, consumer.kind)


_DUE_FIELDS = ("id", "delivery_count", "first_received_at", "request_body", "received_at", "recipient_id")


def _due(now, max_deliveries):
    return MessageLog.objects.filter(available(now), expires_at__gt=now, delivery_count__lt=max_deliveries).order_by(
        "id"
    )


def _lease_push_portable(now, until, limit, max_deliveries, per_endpoint, busy: dict, host: str) -> list[Lease]:
    with transaction.atomic():  # BEGIN IMMEDIATE on SQLite: one writer at a time
        picked = []
        for endpoint_id, agent_id, organization_id in (
            PushEndpoint.objects.filter(enabled=True).exclude(agent__status=Agent.Status.DELETED)
        ).values_list("id", "agent_id", "organization_id"):
            free = per_endpoint - busy.get(str(endpoint_id), 0)
            if free <= 0:
                continue
            rows = _due(now, max_deliveries).filter(recipient_id=agent_id, organization_id=organization_id)
            picked += [
                (row, endpoint_id, f"push {endpoint_id} from {host}") for row in rows.values_list(*_DUE_FIELDS)[:free]
            ]
        picked = sorted(picked, key=lambda item: item[0][0].bytes)[:limit]
        return _lease_rows(picked, now, until, DeliveryAttempt.Kind.PUSH)


def _lease_rows(picked: list, now, until, kind: str) -> list[Lease]:
    """Lease the rows picked (each ``(values, endpoint id, consumer)``) and record their attempts."""
    leases = []
    for (pk, count, first_received_at, request_body, received_at, recipient_id), endpoint_id, _ in picked:
        token = str(uuid.uuid4())
        MessageLog.objects.filter(pk=pk).update(
            delivery_state=LEASED,
            receipt=token,
            leased_until=until,
            delivery_count=count + 1,
            first_received_at=first_received_at or now,
            updated_at=now,
        )
        leases.append(Lease(pk, token, count + 1, until, request_body, received_at, endpoint_id, recipient_id))
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            message_id=item.id,
            kind=kind,
            consumer=consumer[:200],
            token=item.token,
            started_at=now,
            leased_until=until,
            endpoint_id=item.endpoint_id,
        )
        for item, (_, _, consumer) in zip(leases, picked, strict=True)
    )
    return leases
