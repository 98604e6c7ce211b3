"""The echo workflow as plain functions: the API view, the Celery task and commands call these.

One echo is one database transaction: the idempotency check, the MessageLog row, its completed
idempotency record and its audit row (see coordination/idempotency.py). Async echoes are committed
as ``accepted`` before their task is enqueued (transaction.on_commit), so nothing accepted is lost.
"""

import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from rest_framework import serializers
from uuid6 import uuid7

from agents.models import Agent
from audit.context import RequestContext, current, reset_context, set_context
from audit.services import record
from coordination import idempotency
from coordination.exceptions import Forbidden, IdempotencyInProgress, MessageIdReused
from coordination.models import MessageLog
from coordination.serializers import EnvelopeSerializer

logger = logging.getLogger("brikk.coordination")

# Test-only: with BRIKK_ECHO_FAULT_INJECTION on, payload {"_brikk_fault": {"fail_attempts": N}}
# makes the first N async processing attempts fail. Ignored (an ordinary payload key) otherwise.
FAULT_DIRECTIVE = "_brikk_fault"


class ProcessingError(Exception):
    """Processing an accepted message failed; the task retries it with backoff."""


@dataclass(frozen=True)
class Caller:
    """Who sends: an agent (API key or HMAC) or a user (JWT, session) acting in an organization."""

    organization_id: str
    auth_method: str
    agent_id: str | None = None
    user_id: str | None = None

    @property
    def scope(self) -> str:
        return f"agent:{self.agent_id}" if self.agent_id else f"user:{self.user_id}"

    @property
    def actor(self) -> dict:
        if self.agent_id:
            return {"actor_kind": "agent", "actor_id": self.agent_id}
        return {"actor_kind": "user", "actor_id": self.user_id}

    def auth_info(self) -> dict:
        info = {"organization_id": self.organization_id, "agent_id": self.agent_id, "auth_method": self.auth_method}
        if self.user_id:
            info["user_id"] = self.user_id
        return info


@dataclass(frozen=True)
class EchoOutcome:
    status: int
    body: dict
    replayed: bool = False


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


_URL_PLACEHOLDER = uuid.UUID(int=0)


@functools.cache
def _message_path_template(urlconf: str) -> str:
    """The detail path with ``{}`` for the id. reverse() walks the URL patterns on every call (about
    0.1 ms); every echo answers with this link, so the pattern is reversed once per URLconf."""
    path = reverse("coordination-message-detail", urlconf=urlconf, args=[_URL_PLACEHOLDER])
    return path.removeprefix(get_script_prefix()).replace(str(_URL_PLACEHOLDER), "{}")


def message_url(message_id) -> str:
    template = _message_path_template(get_urlconf() or settings.ROOT_URLCONF)
    return get_script_prefix() + template.format(uuid.UUID(str(message_id)))


def echo_body(message: MessageLog, envelope, caller_auth: dict) -> dict:
    processing_ms = None
    if message.responded_at:
        processing_ms = round((message.responded_at - message.received_at).total_seconds() * 1000, 3)
    return {
        "id": str(message.id),
        "status": message.status,
        "envelope": envelope,
        "received_at": iso(message.received_at),
        "responded_at": iso(message.responded_at),
        "processing_ms": processing_ms,
        "correlation_id": message.correlation_id,
        "auth": caller_auth,
        "links": {"self": message_url(message.id)},
    }


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


def authorize(caller: Caller, envelope: dict) -> tuple[uuid.UUID, uuid.UUID]:
    """The sender must be the calling agent (or, for a user, an agent of the user's organization);
    the recipient an active agent of the same organization. Returns (sender id, recipient id).

    Both are checked against the database in one lean query, the sender too: its cached key identity
    says it was active, but a cache invalidation lost while Redis was unreachable must not let a
    disabled agent send."""
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
    active = Agent.objects.authenticating_ids(caller.organization_id, {sender_id, recipient_id})
    if sender_id not in active:
        raise Forbidden(
            "The sender must be an active agent of your organization.",
            details={"sender": {"agent_id": ["Not an active agent of your organization."]}},
        )
    if recipient_id not in active:
        raise serializers.ValidationError({"recipient": {"agent_id": ["Not an active agent of your organization."]}})
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
        operation = idempotency.Operation(
            organization_id=caller.organization_id, scope=caller.scope, key=key, digest=idempotency.request_hash(data)
        )
    try:
        with transaction.atomic():
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
        "idempotency.replayed",
        organization_id=caller.organization_id,
        resource_kind="message",
        resource_id=replay.body.get("id", ""),
        details={"idempotency_key": operation.key, "status": replay.status},
        **caller.actor,
    )
    return EchoOutcome(status=replay.status, body=replay.body, replayed=True)


