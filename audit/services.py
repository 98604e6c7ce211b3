"""The one function every app calls to record an audit event."""

import logging

from django.dispatch import Signal
from django.utils import timezone

from audit.actions import registered
from audit.models import AuditLog
from brikk.lib import bulk
from brikk.lib.context import client_ip, current, user_agent_of
from brikk.lib.values import storable

logger = logging.getLogger("brikk.audit")

# Sent after audit rows are written, with action, outcome, details and count: each app derives its Prometheus
# counters from it (agents/metrics.py, coordination/metrics.py), so metrics and audit cannot disagree. One row is
# one signal of count 1; rows written together (record_many) send one signal per action, outcome and
# details["reason"], with the details of the first and how many rows there were.
audit_recorded = Signal()

USER_AGENT_MAX_LENGTH = AuditLog._meta.get_field("user_agent").max_length

# Keys that must never reach an audit row, whatever a caller passes in ``details``.
SECRET_KEYS = frozenset(
    {"api_key", "key", "secret", "signing_secret", "password", "token", "signature", "authorization"}
)


def scrub(details: dict | None) -> dict:
    """Drop secret-looking keys (recursively) so a careless caller cannot leak a secret."""
    if not details:
        return {}
    clean = {}
    for name, value in details.items():
        if name.lower() in SECRET_KEYS:
            continue
        clean[name] = scrub(value) if isinstance(value, dict) else value
    return clean


def _stored_text(value, max_length: int | None = None) -> tuple[str, bool]:
    text, escaped = storable(str(value or ""))
    return (text[:max_length] if max_length else text), escaped


def _actor_of(request) -> tuple[str | None, str | None]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None, None
    kind = getattr(user, "kind", AuditLog.ActorKind.USER)
    return kind, str(user.pk)


def record(
    action: str,
    *,
    outcome: str = AuditLog.Outcome.SUCCESS,
    request=None,
    actor_kind: str | None = None,
    actor_id=None,
    organization_id=None,
    resource_kind: str = "",
    resource_id="",
    details: dict | None = None,
) -> AuditLog:
    """Write one audit row and one structured log line for the same event.

    Missing actor and organization are taken from the request context (set by authentication).
    ``action`` must be registered in ``audit.actions.AuditAction``.

    Whatever the database cannot store as sent (a NUL, a lone surrogate, a non-finite number, nesting past
    the limit; brikk.lib.values) is stored escaped and the row says so: ``details.escaped`` is true. A
    database error is never caught here: a refusal that cannot be recorded must not pass silently.
    """
    entry = prepare(
        action,
        outcome=outcome,
        request=request,
        actor_kind=actor_kind,
        actor_id=actor_id,
        organization_id=organization_id,
        resource_kind=resource_kind,
        resource_id=resource_id,
        details=details,
    )
    entry.save(force_insert=True)
    announce(entry)
    return entry


def record_many(events: list[dict]) -> None:
    """Several audit rows in one INSERT, each exactly the row ``record`` writes for the same keyword arguments
    (without ``request``: the context's actor, address and agent are used; one timestamp for all, as they are
    written by one statement). Metrics and the log get one signal and one line per action and outcome (and the
    signal per details["reason"], the only detail the counters read), naming the resources and how many: a
    signal and a line per row cost the batch send a sixth of its CPU. The batch send audits each of its
    messages this way (coordination/batch.py). Rows are built as plain values, not model instances, and who
    acted (actor, organization, address, agent) is worked out once per actor."""
    now = timezone.now()
    origins: dict[tuple, tuple[dict, bool]] = {}
    rows = []
    for event in events:
        event = dict(event)
        who = (event.pop("actor_kind", None), event.pop("actor_id", None), event.pop("organization_id", None))
        origin = origins.get(who)
        if origin is None:
            origin = origins[who] = _origin(None, *who)
        rows.append(_row(origin, created_at=now, **event))
    bulk.insert_values(AuditLog, rows)
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["action"], row["outcome"]), []).append(row)
    for (action, outcome), group in groups.items():
        for details, count in _by_reason(group):
            audit_recorded.send(sender=AuditLog, action=action, outcome=outcome, details=details, count=count)
        first = group[0]
        logger.info(
            "audit %s %s x%d",
            action,
            outcome,
            len(group),
            extra={
                "event": "audit",
                "action": action,
                "outcome": outcome,
                "count": len(group),
                "actor_kind": first["actor_kind"],
                "actor_id": first["actor_id"] or None,
                "organization_id": str(first["organization_id"]) if first["organization_id"] else None,
                "resource_kind": first["resource_kind"] or None,
                "resource_ids": [row["resource_id"] for row in group],
            },
        )


