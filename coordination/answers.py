"""What a message's sender was answered, and the parts of it: one place for the echo, the batch send, async
processing, replays, the message API and the dashboard.

A delivered message keeps no copy of its answer (``response_body`` stays NULL): every part of it is a column of
its row, fixed once it is delivered (the envelope is ``request_body``; the delivery part is the inbox entry as it
was when answered, a fresh one), so ``answer_of`` builds it again, the same answer, whenever it is asked for (an
idempotent replay, the message's page). Not storing it halves each message row (about 1.8 KB to 0.8 KB for a
small envelope) and spares PostgreSQL parsing it on every insert. Only what cannot be built again is stored: a
refused message's error (refusals.py), and answers stored before this rule (they are answered as stored).
"""

import functools
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse

from coordination.models import TTL_MS_DEFAULT, MessageLog


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
    """The message's detail path under this request's script prefix and URLconf."""
    if not isinstance(message_id, uuid.UUID):
        message_id = uuid.UUID(str(message_id))  # a valid id, in its canonical form
    template = _message_path_template(get_urlconf() or settings.ROOT_URLCONF)
    return get_script_prefix() + template.format(message_id)


def delivery_fields(message: MessageLog) -> dict:
    """The message's place in its recipient's inbox, now."""
    return {
        "state": message.delivery_state or None,
        "delivery_count": message.delivery_count,
        "first_received_at": iso(message.first_received_at),
        "acked_at": iso(message.acked_at),
        "dead_reason": message.dead_reason or None,
        "expires_at": iso(message.expires_at),
    }


def envelope_ttl_ms(body) -> int:
    """The ttl_ms of a stored envelope (``request_body``), its default if it names none."""
    ttl_ms = body.get("ttl_ms", TTL_MS_DEFAULT) if isinstance(body, dict) else TTL_MS_DEFAULT
    return ttl_ms if type(ttl_ms) is int else TTL_MS_DEFAULT  # noqa: E721 - bool is an int to isinstance


def answered_delivery(message: MessageLog) -> dict:
    """``delivery_fields`` as they were when the message was delivered and answered: a fresh inbox entry, expiring
    ttl_ms after the message was received (a redrive or resend starts its ttl again, not its answer's)."""
    expires_at = message.received_at + timedelta(milliseconds=envelope_ttl_ms(message.request_body))
    return {
        "state": MessageLog.Delivery.QUEUED.value,
        "delivery_count": 0,
        "first_received_at": None,
        "acked_at": None,
        "dead_reason": None,
        "expires_at": iso(expires_at),
    }


def auth_of(message: MessageLog) -> dict:
    """The answer's ``auth`` (messages.Caller.auth_info) from the columns that recorded who sent the message."""
    info = {
        "organization_id": str(message.organization_id),
        "agent_id": message.actor_id if message.actor_kind == "agent" else None,
        "auth_method": message.auth_method,
    }
    if message.actor_kind == "user":
        info["user_id"] = message.actor_id
    return info


def echo_body(message: MessageLog, envelope, caller_auth: dict, *, delivery: dict | None = None) -> dict:
    """The answer to a message that was delivered or accepted. ``delivery``: the inbox part, if not as it is now."""
    return {
        "id": str(message.id),
        "status": message.status,
        "envelope": envelope,
        "received_at": iso(message.received_at),
        "responded_at": iso(message.responded_at),
        "processing_ms": round(message.latency_ms, 3) if message.responded_at else None,
        "correlation_id": message.correlation_id,
        "auth": caller_auth,
        "links": {"self": message_url(message.id)},
        "delivery": delivery if delivery is not None else delivery_fields(message),
    }


def answer_of(message: MessageLog) -> dict | None:
    """What the message's sender was answered: the stored answer, else, for a delivered message, the same answer
    built again from its row (module docstring); None for a message not answered yet."""
    if message.response_body is not None:
        return message.response_body
    if message.status != MessageLog.Status.DELIVERED or message.responded_at is None:
        return None
    return echo_body(message, message.request_body, auth_of(message), delivery=answered_delivery(message))
