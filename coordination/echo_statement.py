"""The synchronous echo's write on PostgreSQL as one SQL statement (one round trip, committed on its own).

The transaction of echo.py takes eight round trips (BEGIN, the advisory lock, the idempotency lookup, the
agents, three INSERTs, COMMIT); this statement does the same work at once, for the common case only:

    WITH gate AS (the idempotency lock taken, no record for the key, both agents active in the organization),
         message AS (INSERT the message ... FROM gate WHERE all three hold RETURNING id),
         record AS (INSERT its completed idempotency record ... FROM message),
         audit AS (INSERT its audit row ... FROM message)
    SELECT count(*) FROM message

A single statement in autocommit is atomic and durable on its own: all three rows commit together before the
answer, or none. When the gate does not hold (the key in flight, a record for the key — a replay, a reused
key, an expired one to replace — or an agent that may not send or receive) nothing is written and echo.py
answers through its transaction, which tells these apart exactly as before. No ``ON CONFLICT``: a unique
violation (a concurrent request committed the key or the message_id first) must undo the whole statement,
and does; echo.py then answers from the winner, as after a lost race in its transaction. The advisory lock
is the same one (``idempotency.lock_id``), held until the statement commits, so a request with the key in
flight is still answered 409.

The models describe the tables: the columns come from their fields, and each row is one JSON parameter that
PostgreSQL reads with the table's own column types (``jsonb_populate_record``). The inbox trigger (migration
0005) fires for the inserted row as for the ORM's INSERT. Other databases (SQLite) use echo.py's transaction.
"""

import functools
from contextlib import nullcontext
from dataclasses import dataclass

from django.db import connections, transaction

from agents.models import Agent
from audit.models import AuditLog
from brikk.lib import bulk
from coordination.models import IdempotencyRecord, MessageLog


@dataclass(frozen=True)
class _Statement:
    sql: str
    message_fields: tuple
    record_fields: tuple
    audit_fields: tuple


def applies(using: str = "default") -> bool:
    return connections[using].vendor == "postgresql"


def deliver(
    message: MessageLog,
    record: IdempotencyRecord | None,
    audit: AuditLog,
    *,
    lock: int | None,
    reply_to,
    using: str = "default",
) -> bool:
    """Insert the message, its idempotency record (if any) and its audit row in one statement. True when
    they were written; False when the gate did not hold and nothing was. A unique violation raises
    IntegrityError (nothing written). ``reply_to`` is the envelope's reply_to as a UUID, or None."""
    connection = connections[using]
    statement = _statement(using, record is not None)
    params = [lock, record.scope, record.key] if record is not None else []
    sender, recipient = message.sender_id, message.recipient_id
    params += [message.organization_id, sender, recipient, len({sender, recipient})]
    params += [message.organization_id, recipient, sender, reply_to]
    params.append(_row(message, statement.message_fields))
    if record is not None:
        params.append(_row(record, statement.record_fields))
    params.append(_row(audit, statement.audit_fields))
    # Inside a caller's transaction (a test's), as durable as echo.py's: a savepoint in a test, an error
    # in any other transaction. In autocommit the statement is its own transaction.
    durable = transaction.atomic(using=using, durable=True) if connection.in_atomic_block else nullcontext()
    with durable, connection.cursor() as cursor:
        cursor.execute(statement.sql, params)
        (inserted,) = cursor.fetchone()
    return inserted == 1


def _row(instance, fields) -> str:
    """The row as one JSON object, column by column, for ``jsonb_populate_record``: PostgreSQL reads each
    value with its column's type (a JSON column's value as it is). One parameter per row, not one per column:
    psycopg keeps the conversion of a statement with at most 50 parameters, and redoes it for a longer one."""
    values = instance.__dict__
    return bulk.json_document({field.column: values[field.attname] for field in fields})


def _literal(constant: str) -> str:
    """A constant of the code written into the statement, not sent as a parameter: PostgreSQL reuses one plan for
    the prepared statement only if that plan can use the partial indexes, whose conditions name these values (with
    ``status <> %s`` the reply lookup cannot use msg_sender_message_id_unique, so every execution was planned anew:
    a third of PostgreSQL's CPU per echo). The condition is written as the index's own (``NOT (status = ...)``)
    for the planner to match it."""
    if not constant.isascii() or not constant.replace("_", "").isalpha():
        raise ValueError(f"not a plain constant: {constant!r}")
    return f"'{constant}'"


