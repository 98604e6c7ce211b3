"""Delivery in the dashboard: inbox counts per agent, an agent's inbox and dead letters with redrive (owners and
admins), and a message's delivery timeline and replies."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditLog
from brikk.dashboard import queries
from coordination import inbox
from coordination.leasing import Consumer
from coordination.models import MessageLog
from tests.dashboard.conftest import htmx
from tests.support.inbox import queue_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(org, owner, make_agent):
    return make_agent(org, name="sender", owner=owner).agent, make_agent(org, name="receiver", owner=owner).agent


def dead(messages, reason=MessageLog.DeadReason.EXPIRED, count=3):
    """Dead-letter these messages as the sweep does (its fields), without waiting for their ttl."""
    MessageLog.objects.filter(pk__in=[m.pk for m in messages]).update(
        delivery_state=MessageLog.Delivery.DEAD, dead_reason=reason, dead_at=timezone.now(), delivery_count=count
    )
    return [MessageLog.objects.get(pk=m.pk) for m in messages]


def lease(agent, seconds=30, now=None, name="worker-1"):
    return inbox.receive(
        agent.pk, agent.organization_id, max_messages=1, lease_seconds=seconds, consumer=Consumer(name=name), now=now
    )


# --- Counts per agent -----------------------------------------------------------------------------


def test_the_agents_table_counts_queued_in_flight_and_dead_per_agent(member_client, pair):
    sender, receiver = pair
    queue_messages(sender, receiver, 3)
    lease(receiver)
    dead(queue_messages(sender, receiver, 2))
    queue_messages(receiver, sender, 1)
    acked = queue_messages(receiver, sender, 1)
    MessageLog.objects.filter(pk=acked[0].pk).update(delivery_state=MessageLog.Delivery.ACKED)
    rows = {row.agent.name: row.inbox for row in member_client.get(reverse("dashboard:agents")).context["rows"]}
    assert rows["receiver"] == queries.InboxCounts(queued=2, leased=1, dead=2)
    assert rows["sender"] == queries.InboxCounts(queued=1, leased=0, dead=0)  # acked ones are not counted
    body = htmx(member_client, reverse("dashboard:agent-table")).content.decode()
    assert 'data-testid="dead"><span class="num-danger">2<' in body


def test_inbox_counts_are_one_query_whatever_the_number_of_agents(member_client, org, owner, make_agent):
    def agents_page_queries():
        with CaptureQueriesContext(connection) as captured:
            assert member_client.get(reverse("dashboard:agent-table"), HTTP_HX_REQUEST="true").status_code == 200
        return [query["sql"] for query in captured.captured_queries]

    hub = make_agent(org, name="hub", owner=owner).agent
    for n in range(2):
        dead(queue_messages(hub, make_agent(org, name=f"a{n}", owner=owner).agent, 2))
    few = agents_page_queries()
    for n in range(2, 8):
        queue_messages(hub, make_agent(org, name=f"a{n}", owner=owner).agent, 2)
    many = agents_page_queries()
    assert len(many) == len(few)  # no query per agent
    inbox_queries = [sql for sql in many if "coordination_messagelog" in sql]
    assert len(inbox_queries) == 1 and "GROUP BY" in inbox_queries[0]
    rows = {row.agent.name: row.inbox for row in queries.agent_rows(org.pk)}
    assert rows["a1"].dead == 2 and rows["a7"].queued == 2 and rows["hub"] == queries.InboxCounts()


def test_counts_are_scoped_to_the_organization(owner_client, org, other_org, other_agent, make_agent):
    dead(queue_messages(other_agent, other_agent, 2))
    assert queries.inbox_counts(org.pk) == {}
    assert queries.inbox_counts(other_org.pk)[other_agent.pk].dead == 2


# --- An agent's inbox and dead letters --------------------------------------------------------------


def test_the_agent_page_shows_its_inbox_oldest_first_and_its_dead_letters(member_client, pair):
    sender, receiver = pair
    now = timezone.now()
    waiting = queue_messages(sender, receiver, 3, now=now - timedelta(minutes=5))
    lease(receiver, seconds=1, now=now - timedelta(minutes=5))  # the oldest: its lease ran out long ago
    letters = dead(queue_messages(sender, receiver, 2), reason=MessageLog.DeadReason.MAX_DELIVERIES, count=10)
    response = member_client.get(reverse("dashboard:agent-detail", args=[receiver.pk]))
    context = response.context
    assert [m.pk for m in context["waiting"]] == [m.pk for m in waiting]
    assert context["waiting"][0].lease_ran_out and not context["waiting"][1].lease_ran_out
    assert {m.pk for m in context["dead_letters"]} == {m.pk for m in letters}
    body = response.content.decode()
    assert 'data-testid="inbox-counts">2 queued · 1 in flight · 2 dead<' in body
    assert "lease ran out" in body and "5\xa0minutes ago" in body
    assert "Max deliveries" in body and "out of deliveries" in body
    # The panel is live, and a member sees no redrive control.
    assert f'hx-get="{reverse("dashboard:agent-inbox", args=[receiver.pk])}" hx-trigger="brikk-poll"' in body
    assert "Redrive" not in body and reverse("dashboard:agent-redrive", args=[receiver.pk]) not in body


def test_the_inbox_panel_polls_and_is_capped(member_client, pair, monkeypatch):
    sender, receiver = pair
    monkeypatch.setattr(queries, "INBOX_SHOWN", 2)
    queue_messages(sender, receiver, 3)
    response = htmx(member_client, reverse("dashboard:agent-inbox", args=[receiver.pk]))
    body = response.content.decode()
    assert "<title>" not in body and 'id="agent-inbox"' in body
    assert "no-store" in response["Cache-Control"]
    assert len(response.context["waiting"]) == 2 and "The oldest 2 of 3 waiting messages." in body


def test_owners_and_admins_see_redrive_buttons(owner_client, org_admin_client, pair):
    sender, receiver = pair
    (letter,) = dead(queue_messages(sender, receiver, 1))
    for client in (owner_client, org_admin_client):
        body = client.get(reverse("dashboard:agent-detail", args=[receiver.pk])).content.decode()
        assert f'aria-label="Redrive message {letter.pk}"' in body
        assert "Redrive all shown (1)" in body
        assert f'hx-post="{reverse("dashboard:agent-redrive", args=[receiver.pk])}"' in body


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_redrive_puts_dead_letters_back_audits_them_and_refreshes_the_panel(role, owner, org_admin, login, pair, org):
    user = owner if role == "owner" else org_admin
    client = login(user)
    sender, receiver = pair
    letters = dead(queue_messages(sender, receiver, 3))
    url = reverse("dashboard:agent-redrive", args=[receiver.pk])
    response = client.post(url, {"ids": [str(letters[0].pk), str(letters[1].pk)]}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    states = dict(MessageLog.objects.values_list("pk", "delivery_state"))
    assert [states[m.pk] for m in letters] == ["queued", "queued", "dead"]
    redriven = MessageLog.objects.get(pk=letters[0].pk)
    assert redriven.delivery_count == 0 and redriven.dead_reason == "" and redriven.expires_at > timezone.now()
    audits = AuditLog.objects.filter(action="message.redriven", organization=org)
    assert set(audits.values_list("resource_id", flat=True)) == {str(letters[0].pk), str(letters[1].pk)}
    assert set(audits.values_list("actor_id", flat=True)) == {str(user.pk)}
    body = response.content.decode()
    assert 'id="agent-inbox"' in body and 'hx-swap-oob="innerHTML"' in body
    assert "Sent 2 dead letters back to the inbox of receiver." in body and "flash-success" in body
    assert 'data-testid="inbox-counts">2 queued · 0 in flight · 1 dead<' in body
    # Redriving the same again changes nothing and says so.
    again = client.post(url, {"ids": [str(letters[0].pk)]}, HTTP_HX_REQUEST="true").content.decode()
    assert "Nothing was redriven" in again and "flash-info" in again and audits.count() == 2


def test_a_plain_form_post_redirects_with_a_flash(owner_client, pair):
    sender, receiver = pair
    (letter,) = dead(queue_messages(sender, receiver, 1))
    url = reverse("dashboard:agent-redrive", args=[receiver.pk])
    response = owner_client.post(url, {"ids": [str(letter.pk)]}, follow=True)
    assert response.redirect_chain == [(reverse("dashboard:agent-detail", args=[receiver.pk]), 302)]
    assert "Sent 1 dead letter back to the inbox of receiver." in response.content.decode()
    assert MessageLog.objects.get(pk=letter.pk).delivery_state == "queued"


def test_a_member_cannot_redrive_even_with_a_forged_post(member_client, pair):
    sender, receiver = pair
    (letter,) = dead(queue_messages(sender, receiver, 1))
    url = reverse("dashboard:agent-redrive", args=[receiver.pk])
    assert member_client.post(url, {"ids": [str(letter.pk)]}, HTTP_HX_REQUEST="true").status_code == 403
    assert MessageLog.objects.get(pk=letter.pk).delivery_state == "dead"
    assert not AuditLog.objects.filter(action="message.redriven").exists()


def test_redrive_needs_the_csrf_token(owner, pair):
    sender, receiver = pair
    (letter,) = dead(queue_messages(sender, receiver, 1))
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(reverse("dashboard:agent-redrive", args=[receiver.pk]), {"ids": [str(letter.pk)]})
    assert response.status_code == 403
    assert MessageLog.objects.get(pk=letter.pk).delivery_state == "dead"


def test_redrive_touches_only_this_agents_dead_letters(owner_client, pair, other_agent):
    sender, receiver = pair
    (mine,) = dead(queue_messages(sender, receiver, 1))
    (to_sender,) = dead(queue_messages(receiver, sender, 1))  # the same organization, another recipient
    (theirs,) = dead(queue_messages(other_agent, other_agent, 1))
    url = reverse("dashboard:agent-redrive", args=[receiver.pk])
    ids = [str(mine.pk), str(to_sender.pk), str(theirs.pk)]
    assert owner_client.post(url, {"ids": ids}, HTTP_HX_REQUEST="true").status_code == 200
    states = dict(MessageLog.objects.values_list("pk", "delivery_state"))
    assert (states[mine.pk], states[to_sender.pk], states[theirs.pk]) == ("queued", "dead", "dead")


def test_bad_redrive_requests_are_said_and_change_nothing(owner_client, pair):
    sender, receiver = pair
    (letter,) = dead(queue_messages(sender, receiver, 1))
    url = reverse("dashboard:agent-redrive", args=[receiver.pk])
    for data, text in (({"ids": ["nope"]}, "Not a message id."), ({}, "Choose the dead letters to redrive.")):
        body = owner_client.post(url, data, HTTP_HX_REQUEST="true").content.decode()
        assert text in body and "flash-error" in body
    assert MessageLog.objects.get(pk=letter.pk).delivery_state == "dead"


def test_another_organizations_agent_is_not_found(owner_client, other_agent):
    (letter,) = dead(queue_messages(other_agent, other_agent, 1))
    assert owner_client.get(reverse("dashboard:agent-inbox", args=[other_agent.pk])).status_code == 404
    url = reverse("dashboard:agent-redrive", args=[other_agent.pk])
    assert owner_client.post(url, {"ids": [str(letter.pk)]}).status_code == 404
    assert MessageLog.objects.get(pk=letter.pk).delivery_state == "dead"


# --- A message's delivery timeline and replies -----------------------------------------------------


def test_the_timeline_shows_each_lease_its_consumer_and_how_it_ended(member_client, pair):
    sender, receiver = pair
    start = timezone.now() - timedelta(minutes=10)
    (message,) = queue_messages(sender, receiver, 1, now=start)
    lease(receiver, seconds=5, now=start + timedelta(seconds=1), name="10.0.0.7 worker-a")  # runs out
    (item,) = lease(receiver, seconds=60, now=start + timedelta(seconds=30), name="10.0.0.8 worker-b")
    inbox.ack(receiver.pk, [item["receipt"]], now=start + timedelta(seconds=31))
    url = reverse("dashboard:message-detail", args=[message.pk])
    response = member_client.get(url)
    kinds = [event.kind for event in response.context["timeline"]]
    assert kinds == ["accepted", "lease", "lease", "acked"]
    first, second = response.context["timeline"][1:3]
    assert first.lease_ran_out and first.attempt.consumer == "10.0.0.7 worker-a"
    assert second.attempt.outcome == "acked" and not second.lease_ran_out
    body = response.content.decode()
    assert "10.0.0.7 worker-a" in body and "lease ran out: no ack in time" in body
    assert "Lease 2" in body and "10.0.0.8 worker-b" in body and "Acked</strong> by receiver" in body
    assert "delivered: its recipient acked it; 2 deliveries counted." in body
    # Acked: the panel stops polling.
    assert reverse("dashboard:message-delivery", args=[message.pk]) not in body


def test_the_timeline_is_live_while_the_message_waits(member_client, pair):
    sender, receiver = pair
    (message,) = queue_messages(sender, receiver, 1)
    lease(receiver, seconds=600)
    live_url = reverse("dashboard:message-delivery", args=[message.pk])
    body = member_client.get(reverse("dashboard:message-detail", args=[message.pk])).content.decode()
    assert f'hx-get="{live_url}" hx-trigger="brikk-poll"' in body
    assert "held now, no ack yet" in body and "Expires</strong> unless acked" in body
    response = htmx(member_client, live_url)
    assert "<title>" not in response.content.decode() and "no-store" in response["Cache-Control"]
    assert [event.kind for event in response.context["timeline"]] == ["accepted", "lease", "expires"]


def test_a_dead_letter_shows_why(member_client, pair):
    sender, receiver = pair
    (message,) = dead(queue_messages(sender, receiver, 1), reason=MessageLog.DeadReason.EXPIRED)
    response = member_client.get(reverse("dashboard:message-detail", args=[message.pk]))
    assert [event.kind for event in response.context["timeline"]] == ["accepted", "dead"]
    body = response.content.decode()
    assert "Dead-lettered</strong>: expired: its time to live ran out before an ack" in body
    assert not response.context["live"]


def test_refused_messages_have_no_timeline(member_client, org, pair, make_message):
    message = make_message(org, *pair, status="rejected")
    response = member_client.get(reverse("dashboard:message-detail", args=[message.pk]))
    assert response.context["timeline"] == []
    assert "a rejected message never enters an inbox" in response.content.decode()


def test_replies_and_the_original_link_to_each_other(member_client, org, pair, make_message, other_org, other_agent):
    sender, receiver = pair
    (original,) = queue_messages(sender, receiver, 1)
    replies = [make_message(org, receiver, sender, in_reply_to=original) for _ in range(2)]
    stray = make_message(other_org, other_agent, other_agent, in_reply_to=original)  # never shown
    body = member_client.get(reverse("dashboard:message-detail", args=[original.pk])).content.decode()
    for reply in replies:
        assert reverse("dashboard:message-detail", args=[reply.pk]) in body
    assert reverse("dashboard:message-detail", args=[stray.pk]) not in body
    reply_page = member_client.get(reverse("dashboard:message-detail", args=[replies[0].pk]))
    assert reply_page.context["original"] == original
    assert reverse("dashboard:message-detail", args=[original.pk]) in reply_page.content.decode()
    # A message of another organization never links to this one (nor this one to it).
    assert member_client.get(reverse("dashboard:message-detail", args=[stray.pk])).status_code == 404
    assert (
        "No replies." in member_client.get(reverse("dashboard:message-detail", args=[replies[1].pk])).content.decode()
    )


def test_another_organizations_message_delivery_is_not_found(member_client, other_agent):
    (message,) = queue_messages(other_agent, other_agent, 1)
    assert member_client.get(reverse("dashboard:message-delivery", args=[message.pk])).status_code == 404


def test_the_overview_totals_the_organizations_inboxes(member_client, pair, other_agent):
    sender, receiver = pair
    queue_messages(sender, receiver, 2)
    lease(receiver)
    dead(queue_messages(receiver, sender, 3))
    dead(queue_messages(other_agent, other_agent, 5))  # another organization's: not counted
    response = htmx(member_client, reverse("dashboard:overview-live"))
    assert response.context["inbox_totals"] == queries.InboxCounts(queued=1, leased=1, dead=3)
    assert response.context["agents_with_dead_letters"] == 1
    assert 'data-testid="inbox-dead">3<' in response.content.decode()
