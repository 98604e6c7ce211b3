"""A refused echo after authentication is kept: a MessageLog row (status rejected) with the answer given,
and its audit row, in one transaction. Which refusals are kept is decided in audit/refusals.py.

What the database cannot store as sent (brikk.lib.values: NUL, lone surrogates, non-finite numbers, nesting
past the limit) is stored escaped, and both rows say so: the message's ``error`` ends with ``ESCAPED_NOTE``
and the audit row's ``details.escaped`` is true. Nothing refused goes unrecorded for what it contained."""

from django.db import transaction
from uuid6 import uuid7

from agents.models import Agent
from brikk.lib.context import current
from brikk.lib.values import storable
from coordination import idempotency
from coordination.messages import Caller, agent_ref, audit_message, message_uuid
from coordination.models import MessageLog

ESCAPED_NOTE = " [stored escaped: what the database cannot store as sent is written as \\uXXXX text]"


def keep_refused(
    caller: Caller, data, *, status: int, body: dict, action: str, idempotency_key: str | None, received_at
) -> MessageLog:
    """The MessageLog row (status rejected) and audit row of a refused echo, in one transaction."""
    refs = {field: agent_ref(data, field) for field in ("sender", "recipient")} if isinstance(data, dict) else {}
    wanted = [ref for ref in refs.values() if ref is not None]
    known = set()
    if wanted:
        known = set(
            Agent.objects.filter(organization_id=caller.organization_id, pk__in=wanted).values_list("pk", flat=True)
        )
    message, details = refused_message(
        caller,
        data,
        status=status,
        body=body,
        idempotency_key=idempotency_key,
        received_at=received_at,
        known_agents=known,
    )
    with transaction.atomic():
        message.save(force_insert=True)
        audit_message(action, message, outcome=refusal_outcome(status), details=details)
    return message


def refusal_outcome(status: int) -> str:
    return "denied" if status in (403, 429) else "failure"


def refused_message(
    caller: Caller, data, *, status: int, body: dict, idempotency_key: str | None, received_at, known_agents: set
) -> tuple[MessageLog, dict]:
    """The rejected row of a refused envelope (not saved) and its audit row's details. ``known_agents``: the ids
    of the organization's agents among those it names (sender and recipient are linked only to those)."""
    refs = {field: agent_ref(data, field) for field in ("sender", "recipient")} if isinstance(data, dict) else {}
    message_id = message_uuid(data)
    kind = data.get("type") if isinstance(data, dict) else None
    request_body, request_escaped = storable(data)
    response_body, response_escaped = storable(body)
    key, key_escaped = storable((idempotency_key or "")[: idempotency.MAX_KEY_LENGTH])
    error, error_escaped = storable(f"{body.get('code')}: {body.get('message')}")
    escaped = request_escaped or response_escaped or key_escaped or error_escaped
    if escaped:
        error += ESCAPED_NOTE
    sender, recipient = refs.get("sender"), refs.get("recipient")
    message = MessageLog(
        id=uuid7(),
        organization_id=caller.organization_id,
        message_id=message_id,
        sender_id=sender if sender in known_agents else None,
        recipient_id=recipient if recipient in known_agents else None,
        type=kind if kind in MessageLog.Type.values else MessageLog.Type.MESSAGE,
        status=MessageLog.Status.REJECTED,
        auth_method=caller.auth_method,
        http_status=status,
        request_body=request_body,
        response_body=response_body,
        error=error,
        correlation_id=current().request_id,
        idempotency_key=key[: idempotency.MAX_KEY_LENGTH],
        received_at=received_at,
        **caller.actor,
    )
    message.mark_responded()
    details = {"code": body.get("code")}
    if escaped:
        details["escaped"] = True
    return message, details
