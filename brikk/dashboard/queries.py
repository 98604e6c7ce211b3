"""Read-side queries the dashboard shows; all scoped to one organization."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from agents.models import Agent, APIKey
from audit.models import AuditLog
from coordination.models import MessageLog

KEY_EXPIRY_WARNING = timedelta(days=14)


@dataclass(frozen=True)
class AgentRow:
    agent: Agent
    current_key: APIKey | None
    usable_keys: int

    @property
    def key_age(self) -> timedelta | None:
        return timezone.now() - self.current_key.created_at if self.current_key else None

    @property
    def key_expires_soon(self) -> bool:
        key = self.current_key
        return bool(key and key.expires_at and key.expires_at - timezone.now() < KEY_EXPIRY_WARNING)


def current_key(keys: list[APIKey], now: datetime) -> APIKey | None:
    """The agent's newest usable key that is not being rotated out."""
    usable = [key for key in keys if key.is_usable(now)]
    fresh = [key for key in usable if key.rotated_at is None]
    return max(fresh or usable, key=lambda key: key.created_at, default=None)


def agent_rows(organization_id) -> list[AgentRow]:
    now = timezone.now()
    agents = Agent.objects.live().filter(organization_id=organization_id).prefetch_related("api_keys").order_by("name")
    rows = []
    for agent in agents:
        keys = list(agent.api_keys.all())
        rows.append(
            AgentRow(
                agent=agent,
                current_key=current_key(keys, now),
                usable_keys=sum(key.is_usable(now) for key in keys),
            )
        )
    return rows


def agent_counts(organization_id) -> dict[str, int]:
    counts = dict.fromkeys(Agent.Status.values, 0)
    rows = Agent.objects.filter(organization_id=organization_id).values("status").annotate(n=Count("id"))
    for row in rows:
        counts[row["status"]] = row["n"]
    counts["total"] = sum(n for status, n in counts.items() if status != Agent.Status.DELETED)
    return counts


def echo_counts(organization_id, since: datetime) -> dict[str, int]:
    """Echoes since ``since`` by outcome (message status); uses the (organization, status, created_at) index."""
    counts = dict.fromkeys(MessageLog.Status.values, 0)
    rows = (
        MessageLog.objects.filter(organization_id=organization_id, created_at__gte=since)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        counts[row["status"]] = row["n"]
    counts["total"] = sum(counts.values())
    return counts


def overview(organization_id, *, include_audit: bool) -> dict:
    now = timezone.now()
    recent_messages = (
        MessageLog.objects.filter(organization_id=organization_id)
        .select_related("sender", "recipient")
        .order_by("-created_at", "-id")[:8]
    )
    recent_audit = (
        AuditLog.objects.filter(organization_id=organization_id).order_by("-created_at")[:8] if include_audit else []
    )
    return {
        "agent_counts": agent_counts(organization_id),
        "echo_windows": [
            ("Last hour", echo_counts(organization_id, now - timedelta(hours=1))),
            ("Last 24 hours", echo_counts(organization_id, now - timedelta(days=1))),
        ],
        "recent_messages": list(recent_messages),
        "recent_audit": list(recent_audit),
    }


AUDIT_RESOURCE_VIEWS = {"agent": "dashboard:agent-detail", "message": "dashboard:message-detail"}


def audit_resource_url(entry: AuditLog) -> str | None:
    """Where an audit row's resource is shown in the dashboard, if anywhere."""
    view = AUDIT_RESOURCE_VIEWS.get(entry.resource_kind)
    if view is None or not entry.resource_id:
        return None
    try:
        return reverse(view, args=[entry.resource_id])
    except NoReverseMatch:
        return None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def label_actors(entries) -> None:
    """Give each audit row an ``actor_name`` (username or agent name): two queries per page, not N."""
    from django.contrib.auth import get_user_model

    user_ids = {e.actor_id for e in entries if e.actor_kind == "user" and e.actor_id.isdigit()}
    agent_ids = {e.actor_id for e in entries if e.actor_kind == "agent" and _is_uuid(e.actor_id)}
    users = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username")) if user_ids else {}
    agents = dict(Agent.objects.filter(pk__in=agent_ids).values_list("pk", "name")) if agent_ids else {}
    names = {("user", str(pk)): name for pk, name in users.items()}
    names.update({("agent", str(pk)): name for pk, name in agents.items()})
    for entry in entries:
        entry.actor_name = names.get((entry.actor_kind, entry.actor_id), "")