def _message_id_taken(caller: Caller, data) -> str | None:
    """The envelope's message_id if its sender already has a (non-refused) message with it."""
    sender_id, message_id = _agent_ref(data, "sender"), _message_uuid(data)
    if sender_id is None or message_id is None:
        return None
    taken = (
        MessageLog.objects.filter(organization_id=caller.organization_id, sender_id=sender_id, message_id=message_id)
        .exclude(status=MessageLog.Status.REJECTED)
        .exists()
    )
    return str(data["message_id"]) if taken else None


def _new_message(caller, data, envelope, sender, recipient, operation, received_at, **fields) -> MessageLog:
    return MessageLog(
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


def _store(message: MessageLog, operation, *, status: int, body: dict) -> None:
    """The message, then its idempotency record. Either may lose a race (IntegrityError), so they are
    written before the audit row and its log line; the caller's transaction commits all three."""
    message.save(force_insert=True)
    if operation is not None:
        idempotency.complete(operation, status=status, body=body, message=message)


def _deliver_now(caller, data, envelope, sender, recipient, operation, received_at) -> EchoOutcome:
    message = _new_message(
        caller, data, envelope, sender, recipient, operation, received_at,
        status=MessageLog.Status.DELIVERED, http_status=200, attempts=1,
    )  # fmt: skip
    message.responded_at = timezone.now()
    message.latency_ms = (message.responded_at - received_at).total_seconds() * 1000
    body = echo_body(message, data, caller.auth_info())
    message.response_body = body
    _store(message, operation, status=200, body=body)
    _audit_message("echo.delivered", message)
    return EchoOutcome(status=200, body=body)


def _accept(caller, data, envelope, sender, recipient, operation, received_at) -> EchoOutcome:
    message = _new_message(
        caller, data, envelope, sender, recipient, operation, received_at,
        status=MessageLog.Status.ACCEPTED, http_status=202, attempts=0,
    )  # fmt: skip
    body = echo_body(message, data, caller.auth_info())
    _store(message, operation, status=202, body=body)
    _audit_message("echo.accepted", message)
    transaction.on_commit(lambda: enqueue(message.pk))
    return EchoOutcome(status=202, body=body)


def enqueue(message_pk) -> None:
    """Hand an accepted message to Celery. If the broker is down the row stays ``accepted`` and
    ``manage.py requeue_messages`` sends it again: it is never lost."""
    from coordination.tasks import process_message

    try:
        process_message.apply_async(args=[str(message_pk)], queue=settings.BRIKK_ASYNC_QUEUE)
    except Exception:  # the broker's client raises many kinds; any of them leaves the row for requeue
        logger.exception("could not enqueue message %s; it stays accepted for requeue_messages", message_pk)


def _audit_message(action: str, message: MessageLog, *, outcome: str = "success", details: dict | None = None):
    record(
        action,
        outcome=outcome,
        organization_id=message.organization_id,
        resource_kind="message",
        resource_id=message.pk,
        actor_kind=message.actor_kind or None,
        actor_id=message.actor_id or None,
        details={
            "message_id": str(message.message_id) if message.message_id else None,
            "type": message.type,
            "status": message.status,
            "http_status": message.http_status,
            "attempts": message.attempts,
            **(details or {}),
        },
    )


# --- refusals after authentication -------------------------------------------------------------


def _agent_ref(data, field) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(data[field]["agent_id"]))
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def _message_uuid(data) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(data["message_id"]))
    except (TypeError, KeyError, ValueError):
        return None


def record_refusal(
    caller: Caller, data, *, status: int, body: dict, action: str, idempotency_key: str | None, received_at
) -> MessageLog:
    """The MessageLog row (status rejected) and audit row of a refused echo, in one transaction."""
    refs = {field: _agent_ref(data, field) for field in ("sender", "recipient")} if isinstance(data, dict) else {}
    wanted = [ref for ref in refs.values() if ref is not None]
    known = {}
    if wanted:
        known = {a.pk: a for a in Agent.objects.filter(organization_id=caller.organization_id, pk__in=wanted)}
    message_id = _message_uuid(data)
    kind = data.get("type") if isinstance(data, dict) else None
    message = MessageLog(
        id=uuid7(),
        organization_id=caller.organization_id,
        message_id=message_id,
        sender=known.get(refs.get("sender")),
        recipient=known.get(refs.get("recipient")),
        type=kind if kind in MessageLog.Type.values else MessageLog.Type.MESSAGE,
        status=MessageLog.Status.REJECTED,
        auth_method=caller.auth_method,
        http_status=status,
        request_body=data,
        response_body=body,
        error=f"{body.get('code')}: {body.get('message')}",
        correlation_id=current().request_id,
        idempotency_key=(idempotency_key or "")[: idempotency.MAX_KEY_LENGTH],
        received_at=received_at,
        responded_at=timezone.now(),
        **caller.actor,
    )
    message.latency_ms = (message.responded_at - received_at).total_seconds() * 1000
    outcome = "denied" if status in (403, 429) else "failure"
    with transaction.atomic():
        message.save(force_insert=True)
        _audit_message(action, message, outcome=outcome, details={"code": body.get("code")})
    return message


