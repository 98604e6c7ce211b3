"""The synchronous echo as plain functions: the API view calls ``submit_echo``.

One echo is one database transaction, durable so that no caller can silently wrap it: the idempotency
check, the MessageLog row, its completed idempotency record and its audit row (see idempotency.py).
Async echoes are committed as ``accepted`` before their task is enqueued (transaction.on_commit), so
nothing accepted is lost; tasks.py and processing.py take it from there.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Subquery
from django.utils import timezone
from rest_framework import serializers
from uuid6 import uuid7

from agents.models import Agent
from audit.actions import AuditAction
from audit.services import announce, record
from brikk.lib import bulk
from brikk.lib.context import current
from coordination import echo_statement, idempotency, tasks, wakeup
from coordination.answers import echo_body
from coordination.exceptions import Forbidden, IdempotencyInProgress, MessageIdReused
from coordination.messages import Caller, agent_ref, audit_message, message_audit_entry, message_uuid
from coordination.models import MessageLog
from coordination.serializers import EnvelopeSerializer

logger = logging.getLogger("brikk.coordination")


@dataclass(frozen=True)
class EchoOutcome:
    status: int
    body: dict
    replayed: bool = False


def idempotency_key_for(header_value: str | None, data) -> str | None:
    """The Idempotency-Key header, else the envelope's message_id; 422 if the header is unusable."""
    if header_value is not None:
        key = header_value.strip()
        if not key or len(key) > idempotency.MAX_KEY_LENGTH or not key.isprintable():
            raise serializers.ValidationError(
                {idempotency.HEADER: [f"Must be 1 to {idempotency.MAX_KEY_LENGTH} printable characters."]}
            )
        return key
    message_id = data.get("message_id") if isinstance(data, dict) else None
    if isinstance(message_id, str) and 0 < len(message_id) <= idempotency.MAX_KEY_LENGTH:
        return message_id
    return None


def validate_envelope(data) -> dict:
    serializer = EnvelopeSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def authorize(caller: Caller, envelope: dict, *, active: set | None = None) -> tuple[uuid.UUID, uuid.UUID]:
    """The sender must be the calling agent (or, for a user, an agent of the user's organization);
    the recipient an active agent of the same organization. Returns (sender id, recipient id).

    Both are checked against the database in one lean query, the sender too: a user may send as any agent
    of the organization, and the sender's status must hold inside the echo's own transaction. ``active``:
    those ids, already read (the batch send reads them for all its envelopes in one query)."""
    sender_id, recipient_id = check_parties(caller, envelope)
    if active is None:
        active = Agent.objects.authenticating_ids(caller.organization_id, {sender_id, recipient_id})
    if sender_id not in active:
        raise Forbidden(
            "The sender must be an active agent of your organization.",
            details={"sender": {"agent_id": ["Not an active agent of your organization."]}},
        )
    if recipient_id not in active:
        raise serializers.ValidationError({"recipient": {"agent_id": ["Not an active agent of your organization."]}})
    return sender_id, recipient_id


def check_parties(caller: Caller, envelope: dict) -> tuple[uuid.UUID, uuid.UUID]:
    """What ``authorize`` checks without the database: no other organization, and an agent sends as
    itself. Returns (sender id, recipient id)."""
    for field in ("sender", "recipient"):
        org_id = envelope[field].get("org_id")
        if org_id is not None and str(org_id) != caller.organization_id:
            raise Forbidden(
                "Messages cannot cross organizations.", details={field: {"org_id": ["Not your organization."]}}
            )
    sender_id, recipient_id = envelope["sender"]["agent_id"], envelope["recipient"]["agent_id"]
    if caller.agent_id and str(sender_id) != caller.agent_id:
        raise Forbidden(
            "The sender must be the authenticated agent.",
            details={"sender": {"agent_id": ["Must be the authenticated agent."]}},
        )
    return sender_id, recipient_id


