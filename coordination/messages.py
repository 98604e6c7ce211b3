"""Who sends a message, and how it is audited: shared by the synchronous echo (echo.py), the batch send, async
processing (processing.py) and refusals (refusals.py). How it is answered: answers.py."""

import uuid
from dataclasses import dataclass

from audit.services import prepare, record
from coordination.models import MessageLog
from coordination.serializers import agent_uuid


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
