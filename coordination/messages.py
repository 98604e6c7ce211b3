"""How a message is answered and audited: shared by the synchronous echo (echo.py), async processing
(processing.py) and refusals (refusals.py)."""

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse

from audit.services import prepare, record
from coordination.models import MessageLog
from coordination.serializers import agent_uuid, delivery_fields


@dataclass(frozen=True)
class Caller:
    """Who sends: an agent (API key or HMAC) or a user (JWT, session) acting in an organization."""

    organization_id: str
    auth_method: str
    agent_id: str | None = None
    user_id: str | None = None

    @property
    def scope(self) -> str:
        """Whose idempotency keys these are. An agent belongs to one organization; a user may be in several,
        and a key used in one must never replay its answer into another."""
        return f"agent:{self.agent_id}" if self.agent_id else f"user:{self.user_id}@{self.organization_id}"

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


def agent_ref(data, field) -> uuid.UUID | None:
    try:
        return agent_uuid(str(data[field]["agent_id"]))
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def message_uuid(data) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(data["message_id"]))
    except (TypeError, KeyError, ValueError):
        return None


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


_URL_PLACEHOLDER = uuid.UUID(int=0)


@functools.cache
def _message_path_template(urlconf: str) -> str:
    """The detail path with ``{}`` for the id. reverse() walks the URL patterns on every call (about
    0.1 ms); every echo answers with this link, so the pattern is reversed once per URLconf."""
    path = reverse("coordination-message-detail", urlconf=urlconf, args=[_URL_PLACEHOLDER])
    return path.removeprefix(get_script_prefix()).replace(str(_URL_PLACEHOLDER), "{}")


def message_path_format() -> str:
    """The message detail path of this request with ``{}`` for the id: ``message_url`` without the id. The
    script prefix and URLconf are per request (each a context-local lookup), so a caller answering many
    messages in one request (the batch send) takes this once and passes it to ``echo_body``."""
    return get_script_prefix() + _message_path_template(get_urlconf() or settings.ROOT_URLCONF)


def message_url(message_id, path_format: str | None = None) -> str:
    if not isinstance(message_id, uuid.UUID):
        message_id = uuid.UUID(str(message_id))  # a valid id, in its canonical form
    return (path_format or message_path_format()).format(message_id)


def echo_body(message: MessageLog, envelope, caller_auth: dict, *, path_format: str | None = None) -> dict:
    return {
        "id": str(message.id),
        "status": message.status,
        "envelope": envelope,
        "received_at": iso(message.received_at),
        "responded_at": iso(message.responded_at),
        "processing_ms": round(message.latency_ms, 3) if message.responded_at else None,
        "correlation_id": message.correlation_id,
        "auth": caller_auth,
        "links": {"self": message_url(message.id, path_format)},
        "delivery": delivery_fields(message),
    }


def audit_message(action: str, message: MessageLog, *, outcome: str = "success", details: dict | None = None):
    return record(action, **_message_audit(message, outcome, details))


def message_audit_entry(action: str, message: MessageLog, *, outcome: str = "success", details: dict | None = None):
    """The audit row ``audit_message`` writes, unsaved: the echo's one statement inserts it (echo_statement.py)."""
    return prepare(action, **_message_audit(message, outcome, details))


def audit_event(action: str, message: MessageLog, *, outcome: str = "success", details: dict | None = None) -> dict:
    """The keyword arguments of a message's audit row, for audit.services.record_many (the batch send)."""
    return {"action": action, **_message_audit(message, outcome, details)}


def _message_audit(message: MessageLog, outcome: str, details: dict | None) -> dict:
    return {
        "outcome": outcome,
        "organization_id": message.organization_id,
        "resource_kind": "message",
        "resource_id": message.pk,
        "actor_kind": message.actor_kind or None,
        "actor_id": message.actor_id or None,
        "details": {
            "message_id": str(message.message_id) if message.message_id else None,
            "type": message.type,
            "status": message.status,
            "http_status": message.http_status,
            "attempts": message.attempts,
            **(details or {}),
        },
    }