def submit_echo(
    caller: Caller,
    data,
    *,
    idempotency_header: str | None,
    respond_async: bool,
    received_at: datetime,
) -> EchoOutcome:
    """Layers 5 and 6 and the echo itself, in one transaction. Raises the refusal (rendered and
    recorded by the view); a refusal rolls back, so it leaves no idempotency key behind."""
    key = idempotency_key_for(idempotency_header, data)
    operation = None
    if settings.BRIKK_IDEMPOTENCY_ENABLED and key:
        operation = idempotency.Operation.asking(caller.organization_id, caller.scope, key, data)
    if not respond_async and echo_statement.applies():
        outcome = _deliver_in_one_statement(caller, data, operation, received_at)
        if outcome is not None:
            return outcome
    try:
        with transaction.atomic(durable=True):
            replay = idempotency.begin(operation) if operation else None
            if replay is not None:
                return _replayed(caller, operation, replay)
            envelope = validate_envelope(data)
            sender, recipient = authorize(caller, envelope)
            if respond_async:
                return _accept(caller, data, envelope, sender, recipient, operation, received_at)
            return _deliver_now(caller, data, envelope, sender, recipient, operation, received_at)
    except IntegrityError as error:
        # A concurrent transaction committed the same key or message_id first (the unique
        # constraints are the durable backstop): answer as if we had seen it before starting.
        return _after_lost_race(caller, operation, data, error)


def _after_lost_race(caller: Caller, operation: idempotency.Operation | None, data, error) -> EchoOutcome:
    if operation is not None and (replay := idempotency.answer_conflict(operation)) is not None:
        with transaction.atomic():
            return _replayed(caller, operation, replay)
    message_id = _message_id_taken(caller, data)
    if message_id is not None:
        raise MessageIdReused(details={"message_id": message_id})
    if operation is not None:
        # The winner's record is gone again (expired and purged meanwhile): a retry will go through.
        logger.warning("idempotency key conflict without a live record; answered 409")
        raise IdempotencyInProgress(details={"idempotency_key": operation.key})
    raise error  # not a race we know of: a bug, reported as one


def _replayed(caller: Caller, operation: idempotency.Operation, replay: idempotency.Replay) -> EchoOutcome:
    record(
        AuditAction.IDEMPOTENCY_REPLAYED,
        organization_id=caller.organization_id,
        resource_kind="message",
        resource_id=replay.body.get("id", ""),
        details={"idempotency_key": operation.key, "status": replay.status},
        **caller.actor,
    )
    return EchoOutcome(status=replay.status, body=replay.body, replayed=True)


def _message_id_taken(caller: Caller, data) -> str | None:
    """The envelope's message_id if its sender already has a (non-refused) message with it."""
    sender_id, message_id = agent_ref(data, "sender"), message_uuid(data)
    if sender_id is None or message_id is None:
        return None
    taken = (
        MessageLog.objects.filter(organization_id=caller.organization_id, sender_id=sender_id, message_id=message_id)
        .exclude(status=MessageLog.Status.REJECTED)
        .exists()
    )
    return str(data["message_id"]) if taken else None


def reply_uuid(reply_to) -> uuid.UUID | None:
    """The envelope's reply_to as a UUID; None when it is not one (it then answers nothing)."""
    try:
        return uuid.UUID(reply_to) if isinstance(reply_to, str) else None
    except ValueError:
        return None


def replied_message(organization_id, sender, recipient, reply_to) -> Subquery | None:
    """What a message answers, as an expression for its own INSERT (no extra round trip): the message whose
    ``message_id`` is ``reply_to``, sent by this message's recipient to this message's sender in the same
    organization (so a reply answers only what its sender received). The partial unique index on (sender,
    message_id) finds it. None when ``reply_to`` is not a UUID; an expression that matches nothing stores NULL."""
    message_id = reply_uuid(reply_to)
    if message_id is None:
        return None
    original = (
        MessageLog.objects.filter(
            organization_id=organization_id, sender_id=recipient, recipient_id=sender, message_id=message_id
        )
        .exclude(status=MessageLog.Status.REJECTED)
        .order_by()
        .values("pk")[:1]
    )
    return Subquery(original)


def _new_message(caller, data, envelope, sender, recipient, operation, received_at, **fields) -> MessageLog:
    if "in_reply_to_id" not in fields:
        fields["in_reply_to_id"] = replied_message(caller.organization_id, sender, recipient, envelope.get("reply_to"))
    return bulk.instance(
        MessageLog,
        id=uuid7(),
        organization_id=caller.organization_id,
        message_id=envelope["message_id"],
        sender_id=sender,
        recipient_id=recipient,
        type=envelope["type"],
        auth_method=caller.auth_method,
        request_body=data,
        correlation_id=current().request_id,
        idempotency_key=operation.key if operation else "",
        received_at=received_at,
        **caller.actor,
        **fields,
    )


