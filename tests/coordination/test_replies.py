"""Replies: a message whose reply_to is the message_id of a message its sender received is linked to it
(``in_reply_to``, set by the echo's own INSERT), and the original's detail lists its replies. Runs on SQLite
(make test) and on PostgreSQL (make test-services)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from uuid6 import uuid7

from agents import services as agent_services
from agents.models import Membership
from audit import retention as audit_retention
from coordination import echo, inbox, processing
from coordination.models import REPLIES_SHOWN, IdempotencyRecord, MessageLog
from tests.support.coordination import envelope, post_echo
from tests.support.inbox import queue_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


@pytest.fixture
def third(org, owner):
    return agent_services.create_agent(org, name="gamma", owner=owner)


def send(client, sender, recipient, **fields):
    """An echo from ``sender`` (a NewAgent) to ``recipient``; its answer."""
    response = post_echo(client, envelope(sender.agent, recipient.agent, **fields), key=sender.key.plaintext)
    assert response.status_code == 200, response.content
    return response.json()


def detail(client, key, message_id):
    response = client.get(f"/api/v1/coordination/messages/{message_id}", HTTP_X_BRIKK_KEY=key)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_reply_is_linked_to_what_its_sender_received_and_listed_on_the_original(api_client, new_agent, peer):
    original = send(api_client, new_agent, peer)
    reply = send(api_client, peer, new_agent, reply_to=original["envelope"]["message_id"], type="result")

    stored = MessageLog.objects.get(pk=reply["id"])
    assert str(stored.in_reply_to_id) == original["id"]
    assert reply["envelope"]["reply_to"] == original["envelope"]["message_id"]  # the envelope as sent

    shown = detail(api_client, new_agent.key.plaintext, original["id"])
    assert shown["in_reply_to"] is None
    assert shown["replies"] == [
        {
            "id": reply["id"],
            "message_id": reply["envelope"]["message_id"],
            "type": "result",
            "sender_id": str(peer.agent.pk),
            "created_at": shown["replies"][0]["created_at"],
        }
    ]
    assert shown["replies"][0]["created_at"].startswith(str(stored.created_at.year))
    answered = detail(api_client, peer.key.plaintext, reply["id"])
    assert answered["in_reply_to"] == original["id"] and answered["replies"] == []


def test_a_reply_arrives_in_the_original_senders_inbox(api_client, new_agent, peer):
    original = send(api_client, new_agent, peer)
    (received,) = inbox.receive(peer.agent.pk, peer.agent.organization_id, max_messages=10, lease_seconds=30)
    assert received["id"] == original["id"]
    reply = send(api_client, peer, new_agent, reply_to=received["message_id"])

    (item,) = inbox.receive(new_agent.agent.pk, new_agent.agent.organization_id, max_messages=10, lease_seconds=30)
    assert item["id"] == reply["id"] and item["reply_to"] == original["envelope"]["message_id"]
    assert item["sender"] == {"agent_id": str(peer.agent.pk)}


def test_replies_are_listed_oldest_first_up_to_the_cap(api_client, new_agent, peer):
    original = send(api_client, new_agent, peer)
    replies = queue_messages(peer.agent, new_agent.agent, REPLIES_SHOWN + 1)
    MessageLog.objects.filter(pk__in=[reply.pk for reply in replies]).update(in_reply_to_id=original["id"])
    shown = detail(api_client, new_agent.key.plaintext, original["id"])["replies"]
    assert [item["id"] for item in shown] == [str(reply.pk) for reply in replies[:REPLIES_SHOWN]]


def test_no_link_when_the_reply_does_not_go_back_to_the_original_sender(api_client, new_agent, peer, third):
    original = send(api_client, new_agent, peer)
    message_id = original["envelope"]["message_id"]
    to_someone_else = send(api_client, peer, third, reply_to=message_id)  # peer received it, third did not send it
    own = send(api_client, new_agent, peer, reply_to=message_id)  # the sender never received its own message
    bystander = send(api_client, third, new_agent, reply_to=message_id)  # third never received it
    for answer in (to_someone_else, own, bystander):
        assert MessageLog.objects.get(pk=answer["id"]).in_reply_to_id is None
        assert answer["envelope"]["reply_to"] == message_id
    assert detail(api_client, new_agent.key.plaintext, original["id"])["replies"] == []


def test_no_link_across_organizations(api_client, new_agent, peer, make_org, make_user, make_agent):
    original = send(api_client, new_agent, peer)
    elsewhere = make_org("Elsewhere")
    stranger = make_user("stranger", elsewhere, Membership.Role.OWNER)
    far, far_peer = make_agent(elsewhere, owner=stranger), make_agent(elsewhere, owner=stranger)
    # The same message_id in another organization, between that organization's agents.
    mirrored = send(api_client, far_peer, far, message_id=original["envelope"]["message_id"])
    reply = send(api_client, far, far_peer, reply_to=original["envelope"]["message_id"])
    assert str(MessageLog.objects.get(pk=reply["id"]).in_reply_to_id) == mirrored["id"]  # its own organization's

    # The rule itself: even a row naming the same agents is not linked from another organization.
    (foreign,) = queue_messages(new_agent.agent, peer.agent, 1)
    MessageLog.objects.filter(pk=foreign.pk).update(organization_id=elsewhere.pk)
    link = echo.replied_message(peer.agent.organization_id, peer.agent.pk, new_agent.agent.pk, str(foreign.message_id))
    assert MessageLog.objects.filter(pk=foreign.pk).values_list(link, flat=True).get() is None
    same_org = echo.replied_message(elsewhere.pk, peer.agent.pk, new_agent.agent.pk, str(foreign.message_id))
    assert MessageLog.objects.filter(pk=foreign.pk).values_list(same_org, flat=True).get() == foreign.pk


@pytest.mark.parametrize("reply_to", ["not-a-uuid", str(uuid7()), "inbox:42"])
def test_a_reply_to_that_matches_nothing_is_kept_unlinked(api_client, new_agent, peer, reply_to):
    send(api_client, new_agent, peer)
    answer = send(api_client, peer, new_agent, reply_to=reply_to)
    assert answer["envelope"]["reply_to"] == reply_to
    stored = MessageLog.objects.get(pk=answer["id"])
    assert stored.in_reply_to_id is None and stored.request_body["reply_to"] == reply_to


def test_a_refused_message_is_never_answered(api_client, new_agent, peer):
    (refused,) = queue_messages(new_agent.agent, peer.agent, 1)
    MessageLog.objects.filter(pk=refused.pk).update(status=MessageLog.Status.REJECTED, delivery_state="")
    answer = send(api_client, peer, new_agent, reply_to=str(refused.message_id))
    assert MessageLog.objects.get(pk=answer["id"]).in_reply_to_id is None


def test_an_async_reply_is_linked_when_accepted_and_processing_keeps_the_link(api_client, new_agent, peer, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    original = send(api_client, new_agent, peer)
    body = envelope(peer.agent, new_agent.agent, reply_to=original["envelope"]["message_id"])
    response = post_echo(api_client, body, key=peer.key.plaintext, HTTP_PREFER="respond-async")
    assert response.status_code == 202
    reply_id = response.json()["id"]
    assert str(MessageLog.objects.get(pk=reply_id).in_reply_to_id) == original["id"]
    processing.attempt(reply_id, final_attempt=False)
    delivered = MessageLog.objects.get(pk=reply_id)
    assert delivered.status == "delivered" and str(delivered.in_reply_to_id) == original["id"]


def test_after_the_insert_the_link_reads_as_its_value(new_agent, peer):
    """The INSERT evaluates the expression; the instance must not go on holding it (it would be read as a
    value by anything that touched the field later)."""
    (original,) = queue_messages(new_agent.agent, peer.agent, 1)
    reply = MessageLog(
        organization_id=peer.agent.organization_id,
        message_id=uuid7(),
        sender_id=peer.agent.pk,
        recipient_id=new_agent.agent.pk,
        status=MessageLog.Status.DELIVERED,
        received_at=timezone.now(),
        in_reply_to_id=echo.replied_message(
            peer.agent.organization_id, peer.agent.pk, new_agent.agent.pk, str(original.message_id)
        ),
    )
    echo._store(reply, None, status=200, body={})
    assert "in_reply_to_id" in reply.get_deferred_fields()
    assert reply.in_reply_to_id == original.pk  # loaded on first read
    assert reply.in_reply_to == original


def test_a_reply_costs_the_same_queries_as_a_plain_send(api_client, new_agent, peer):
    original = send(api_client, new_agent, peer)
    send(api_client, peer, new_agent)  # warm up the sender's key verification and caches
    with CaptureQueriesContext(connection) as plain:
        send(api_client, peer, new_agent)
    with CaptureQueriesContext(connection) as replying:
        reply = send(api_client, peer, new_agent, reply_to=original["envelope"]["message_id"])
    assert str(MessageLog.objects.get(pk=reply["id"]).in_reply_to_id) == original["id"]
    assert len(replying.captured_queries) == len(plain.captured_queries), [
        query["sql"][:120] for query in replying.captured_queries
    ]


def test_purging_an_original_unlinks_its_replies(api_client, new_agent, peer, tmp_path):
    original = send(api_client, new_agent, peer)
    reply = send(api_client, peer, new_agent, reply_to=original["envelope"]["message_id"])
    MessageLog.objects.filter(pk=original["id"]).update(
        delivery_state="acked", created_at=timezone.now() - timedelta(days=2)
    )
    # Its idempotency record expired long ago (while it lives, it replays the message's answer: kept).
    IdempotencyRecord.objects.filter(message_id=original["id"]).update(expires_at=timezone.now() - timedelta(days=1))
    report = audit_retention.run(["messages"], {"messages": timezone.now() - timedelta(days=1)}, tmp_path)
    assert report.deleted["messages"] == 1
    assert MessageLog.objects.get(pk=reply["id"]).in_reply_to_id is None