def _by_reason(rows: list[dict]) -> list[tuple[dict, int]]:
    """(the details of the first row of each details["reason"], how many rows have that reason)."""
    reasons: dict[tuple, list] = {}
    for row in rows:
        reason = row["details"].get("reason")
        key = (type(reason), str(reason))  # a reason may be any JSON value, not all hashable
        if key in reasons:
            reasons[key][1] += 1
        else:
            reasons[key] = [row["details"], 1]
    return [(details, count) for details, count in reasons.values()]


def prepare(
    action: str,
    *,
    outcome: str = AuditLog.Outcome.SUCCESS,
    request=None,
    actor_kind: str | None = None,
    actor_id=None,
    organization_id=None,
    resource_kind: str = "",
    resource_id="",
    details: dict | None = None,
    created_at=None,
) -> AuditLog:
    """The audit row ``record`` writes, not yet saved: for a caller that inserts it with its own statement
    (the echo's, coordination/echo_statement.py) and then calls ``announce``."""
    origin = _origin(request, actor_kind, actor_id, organization_id)
    row = _row(
        origin,
        action=action,
        outcome=outcome,
        resource_kind=resource_kind,
        resource_id=resource_id,
        details=details,
        created_at=created_at or timezone.now(),
    )
    return bulk.instance(AuditLog, **row)


def _origin(request, actor_kind, actor_id, organization_id) -> tuple[dict, bool]:
    """Who acted, where from and under which request: the fields of a row that do not depend on what was done
    (the request context's where not given), and whether any had to be stored escaped."""
    context = current()
    if actor_kind is None and context.actor_kind is None:
        actor_kind, actor_id = _actor_of(request)
    actor_kind = actor_kind or context.actor_kind or AuditLog.ActorKind.ANONYMOUS
    actor_id = actor_id if actor_id is not None else (context.actor_id or "")
    organization_id = organization_id if organization_id is not None else context.organization_id
    user_agent, escaped_agent = _stored_text(
        user_agent_of(request) if request is not None else context.user_agent, USER_AGENT_MAX_LENGTH
    )
    actor_id, escaped_actor = _stored_text(actor_id)
    fields = {
        "correlation_id": context.request_id if context.request_id != "-" else "",
        "actor_kind": actor_kind,
        "actor_id": actor_id,
        "organization_id": organization_id,
        "client_ip": client_ip(request) if request is not None else context.client_ip,
        "user_agent": user_agent,
    }
    return fields, escaped_agent or escaped_actor


def _row(
    origin: tuple[dict, bool],
    *,
    action: str,
    outcome: str = AuditLog.Outcome.SUCCESS,
    resource_kind: str = "",
    resource_id="",
    details: dict | None = None,
    created_at,
) -> dict:
    fields, escaped_origin = origin
    resource_kind, escaped_kind = _stored_text(resource_kind)
    resource_id, escaped_resource = _stored_text(resource_id)
    details, escaped = storable(scrub(details))
    if escaped or escaped_origin or escaped_kind or escaped_resource:
        details["escaped"] = True
    return {
        **fields,
        "created_at": created_at,
        "action": registered(action).value,
        "resource_kind": resource_kind,
        "resource_id": resource_id,
        "outcome": outcome,
        "details": details,
    }


def announce(entry: AuditLog) -> None:
    """What follows a written audit row: the metrics (``audit_recorded``) and its structured log line."""
    audit_recorded.send(sender=AuditLog, action=entry.action, outcome=entry.outcome, details=entry.details, count=1)
    logger.info(
        "audit %s %s",
        entry.action,
        entry.outcome,
        extra={
            "event": "audit",
            "action": entry.action,
            "outcome": entry.outcome,
            "actor_kind": entry.actor_kind,
            "actor_id": entry.actor_id or None,
            "organization_id": str(entry.organization_id) if entry.organization_id else None,
            "resource_kind": entry.resource_kind or None,
            "resource_id": entry.resource_id or None,
        },
    )
