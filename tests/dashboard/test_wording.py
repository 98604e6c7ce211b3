"""The dashboard's wording in one place (brikk/dashboard/wording.py) and its template tags."""

from datetime import UTC, datetime, timedelta

import pytest
from django.template import Context, Template

from brikk.dashboard import wording

NOW = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(seconds=30), "just now"),
        (timedelta(minutes=1), "1\xa0minute ago"),
        (timedelta(minutes=5, seconds=10), "5\xa0minutes ago"),
        (timedelta(hours=3, minutes=59), "3\xa0hours ago"),
        (timedelta(days=400), "1\xa0year ago"),
        (-timedelta(seconds=20), "in under a minute"),
        (-timedelta(days=3, hours=1), "in 3\xa0days"),
    ],
)
def test_relative_times(delta, text):
    assert wording.relative(NOW - delta, NOW) == text


def test_relative_time_never_says_zero_minutes():
    for seconds in range(0, 120, 7):
        assert not wording.relative(NOW - timedelta(seconds=seconds), NOW).startswith("0")
        assert "0\xa0minutes" not in wording.relative(NOW + timedelta(seconds=seconds), NOW)


def test_one_absolute_format_naming_the_zone():
    assert wording.stamp(NOW) == "2030-05-06 07:08:09 UTC"
    assert wording.stamp(None) == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (90, "1 minute 30 seconds"),
        (300, "5 minutes"),
        (3600, "1 hour"),
        (5400, "1 hour 30 minutes"),
        (86400, "1 day"),
        (7 * 86400, "7 days"),
        (86400 + 3600 + 60, "1 day 1 hour"),
    ],
)
def test_durations_in_words(seconds, text):
    assert wording.duration(seconds) == text


def test_pretty_json_is_json_not_python():
    text = wording.pretty_json({"b": None, "a": True, "ü": [1, "x"]})
    assert text == '{\n  "a": true,\n  "b": null,\n  "ü": [\n    1,\n    "x"\n  ]\n}'


def test_short_ids_keep_the_distinguishing_end():
    # UUIDv7 ids written in the same millisecond share their start; their ends differ.
    first, second = "0196a3c2-7b1e-7c3d-9a4b-1f2e3d4c5b6a", "0196a3c2-7b1e-7f00-8123-abcdefabcdef"
    assert wording.short_id(first) == "…1f2e3d4c5b6a"
    assert wording.short_id(first) != wording.short_id(second)
    assert wording.short_id("short-id") == "short-id"


def test_counts_are_pluralized():
    assert wording.keys_revoked(1, "alpha") == "Revoked 1 key of alpha; it stops working now."
    assert wording.keys_revoked(2, "alpha") == "Revoked 2 keys of alpha; they stop working now."
    assert wording.status_phrase("maintenance") == "in maintenance"


def test_when_tag_renders_a_time_element_both_ways():
    value = datetime.now(UTC) - timedelta(minutes=5)
    relative = Template("{% load dashboard %}{% when value %}").render(Context({"value": value}))
    assert relative.startswith(f'<time datetime="{value.isoformat()}" title="{wording.stamp(value)}">')
    assert relative.endswith(">5\xa0minutes ago</time>")
    absolute = Template("{% load dashboard %}{% when value absolute=True %}").render(Context({"value": value}))
    assert absolute.endswith(f">{wording.stamp(value)}</time>") and 'title="5\xa0minutes ago"' in absolute
    empty = Template('{% load dashboard %}{% when value empty="—" %}').render(Context({"value": None}))
    assert empty == '<span class="muted">—</span>'
