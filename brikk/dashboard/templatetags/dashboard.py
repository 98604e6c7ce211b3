"""``{% load dashboard %}``: the dashboard's formatting, one tag or filter per kind of value (the
wording itself is brikk/dashboard/wording.py).

- ``{% when value %}``: a ``<time>`` showing the relative time ("just now", "5 minutes ago",
  "in 11 months") with the absolute one in UTC as its tooltip; ``{% when value absolute=True %}``
  shows the absolute time with the relative one as tooltip (log tables). ``empty`` is shown for None.
- ``value|stamp``: the absolute time, ``2025-01-02 14:03:05 UTC``.
- ``value|pretty_json``: indented JSON (metadata, audit details, request and response bodies).
- ``seconds|duration``: ``1 hour``, ``1 hour 30 minutes``.
- ``{% short_id value %}``: an identifier's distinguishing end with the whole one as tooltip.
- ``state|delivery_phrase``, ``reason|dead_reason``, ``outcome|lease_outcome``, ``{% lease_ending event %}``:
  a message's delivery in words.
"""

from django import template
from django.utils.html import format_html

from brikk.dashboard import wording

register = template.Library()


@register.simple_tag
def when(value, absolute=False, empty="never"):
    if value is None or value == "":
        return format_html('<span class="muted">{}</span>', empty)
    shown, tooltip = wording.relative(value), wording.stamp(value)
    if absolute:
        shown, tooltip = tooltip, shown
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), tooltip, shown)


@register.filter
def stamp(value):
    return wording.stamp(value)


@register.filter
def pretty_json(value):
    return wording.pretty_json(value)


@register.filter
def duration(seconds):
    return wording.duration(seconds)


@register.simple_tag
def short_id(value):
    text = str(value or "")
    return format_html('<span class="mono id" title="{}">{}</span>', text, wording.short_id(text))


@register.filter
def delivery_phrase(state):
    return wording.delivery_phrase(state)


@register.filter
def dead_reason(reason):
    return wording.dead_reason(reason)


@register.simple_tag
def endpoint_disabled(endpoint):
    return wording.endpoint_disabled(endpoint.disabled_reason, endpoint.disabled_at, endpoint.failing_since)


@register.filter
def lease_outcome(outcome):
    return wording.lease_outcome(outcome)


@register.simple_tag
def lease_ending(event):
    """How a lease of the timeline ended: its outcome, that it ran out, or that it still holds."""
    if event.attempt.outcome:
        return wording.lease_outcome(event.attempt.outcome)
    if event.lease_ran_out:
        return wording.LEASE_RAN_OUT
    return wording.LEASE_HOLDING if event.holding else ""
