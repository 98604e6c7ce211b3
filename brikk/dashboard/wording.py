"""How the dashboard words things, in one place: times (relative, and absolute in UTC), durations,
JSON, identifiers, counts and statuses. Templates reach these through the ``dashboard`` template tag
library (``{% load dashboard %}``); views use them for flash messages."""

import json
from datetime import datetime, timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import ngettext

# The one absolute format: "2025-01-02 14:03:05 UTC" (the site's time zone, named).
STAMP_FORMAT = "Y-m-d H:i:s T"

# How long a moment counts as "just now" (and a moment ahead as "in under a minute").
JUST_NOW = timedelta(minutes=1)

DURATION_UNITS = (
    (86400, lambda n: ngettext("%(n)d day", "%(n)d days", n)),
    (3600, lambda n: ngettext("%(n)d hour", "%(n)d hours", n)),
    (60, lambda n: ngettext("%(n)d minute", "%(n)d minutes", n)),
    (1, lambda n: ngettext("%(n)d second", "%(n)d seconds", n)),
)

# "<agent> is now …": the status as the end of a sentence.
STATUS_PHRASES = {"active": "active", "idle": "idle", "maintenance": "in maintenance", "deleted": "deleted"}

# Identifiers longer than this are shown by their end: UUIDv7 ids share their first characters
# (a millisecond timestamp) across every row written close in time; their last ones are random.
SHORT_ID_LENGTH = 12


def stamp(value: datetime | None) -> str:
    """Absolute time in the site's time zone, with the zone: ``2025-01-02 14:03:05 UTC``."""
    if value is None:
        return ""
    return format_date(timezone.localtime(value), STAMP_FORMAT)


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """``just now``, ``5 minutes ago``, ``in 3 days``: the largest unit only."""
    if value is None:
        return ""
    now = now or timezone.now()
    delta = now - value
    if abs(delta) < JUST_NOW:
        return "just now" if delta >= timedelta(0) else "in under a minute"
    if delta > timedelta(0):
        return f"{timesince(value, now, depth=1)} ago"
    return f"in {timeuntil(value, now, depth=1)}"


def duration(seconds) -> str:
    """``1 hour``, ``1 hour 30 minutes``, ``7 days``: the two largest non-zero units."""
    seconds = int(seconds)
    if seconds <= 0:
        return ngettext("%(n)d second", "%(n)d seconds", 0) % {"n": 0}
    parts = []
    for size, word in DURATION_UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(word(count) % {"n": count})
    return " ".join(parts[:2])


def pretty_json(value) -> str:
    """JSON as people read it: indented, keys sorted, non-ASCII as is."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)


def short_id(value) -> str:
    """An identifier's distinguishing end, ``…3f9a2c1b7d4e``; short ones whole."""
    text = str(value or "")
    if len(text) <= SHORT_ID_LENGTH + 4:
        return text
    return "…" + text[-SHORT_ID_LENGTH:]


def status_phrase(status: str) -> str:
    return STATUS_PHRASES.get(status, status)


def keys_revoked(count: int, agent_name: str) -> str:
    return ngettext(
        "Revoked %(count)d key of %(name)s; it stops working now.",
        "Revoked %(count)d keys of %(name)s; they stop working now.",
        count,
    ) % {"count": count, "name": agent_name}


# --- Delivery ---------------------------------------------------------------------------------------

# A message's place in its recipient's inbox, as a sentence's end ("This message is …").
DELIVERY_PHRASES = {
    "queued": "waiting in the inbox of its recipient",
    "leased": "in flight: leased to a consumer, waiting for its ack",
    "acked": "delivered: its recipient acked it",
    "dead": "a dead letter",
}

# Why a message is a dead letter.
DEAD_REASONS = {
    "expired": "expired: its time to live ran out before an ack",
    "max_deliveries": "out of deliveries: leased the most times allowed, never acked",
}

# How a lease ended (coordination.models.DeliveryAttempt.Outcome), and the two ways it may not have.
LEASE_OUTCOMES = {
    "acked": "acked",
    "nacked": "nacked: handed back to the inbox",
    "released": "released by the consumer",
}
LEASE_RAN_OUT = "lease ran out: no ack in time"
LEASE_HOLDING = "held now, no ack yet"


def delivery_phrase(state: str) -> str:
    return DELIVERY_PHRASES.get(state, state or "not in an inbox")


def dead_reason(reason: str) -> str:
    return DEAD_REASONS.get(reason, reason)


def lease_outcome(outcome: str) -> str:
    return LEASE_OUTCOMES.get(outcome, outcome)


def redriven(count: int, agent_name: str) -> str:
    if not count:
        return f"Nothing was redriven: those messages are no longer dead letters of {agent_name}."
    return ngettext(
        "Sent %(count)d dead letter back to the inbox of %(name)s.",
        "Sent %(count)d dead letters back to the inbox of %(name)s.",
        count,
    ) % {"count": count, "name": agent_name}


def endpoint_disabled(reason: str, disabled_at: datetime | None, failing_since: datetime | None) -> str:
    """Why a push endpoint is disabled, in a sentence: a person, a 410 Gone, or days without a success."""
    if reason == "gone":
        return "Disabled: the endpoint answered 410 Gone, so Brikk stopped pushing to it."
    if reason == "failing":
        if disabled_at and failing_since:
            span = duration(int((disabled_at - failing_since).total_seconds()))
            return f"Disabled: failing for {span} without a successful delivery."
        return "Disabled: failing for days without a successful delivery."
    if reason == "manual":
        return "Disabled by a person."
    return "Disabled."
