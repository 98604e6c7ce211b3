"""Read-side queries the dashboard shows; all scoped to one organization."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from agents.models import Agent, APIKey
from audit.models import AuditLog
from coordination.models import DeliveryAttempt, MessageLog, PushEndpoint

KEY_EXPIRY_WARNING = timedelta(days=14)


@dataclass(frozen=True)
class InboxCounts:
    """An agent's inbox: queued (its depth), leased (in flight), dead (dead letters)."""

    queued: int = 0
    leased: int = 0
    dead: int = 0

    @property
    def waiting(self) -> int:
        return self.queued + self.leased


@dataclass(frozen=True)
class AgentRow:
    agent: Agent
    current_key: APIKey | None
    usable_keys: int
    inbox: InboxCounts

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
    inboxes = inbox_counts(organization_id)
    rows = []
    for agent in agents:
        keys = list(agent.api_keys.all())
        rows.append(
            AgentRow(
                agent=agent,
                current_key=current_key(keys, now),
                usable_keys=sum(key.is_usable(now) for key in keys),
                inbox=inboxes.get(agent.pk, InboxCounts()),
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
    inboxes = inbox_counts(organization_id).values()
    return {
        "agent_counts": agent_counts(organization_id),
        "inbox_totals": InboxCounts(
            queued=sum(counts.queued for counts in inboxes),
            leased=sum(counts.leased for counts in inboxes),
            dead=sum(counts.dead for counts in inboxes),
        ),
        "agents_with_dead_letters": sum(1 for counts in inboxes if counts.dead),
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


# --- Delivery: inboxes, dead letters, a message's timeline ----------------------------------------

# How many inbox rows and dead letters an agent's page shows (the oldest waiting, the latest dead).
INBOX_SHOWN = 50
Delivery = MessageLog.Delivery


def inbox_counts(organization_id, *, agent_id=None) -> dict:
    """Per recipient (agent id): queued (the inbox depth), leased (in flight) and dead messages. ONE grouped
    query for the whole organization (or one agent), whatever the number of agents; acked rows are not counted."""
    rows = MessageLog.objects.filter(
        organization_id=organization_id,
        delivery_state__in=[Delivery.QUEUED, Delivery.LEASED, Delivery.DEAD],
        recipient_id__isnull=False,
    )
    if agent_id is not None:
        rows = rows.filter(recipient_id=agent_id)
    counts: dict = {}
    for recipient_id, state, n in rows.order_by().values_list("recipient_id", "delivery_state").annotate(n=Count("id")):
        counts.setdefault(recipient_id, {})[state] = n
    return {recipient_id: InboxCounts(**by_state) for recipient_id, by_state in counts.items()}


def agent_inbox(agent: Agent, now: datetime | None = None) -> dict:
    """An agent's waiting messages (oldest first) and its dead letters (latest first), each capped at
    ``INBOX_SHOWN``, with the counts that say how many there are in all. Four queries."""
    now = now or timezone.now()
    counts = inbox_counts(agent.organization_id, agent_id=agent.pk).get(agent.pk, InboxCounts())
    waiting = list(
        MessageLog.objects.filter(recipient_id=agent.pk, delivery_state__in=[Delivery.QUEUED, Delivery.LEASED])
        .select_related("sender")
        .order_by("id")[:INBOX_SHOWN]  # uuid7: id order is arrival order (the msg_inbox index)
    )
    for message in waiting:
        message.lease_ran_out = message.delivery_state == Delivery.LEASED and message.leased_until <= now
    dead = list(
        MessageLog.objects.filter(
            organization_id=agent.organization_id, recipient_id=agent.pk, delivery_state=Delivery.DEAD
        )
        .select_related("sender")
        .order_by("-dead_at", "-id")[:INBOX_SHOWN]
    )
    return {"counts": counts, "waiting": waiting, "dead_letters": dead, "inbox_shown": INBOX_SHOWN}


def dead_letters_of(agent: Agent, ids) -> list:
    """Those of ``ids`` that are dead letters addressed to ``agent`` (the page redrives only its own)."""
    return list(
        MessageLog.objects.filter(
            organization_id=agent.organization_id, recipient_id=agent.pk, delivery_state=Delivery.DEAD, pk__in=ids
        ).values_list("pk", flat=True)
    )


@dataclass(frozen=True)
class TimelineEvent:
    """One line of a message's delivery timeline. ``kind``: accepted, lease, acked, dead, expires."""

    at: datetime
    kind: str
    attempt: DeliveryAttempt | None = None
    number: int = 0  # a lease's: 1 for the first
    lease_ran_out: bool = False
    holding: bool = False


def delivery_timeline(message: MessageLog, now: datetime | None = None) -> list[TimelineEvent]:
    """What happened to a message in its recipient's inbox, in time order: accepted, each lease (kind, consumer,
    until, and its outcome, or that it ran out), then acked or dead-lettered, or when it will expire. One query
    (its delivery attempts)."""
    now = now or timezone.now()
    if not message.delivery_state:
        return []
    events = [TimelineEvent(at=message.received_at, kind="accepted")]
    attempts = message.deliveries.select_related("endpoint").order_by("started_at", "id")
    for number, attempt in enumerate(attempts, start=1):
        unsettled = not attempt.outcome and attempt.leased_until is not None
        events.append(
            TimelineEvent(
                at=attempt.started_at,
                kind="lease",
                attempt=attempt,
                number=number,
                lease_ran_out=unsettled and attempt.leased_until <= now,
                holding=unsettled and attempt.leased_until > now,
            )
        )
    if message.acked_at:
        events.append(TimelineEvent(at=message.acked_at, kind="acked"))
    if message.dead_at:
        events.append(TimelineEvent(at=message.dead_at, kind="dead"))
    if message.delivery_state in (Delivery.QUEUED, Delivery.LEASED) and message.expires_at:
        events.append(TimelineEvent(at=message.expires_at, kind="expires"))
    return sorted(events, key=lambda event: event.at)


def message_relations(message: MessageLog) -> dict:
    """The message it answers (if of the same organization) and its replies, oldest first (capped)."""
    original = message.in_reply_to if message.in_reply_to_id else None
    if original is not None and original.organization_id != message.organization_id:
        original = None
    replies = list(
        message.replies.filter(organization_id=message.organization_id)
        .select_related("sender")
        .order_by("created_at", "id")[:INBOX_SHOWN]
    )
    return {"original": original, "replies": replies}


def push_endpoints_of(agent: Agent) -> list[PushEndpoint]:
    """An agent's push endpoints, the enabled one first."""
    return list(
        PushEndpoint.objects.filter(agent_id=agent.pk, organization_id=agent.organization_id).order_by(
            "-enabled", "created_at"
        )
    )