# --- async processing (the Celery task calls these) ----------------------------------------------


def _injected_fault(message: MessageLog) -> str | None:
    if not settings.BRIKK_ECHO_FAULT_INJECTION:
        return None
    payload = (message.request_body or {}).get("payload") or {}
    directive = payload.get(FAULT_DIRECTIVE) if isinstance(payload, dict) else None
    if isinstance(directive, dict) and message.attempts <= int(directive.get("fail_attempts", 0)):
        return f"injected fault on attempt {message.attempts}"
    return None


def _auth_info(message: MessageLog) -> dict:
    info = {
        "organization_id": str(message.organization_id),
        "agent_id": message.actor_id if message.actor_kind == "agent" else None,
        "auth_method": message.auth_method,
    }
    if message.actor_kind == "user":
        info["user_id"] = message.actor_id
    return info


def start_processing(message_pk) -> MessageLog | None:
    """Mark the message processing and count the attempt; None if it is already finished."""
    with transaction.atomic():
        message = MessageLog.objects.select_for_update().filter(pk=message_pk).first()
        if message is None or message.status not in (MessageLog.Status.ACCEPTED, MessageLog.Status.PROCESSING):
            return None
        message.status = MessageLog.Status.PROCESSING
        message.attempts += 1
        message.save(update_fields=["status", "attempts", "updated_at"])
    return message


def process_message(message_pk, *, final_attempt: bool) -> MessageLog | None:
    """One attempt at an accepted message: delivered, or ProcessingError (retried), or failed."""
    message = start_processing(message_pk)
    if message is None:
        return None
    token = set_context(
        RequestContext(
            request_id=message.correlation_id or "-",
            organization_id=str(message.organization_id),
            actor_kind=message.actor_kind or None,
            actor_id=message.actor_id or None,
        )
    )
    try:
        fault = _injected_fault(message)
        if fault is None:
            return _finish_delivered(message)
        if final_attempt:
            return _finish_failed(message, fault)
        _note_retry(message, fault)
        raise ProcessingError(fault)
    finally:
        reset_context(token)


def _finish_delivered(message: MessageLog) -> MessageLog:
    message.status = MessageLog.Status.DELIVERED
    message.http_status = 200
    message.error = ""
    message.responded_at = timezone.now()
    message.latency_ms = (message.responded_at - message.received_at).total_seconds() * 1000
    message.response_body = echo_body(message, message.request_body, _auth_info(message))
    with transaction.atomic():
        message.save(
            update_fields=[
                "status",
                "http_status",
                "error",
                "responded_at",
                "latency_ms",
                "response_body",
                "updated_at",
            ]
        )
        _audit_message("echo.delivered", message)
    return message


def _finish_failed(message: MessageLog, reason: str) -> MessageLog:
    message.status = MessageLog.Status.FAILED
    message.error = reason
    message.responded_at = timezone.now()
    message.latency_ms = (message.responded_at - message.received_at).total_seconds() * 1000
    with transaction.atomic():
        message.save(update_fields=["status", "error", "responded_at", "latency_ms", "updated_at"])
        _audit_message("echo.failed", message, outcome="failure", details={"reason": reason})
    return message


def fail_message(message_pk, reason: str) -> MessageLog | None:
    """End a message as failed (the task gave up on an unexpected error)."""
    message = MessageLog.objects.filter(pk=message_pk).first()
    if message is None or message.status in (MessageLog.Status.DELIVERED, MessageLog.Status.FAILED):
        return message
    return _finish_failed(message, reason)


def _note_retry(message: MessageLog, reason: str) -> None:
    """Back to accepted, with the reason, until the next attempt."""
    message.status = MessageLog.Status.ACCEPTED
    message.error = reason
    message.save(update_fields=["status", "error", "updated_at"])


def requeue_stale(older_than_seconds: int = 300) -> int:
    """Enqueue again messages left ``accepted`` (broker outage at enqueue, lost worker)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = list(
        MessageLog.objects.filter(status=MessageLog.Status.ACCEPTED, updated_at__lte=cutoff).values_list(
            "pk", flat=True
        )
    )
    for pk in stale:
        enqueue(pk)
    return len(stale)