def _store(message: MessageLog, operation, *, status: int, body: dict | None = None) -> None:
    """The message, then its idempotency record (``body``: the answer, when the message does not keep it;
    idempotency.completed_record). Either may lose a race (IntegrityError), so they are written before the
    audit row and its log line; the caller's transaction commits all three."""
    message.save(force_insert=True)
    if hasattr(message.in_reply_to_id, "resolve_expression"):
        # The INSERT evaluated it; the attribute still holds the expression. Deferred, the value is loaded
        # from the database if anything ever reads it (nothing on the echo's path does).
        del message.__dict__["in_reply_to_id"]
    if operation is not None:
        idempotency.complete(operation, status=status, message=message, body=body)


def delivered_message(caller, data, envelope, sender, recipient, operation, received_at, **fields) -> MessageLog:
    """The delivered message, not yet saved. The batch send builds its messages with it too (coordination/batch.py).
    Its answer is not stored: answers.answer_of builds it again from the row."""
    message = _new_message(
        caller, data, envelope, sender, recipient, operation, received_at,
        status=MessageLog.Status.DELIVERED, http_status=200, attempts=1, **fields,
    )  # fmt: skip
    message.mark_responded()
    # Into the recipient's inbox with the same INSERT: no extra round trip (coordination/inbox.py).
    message.delivery_state = MessageLog.Delivery.QUEUED
    message.available_at = message.responded_at
    message.expires_at = received_at + timedelta(milliseconds=envelope["ttl_ms"])
    return message


def _deliver_in_one_statement(caller, data, operation, received_at) -> EchoOutcome | None:
    """The delivered echo in one statement (echo_statement.py): the outcome, or None to answer through the
    transaction (a refusal, a replay, a key in flight), which then decides exactly as it always did."""
    try:
        envelope = validate_envelope(data)
        sender, recipient = check_parties(caller, envelope)
    except (serializers.ValidationError, Forbidden):
        return None  # refused after the replay check, in the transaction
    message = delivered_message(caller, data, envelope, sender, recipient, operation, received_at, in_reply_to_id=None)
    message.created_at = message.updated_at = timezone.now()  # what auto_now(_add) set on save
    record = idempotency.completed_record(operation, status=200) if operation else None  # linked by the statement
    audit = message_audit_entry(AuditAction.ECHO_DELIVERED, message)
    try:
        written = echo_statement.deliver(
            message,
            record,
            audit,
            lock=idempotency.lock_id(operation.scope, operation.key) if operation else None,
            reply_to=reply_uuid(envelope.get("reply_to")),
        )
    except IntegrityError as error:
        return _after_lost_race(caller, operation, data, error)
    if not written:
        return None
    announce(audit)  # its metrics and log line, once committed
    return EchoOutcome(status=200, body=echo_body(message, data, caller.auth_info()))


def _deliver_now(caller, data, envelope, sender, recipient, operation, received_at) -> EchoOutcome:
    message = delivered_message(caller, data, envelope, sender, recipient, operation, received_at)
    _store(message, operation, status=200)  # the record's answer is the message's (idempotency.completed_record)
    wakeup.announce(recipient)
    audit_message(AuditAction.ECHO_DELIVERED, message)
    return EchoOutcome(status=200, body=echo_body(message, data, caller.auth_info()))


def _accept(caller, data, envelope, sender, recipient, operation, received_at) -> EchoOutcome:
    # No delivery state yet: it enters the inbox when processing delivers it (processing.py).
    message = _new_message(
        caller, data, envelope, sender, recipient, operation, received_at,
        status=MessageLog.Status.ACCEPTED, http_status=202, attempts=0,
        expires_at=received_at + timedelta(milliseconds=envelope["ttl_ms"]),
    )  # fmt: skip
    body = echo_body(message, data, caller.auth_info())
    _store(message, operation, status=202, body=body)
    audit_message(AuditAction.ECHO_ACCEPTED, message)
    transaction.on_commit(lambda: tasks.enqueue(message.pk))
    return EchoOutcome(status=202, body=body)