@functools.cache
def _statement(using: str, idempotent: bool) -> _Statement:
    connection = connections[using]
    quote = connection.ops.quote_name

    def table(model) -> str:
        return quote(model._meta.db_table)

    def column(model, name) -> str:
        return quote(model._meta.get_field(name).column)

    def insert(model, fields, alias: str, source: str, extra_column="", extra_value="") -> str:
        columns = [quote(field.column) for field in fields] + ([extra_column] if extra_column else [])
        values = [f"{alias}.{quote(field.column)}" for field in fields] + ([extra_value] if extra_value else [])
        row = f"jsonb_populate_record(NULL::{table(model)}, %s::jsonb) {alias}"
        return (
            f"INSERT INTO {table(model)} ({', '.join(columns)})"  # noqa: S608 - only quoted names are interpolated
            f" SELECT {', '.join(values)} FROM {source.format(row=row)}"
        )

    message_fields = tuple(f for f in MessageLog._meta.concrete_fields if f.name != "in_reply_to")
    record_fields = tuple(f for f in IdempotencyRecord._meta.concrete_fields if f.name not in ("id", "message"))
    audit_fields = tuple(AuditLog._meta.concrete_fields)
    message_pk = column(MessageLog, "id")

    if idempotent:
        record = IdempotencyRecord
        lock = "pg_try_advisory_xact_lock(%s::bigint)"
        fresh = (
            f"NOT EXISTS (SELECT 1 FROM {table(record)}"  # noqa: S608 - only quoted names are interpolated
            f" WHERE {column(record, 'scope')} = %s AND {column(record, 'key')} = %s)"
        )
    else:
        lock, fresh = "true", "true"
    statuses = ", ".join(_literal(status) for status in Agent.AUTHENTICATING_STATUSES)
    agents_ok = (
        f"(SELECT count(*) FROM {table(Agent)} WHERE {column(Agent, 'organization')} = %s::uuid"  # noqa: S608
        f" AND {column(Agent, 'id')} IN (%s::uuid, %s::uuid) AND {column(Agent, 'status')} IN ({statuses})) = %s"
    )
    # What this message answers (echo.replied_message): a message its sender received, not refused.
    replied = (
        f"(SELECT r.{message_pk} FROM {table(MessageLog)} r"  # noqa: S608
        f" WHERE r.{column(MessageLog, 'organization')} = %s::uuid AND r.{column(MessageLog, 'sender')} = %s::uuid"
        f" AND r.{column(MessageLog, 'recipient')} = %s::uuid AND r.{column(MessageLog, 'message_id')} = %s::uuid"
        f" AND NOT (r.{column(MessageLog, 'status')} = {_literal(MessageLog.Status.REJECTED)}) LIMIT 1)"
    )
    message = insert(
        MessageLog,
        message_fields,
        "m",
        "gate, {row} WHERE gate.locked AND gate.fresh AND gate.agents_ok",
        column(MessageLog, "in_reply_to"),
        replied,
    )
    parts = [
        # MATERIALIZED: the gate (and so the lock) is evaluated once, before any row is inserted.
        f"WITH gate AS MATERIALIZED (SELECT {lock} AS locked, {fresh} AS fresh, {agents_ok} AS agents_ok)",
        f"message AS ({message} RETURNING {message_pk})",
    ]
    if idempotent:
        record_insert = insert(
            IdempotencyRecord,
            record_fields,
            "i",
            "message, {row}",
            column(IdempotencyRecord, "message"),
            f"message.{message_pk}",
        )
        parts.append(f"record AS ({record_insert})")
    parts.append(f"audit AS ({insert(AuditLog, audit_fields, 'a', 'message, {row}')})")
    sql = ",\n".join(parts) + "\nSELECT count(*) FROM message"
    return _Statement(sql, message_fields, record_fields, audit_fields)
