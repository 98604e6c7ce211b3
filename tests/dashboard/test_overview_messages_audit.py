"""Overview, Message logs and Audit tabs: pages, partials, filters, pagination, permissions."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditLog
from audit.services import record
from brikk.dashboard.pagination import OLDER, decode_cursor, encode_cursor, paginate
from coordination.models import MessageLog
from tests.dashboard.conftest import htmx


@pytest.fixture
def pair(org, owner, make_agent):
    return make_agent(org, name="sender", owner=owner).agent, make_agent(org, name="receiver", owner=owner).agent


def age(message, **delta):
    MessageLog.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(**delta))


# --- Overview -------------------------------------------------------------------------------------


def test_overview_counts_agents_and_echoes_by_outcome(owner_client, org, pair, make_message, make_agent):
    sender, receiver = pair
    make_agent(org, name="idle-one", status="idle")
    make_message(org, sender, receiver, status="delivered")
    make_message(org, sender, receiver, status="failed")
    age(make_message(org, sender, receiver, status="delivered"), hours=3)
    age(make_message(org, sender, receiver, status="rejected"), days=2)  # outside both windows
    response = owner_client.get("/")
    context = response.context
    assert context["agent_counts"]["total"] == 3 and context["agent_counts"]["idle"] == 1
    (_, hour), (_, day) = context["echo_windows"]
    assert (hour["total"], hour["delivered"], hour["failed"]) == (2, 1, 1)
    assert (day["total"], day["delivered"], day["rejected"]) == (3, 2, 0)
    body = response.content.decode()
    assert 'data-testid="agents-total">3<' in body
    assert "sender → receiver" in body


def test_overview_recent_activity_is_for_admins_only(owner_client, member_client, pair):
    assert "Recent activity" in owner_client.get("/").content.decode()
    body = member_client.get("/").content.decode()
    assert "Recent activity" not in body and ">Audit<" not in body


def test_overview_empty_state(owner_client):
    assert "No messages yet." in owner_client.get("/").content.decode()


def test_overview_says_its_refresh_interval_in_words(owner_client, settings):
    settings.BRIKK_DASHBOARD_POLL_SECONDS = 5
    assert "refreshed every 5 seconds while" in owner_client.get("/").content.decode()
    settings.BRIKK_DASHBOARD_POLL_SECONDS = 60
    assert "refreshed every 1 minute while" in owner_client.get("/").content.decode()


def test_overview_partial_and_live_fragment(owner_client, org, pair, make_message):
    partial = htmx(owner_client, "/").content.decode()
    assert "<html" not in partial and "<title>Overview · Brikk</title>" in partial
    make_message(org, *pair)
    live = htmx(owner_client, reverse("dashboard:overview-live"))
    body = live.content.decode()
    assert body.lstrip().startswith('<div id="overview-live"')
    assert 'hx-trigger="brikk-poll"' in body and 'hx-swap="outerHTML"' in body
    assert 'data-testid="echoes-1-total">1<' in body


def test_overview_is_scoped_to_the_organization(owner_client, other_org, other_agent, make_message):
    make_message(other_org, other_agent, other_agent)
    response = owner_client.get("/")
    assert response.context["agent_counts"]["total"] == 0
    assert response.context["echo_windows"][1][1]["total"] == 0


# --- Message logs ---------------------------------------------------------------------------------


def test_message_list_filters_by_agent_status_type_and_time(member_client, org, pair, make_message, make_agent):
    sender, receiver = pair
    third = make_agent(org, name="third").agent
    delivered = make_message(org, sender, receiver, status="delivered", type="message")
    failed = make_message(org, receiver, sender, status="failed", type="event", error="boom: recipient down")
    other = make_message(org, third, third, status="delivered", type="command")
    old = make_message(org, sender, receiver)
    age(old, days=3)

    def ids(query):
        response = member_client.get(reverse("dashboard:messages") + query)
        assert response.status_code == 200
        return {message.pk for message in response.context["page"].items}

    assert ids("") == {delivered.pk, failed.pk, other.pk, old.pk}
    assert ids(f"?agent={third.pk}") == {other.pk}
    assert ids("?status=failed") == {failed.pk}
    assert ids("?type=event") == {failed.pk}
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert ids(f"?since={since}&agent={sender.pk}") == {delivered.pk, failed.pk}
    assert ids("?q=recipient+down") == {failed.pk}
    assert ids(f"?q={delivered.message_id}") == {delivered.pk}
    assert ids(f"?q={failed.pk}") == {failed.pk}


def test_message_list_shows_filter_errors_instead_of_failing(member_client, pair):
    response = member_client.get(reverse("dashboard:messages") + "?agent=not-a-uuid&since=yesterday")
    assert response.status_code == 200
    body = response.content.decode()
    assert "alert-danger" in body and "agent" in body


def test_message_list_empty_states(member_client, org, pair, make_message):
    assert "No messages yet" in member_client.get(reverse("dashboard:messages")).content.decode()
    make_message(org, *pair)
    assert "No messages match" in member_client.get(reverse("dashboard:messages") + "?status=failed").content.decode()


def test_message_rows_partial_polls_with_the_same_filters(member_client, org, pair, make_message):
    make_message(org, *pair, status="failed")
    make_message(org, *pair, status="delivered")
    response = htmx(member_client, reverse("dashboard:message-rows") + "?status=failed")
    body = response.content.decode()
    assert "<html" not in body and "<title>" not in body
    assert body.count("badge-danger") == 1 and "badge-success" not in body
    assert "/messages/rows/?status=failed" in body and "data-poll-seconds" in body


def test_message_table_stops_polling_on_older_pages(member_client, org, pair, make_message):
    for _ in range(3):
        make_message(org, *pair)
    first = paginate(MessageLog.objects.all(), size=2)
    body = member_client.get(reverse("dashboard:messages") + f"?cursor={first.older_cursor}").content.decode()
    assert "hx-trigger" not in body.split('id="message-table"')[1].split(">")[0]


def test_message_detail_shows_bodies_and_links(member_client, org, pair, make_message):
    message = make_message(org, *pair, request_body={"payload": {"ping": 1}}, response_body={"echo": {"ping": 1}})
    response = member_client.get(reverse("dashboard:message-detail", args=[message.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "&quot;ping&quot;: 1" in body and "&quot;echo&quot;" in body
    assert reverse("dashboard:agent-detail", args=[pair[0].pk]) in body
    partial = htmx(member_client, reverse("dashboard:message-detail", args=[message.pk])).content.decode()
    assert "<html" not in partial and "Request body" in partial


def test_another_organizations_message_is_not_found(owner_client, other_org, other_agent, make_message):
    message = make_message(other_org, other_agent, other_agent)
    assert owner_client.get(reverse("dashboard:message-detail", args=[message.pk])).status_code == 404
    assert owner_client.get(reverse("dashboard:messages")).context["page"].items == []


# --- Keyset pagination ----------------------------------------------------------------------------


def test_cursor_round_trip_and_garbage():
    now = timezone.now()
    assert decode_cursor(encode_cursor(now, "abc")) == (now, "abc")
    assert decode_cursor("%%%") is None
    assert decode_cursor(encode_cursor(now, "x")[:-3] + "!!") is None


def test_pagination_walks_every_row_once_both_ways_with_equal_timestamps(org, pair, make_message):
    stamp = timezone.now()
    made = [make_message(org, *pair) for _ in range(7)]
    # Ties on created_at are broken by id.
    MessageLog.objects.filter(pk__in=[m.pk for m in made[:4]]).update(created_at=stamp)
    queryset = MessageLog.objects.filter(organization=org)
    expected = list(queryset.order_by("-created_at", "-id").values_list("pk", flat=True))

    pages, page = [], paginate(queryset, size=3)
    assert page.is_first
    pages.append(page)
    while page.older_cursor:
        page = paginate(queryset, cursor=page.older_cursor, direction=OLDER, size=3)
        pages.append(page)
    walked = [m.pk for p in pages for m in p.items]
    assert walked == expected
    assert [len(p.items) for p in pages] == [3, 3, 1]

    back = paginate(queryset, cursor=pages[2].newer_cursor, direction="newer", size=3)
    assert [m.pk for m in back.items] == [m.pk for m in pages[1].items]
    first = paginate(queryset, cursor=back.newer_cursor, direction="newer", size=3)
    assert [m.pk for m in first.items] == [m.pk for m in pages[0].items]
    assert first.newer_cursor is None


def test_pages_use_no_offset_and_no_count(member_client, org, pair, make_message):
    for _ in range(60):
        make_message(org, *pair)
    first = member_client.get(reverse("dashboard:messages"))
    assert len(first.context["page"].items) == 50
    cursor = first.context["page"].older_cursor
    with CaptureQueriesContext(connection) as queries:
        second = member_client.get(reverse("dashboard:messages") + f"?cursor={cursor}")
    assert len(second.context["page"].items) == 10
    sql = " ".join(query["sql"].upper() for query in queries.captured_queries)
    assert "OFFSET" not in sql and "COUNT(" not in sql
    assert '"CREATED_AT" <' in sql


def test_a_bad_cursor_shows_the_first_page(member_client, org, pair, make_message):
    make_message(org, *pair)
    response = member_client.get(reverse("dashboard:messages") + "?cursor=garbage")
    assert response.status_code == 200 and len(response.context["page"].items) == 1


# --- Audit ----------------------------------------------------------------------------------------


def test_audit_is_for_owners_and_admins(owner_client, org_admin_client, member_client):
    assert owner_client.get(reverse("dashboard:audit")).status_code == 200
    assert org_admin_client.get(reverse("dashboard:audit")).status_code == 200
    response = member_client.get(reverse("dashboard:audit"))
    assert response.status_code == 403
    assert "owners and admins" in response.content.decode()
    assert htmx(member_client, reverse("dashboard:audit")).status_code == 403


def test_audit_lists_the_organizations_trail_with_links(owner_client, org, other_org, pair, make_message):
    message = make_message(org, *pair)
    record("echo.delivered", organization_id=org.pk, resource_kind="message", resource_id=message.pk)
    record("agent.updated", organization_id=other_org.pk)
    response = owner_client.get(reverse("dashboard:audit"))
    body = response.content.decode()
    actions = [entry.action for entry in response.context["page"].items]
    assert "agent.updated" not in actions
    assert actions.count("agent.created") == 2
    assert reverse("dashboard:agent-detail", args=[pair[0].pk]) in body
    assert reverse("dashboard:message-detail", args=[message.pk]) in body


def test_audit_names_the_actors_in_a_fixed_number_of_queries(
    owner_client, owner, org, pair, django_assert_max_num_queries
):
    for _ in range(5):
        record("key.rotated", organization_id=org.pk, actor_kind="user", actor_id=owner.pk)
        record("echo.delivered", organization_id=org.pk, actor_kind="agent", actor_id=pair[0].pk)
    record("key.revoked", organization_id=org.pk, actor_kind="agent", actor_id="not-a-uuid")
    with django_assert_max_num_queries(12):
        response = owner_client.get(reverse("dashboard:audit"))
    body = response.content.decode()
    assert f"<strong>{owner.username}</strong>" in body
    assert f"<strong>{pair[0].name}</strong>" in body
    assert "not-a-uuid" in body


def test_audit_filters(owner_client, org, pair):
    record("auth.failed", outcome=AuditLog.Outcome.DENIED, organization_id=org.pk, resource_id="r-1")
    record("permission.denied", outcome=AuditLog.Outcome.DENIED, organization_id=org.pk)
    record("key.revoked", organization_id=org.pk, actor_kind="agent", actor_id="agent-1")
    old = record("key.rotated", organization_id=org.pk)
    AuditLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=5))

    def actions(query):
        response = owner_client.get(reverse("dashboard:audit") + query)
        assert response.status_code == 200
        return sorted(entry.action for entry in response.context["page"].items)

    assert actions("?outcome=denied") == ["auth.failed", "permission.denied"]
    assert actions("?action=agent.") == ["agent.created", "agent.created"]
    assert actions("?q=r-1") == ["auth.failed"]
    assert actions("?actor_kind=agent") == ["key.revoked"]
    assert actions("?actor_kind=agent&action=agent.") == []
    until = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert actions(f"?until={until}") == ["key.rotated"]
    assert "No audit rows match" in owner_client.get(reverse("dashboard:audit") + "?action=zzz").content.decode()


def test_the_echo_tab_tells_a_member_that_sending_needs_owner_or_admin(member_client, owner_client, pair):
    from django.urls import reverse

    assert 'data-testid="echo-members-read"' in member_client.get(reverse("dashboard:echo")).content.decode()
    assert 'data-testid="echo-members-read"' not in owner_client.get(reverse("dashboard:echo")).content.decode()


# --- Issue 9: filters at their defaults, ids, JSON, times, error pages ------------------------------

DEFAULT_MESSAGE_FILTERS = "?q=&agent=&status=&type=&since=&until="
DEFAULT_AUDIT_FILTERS = "?q=&action=&outcome=&actor_kind=&since=&until="


def test_message_filters_at_their_defaults_filter_nothing(member_client, org, pair, make_message):
    delivered = make_message(org, *pair, status="delivered").pk
    failed = make_message(org, *pair, status="failed").pk
    for query, expected in (
        (DEFAULT_MESSAGE_FILTERS, {delivered, failed}),
        ("?status=", {delivered, failed}),
        ("?type=&status=+&agent=", {delivered, failed}),
        ("?status=failed&status=", {failed}),
    ):
        response = member_client.get(reverse("dashboard:messages") + query)
        body = response.content.decode()
        assert response.status_code == 200
        assert "Select a valid choice" not in body and "alert-danger" not in body, query
        assert {message.pk for message in response.context["page"].items} == expected, query
    # The defaults are no filter at all: no "Clear", and the live table polls the plain first page.
    body = member_client.get(reverse("dashboard:messages") + DEFAULT_MESSAGE_FILTERS).content.decode()
    assert ">Clear<" not in body and 'hx-get="/messages/rows/?"' in body
    rows = htmx(member_client, reverse("dashboard:message-rows") + DEFAULT_MESSAGE_FILTERS)
    assert rows.status_code == 200 and len(rows.context["page"].items) == 2


def test_audit_filters_at_their_defaults_filter_nothing(owner_client, org, pair):
    unfiltered = owner_client.get(reverse("dashboard:audit")).context["page"].items
    response = owner_client.get(reverse("dashboard:audit") + DEFAULT_AUDIT_FILTERS)
    body = response.content.decode()
    assert response.status_code == 200 and "alert-danger" not in body
    assert response.context["page"].items == unfiltered and len(unfiltered) >= 2
    assert ">Clear<" not in body


def test_an_invalid_filter_value_is_still_reported(member_client, pair):
    body = member_client.get(reverse("dashboard:messages") + "?status=bogus").content.decode()
    assert "Select a valid choice" in body


def test_message_rows_show_the_whole_id_and_open_on_click(member_client, org, pair, make_message):
    made = [make_message(org, *pair) for _ in range(3)]
    body = member_client.get(reverse("dashboard:messages")).content.decode()
    for message in made:
        assert f">{message.pk}</a>" in body  # whole: the first characters are the same time on every UUIDv7
    assert body.count("<tr data-row-link>") == 3 and body.count("data-row-target") == 3


def test_message_times_are_absolute_with_the_zone(member_client, org, pair, make_message):
    message = make_message(org, *pair)
    body = member_client.get(reverse("dashboard:messages")).content.decode()
    assert f">{message.created_at.strftime('%Y-%m-%d %H:%M:%S')} UTC</time>" in body
    detail = member_client.get(reverse("dashboard:message-detail", args=[message.pk])).content.decode()
    assert f">{message.received_at.strftime('%Y-%m-%d %H:%M:%S')} UTC</time>" in detail
    assert f"<title>Message {message.pk} · Brikk</title>" in detail


def test_message_bodies_are_indented_json(member_client, org, pair, make_message):
    message = make_message(
        org, *pair, status="accepted", request_body={"payload": {"ok": True, "none": None}}, response_body=None
    )
    body = member_client.get(reverse("dashboard:message-detail", args=[message.pk])).content.decode()
    assert "&quot;ok&quot;: true" in body and "&quot;none&quot;: null" in body
    assert "No response yet." in body


def test_audit_details_are_json_and_ids_are_told_apart(owner_client, org, pair):
    # Two UUIDv7 message ids of the same millisecond: the same first characters, different ends.
    ids = ["0196a3c2-7b1e-7c3d-9a4b-1f2e3d4c5b6a", "0196a3c2-7b1e-7f00-8123-abcdefabcdef"]
    for resource_id in ids:
        record(
            "echo.delivered",
            organization_id=org.pk,
            resource_kind="message",
            resource_id=resource_id,
            details={"retry": False, "error": None, "fields": ["a"]},
        )
    body = owner_client.get(reverse("dashboard:audit")).content.decode()
    assert "&quot;retry&quot;: false" in body and "&quot;error&quot;: null" in body
    assert "False" not in body and "&#x27;retry&#x27;" not in body
    assert 'title="0196a3c2-7b1e-7c3d-9a4b-1f2e3d4c5b6a">…1f2e3d4c5b6a</span>' in body
    assert 'title="0196a3c2-7b1e-7f00-8123-abcdefabcdef">…abcdefabcdef</span>' in body
    assert "0196a3c2-7b1…" not in body  # the old cut: the same for both
    assert ">Time<" in body and " UTC</time>" in body


def test_the_403_page_keeps_the_header_and_the_tabs(member_client, member):
    response = member_client.get(reverse("dashboard:audit"))
    body = response.content.decode()
    assert response.status_code == 403
    assert 'class="topbar"' in body and 'id="tabs"' in body and "Log out" in body
    assert f">{member.username} <span" in body or member.username in body
    assert "owners and admins" in body


def test_the_404_page_keeps_the_header_and_the_tabs(member_client, other_agent):
    for url in (reverse("dashboard:agent-detail", args=[other_agent.pk]), "/no-such-page/"):
        response = member_client.get(url)
        body = response.content.decode()
        assert response.status_code == 404
        assert 'class="topbar"' in body and 'id="tabs"' in body, url


def test_error_pages_for_anonymous_visitors_have_no_tabs(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and 'id="tabs"' not in response.content.decode()
