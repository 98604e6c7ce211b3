"""Async processing of an accepted echo, one attempt at a time (the Celery task in tasks.py calls
``attempt``): accepted → processing → delivered, or back to accepted for a retry, or failed."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction

from audit.actions import AuditAction
from brikk.lib.context import RequestContext, reset_context, set_context
from coordination import wakeup
from coordination.answers import envelope_ttl_ms
from coordination.messages import audit_message
from coordination.models import MessageLog

# Test-only: with BRIKK_ECHO_FAULT_INJECTION on, payload {"_brikk_fault": {"fail_attempts": N}}
# makes the first N async processing attempts fail. Ignored (an ordinary payload key) otherwise.
FAULT_DIRECTIVE = "_brikk_fault"


class ProcessingError(Exception):
    """Processing an accepted message failed; the task retries it with backoff."""


def _injected_fault(message: MessageLog) -> str | None:
    if not settings.BRIKK_ECHO_FAULT_INJECTION:
        return None
    payload = (message.request_body or {}).get("payload") or {}
    directive = payload.get(FAULT_DIRECTIVE) if isinstance(payload, dict) else None
    if isinstance(directive, dict) and message.attempts <= int(directive.get("fail_attempts", 0)):
        return f"injected fault on attempt {message.attempts}"
    return None


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


def attempt(message_pk, *, final_attempt: bool) -> MessageLog | None:
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
    message.mark_responded()
    # An async message enters its recipient's inbox when its echo is delivered (never if it fails).
    message.delivery_state = MessageLog.Delivery.QUEUED
    message.available_at = message.responded_at
    if message.expires_at is None:
        message.expires_at = message.received_at + timedelta(milliseconds=envelope_ttl_ms(message.request_body))
    with transaction.atomic():
        message.save(
            update_fields=[
                "status",
                "http_status",
                "error",
                "responded_at",
                "latency_ms",
                "delivery_state",
                "available_at",
                "expires_at",
                "updated_at",
            ]
        )
        audit_message(AuditAction.ECHO_DELIVERED, message)
        wakeup.announce(message.recipient_id)
    return message


def _finish_failed(message: MessageLog, reason: str) -> MessageLog:
    message.status = MessageLog.Status.FAILED
    message.error = reason
    message.mark_responded()
    with transaction.atomic():
        message.save(update_fields=["status", "error", "responded_at", "latency_ms", "updated_at"])
        audit_message(AuditAction.ECHO_FAILED, message, outcome="failure", details={"reason": reason})
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
