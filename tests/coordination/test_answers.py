"""A delivered message's answer is not stored: it is built again from its row (coordination/answers.py), and is
the same answer the sender got, however its delivery went on afterwards."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import services as agent_services
from coordination import inbox
from coordination.answers import answer_of
from coordination.models import MessageLog
from tests.support.coordination import envelope, post_echo

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def _detail(api_client, key, message_id) -> dict:
    response = api_client.get(f"/api/v1/coordination/messages/{message_id}", HTTP_X_BRIKK_KEY=key)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_replay_answers_what_the_echo_answered_after_its_delivery_went_on(api_client, new_agent, peer):
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    body = envelope(new_agent.agent, peer.agent, ttl_ms=60_000, payload={"n": 1.5, "text": "ü", "none": None})
    first = post_echo(api_client, body, key=key, secret=secret)
    assert first.status_code == 200, first.content
    answer = first.json()
    message = MessageLog.objects.get(pk=answer["id"])
    assert message.response_body is None  # not stored: the row holds every part of it

    # Received, acknowledged, then redriven: its inbox entry is not what it was when answered.
    (leased,) = inbox.receive(peer.agent.pk, peer.agent.organization_id, max_messages=1, lease_seconds=30)
    inbox.ack(peer.agent.pk, [leased["receipt"]])
    later = timezone.now() + timedelta(minutes=5)
    inbox.requeue([(message.pk, message.request_body)], now=later)
    message.refresh_from_db()
    assert message.delivery_state == "queued" and message.expires_at == later + timedelta(milliseconds=60_000)

    replay = post_echo(api_client, body, key=key, secret=secret)
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == answer
    assert answer["delivery"] == {
        "state": "queued",
        "delivery_count": 0,
        "first_received_at": None,
        "acked_at": None,
        "dead_reason": None,
        "expires_at": (message.received_at + timedelta(milliseconds=60_000)).isoformat().replace("+00:00", "Z"),
    }
    # The message's page shows the same answer, and its delivery as it is now.
    detail = _detail(api_client, key, answer["id"])
    assert detail["response_body"] == answer and detail["delivery"]["state"] == "queued"


def test_a_users_echo_is_answered_again_with_the_user(api_client, owner, new_agent, peer):
    token = api_client.post(
        "/api/v1/auth/token/", {"username": "owner", "password": "correct-horse-battery"}, format="json"
    ).json()["access"]
    body = envelope(new_agent.agent, peer.agent)
    first = post_echo(api_client, body, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert first.status_code == 200, first.content
    assert first.json()["auth"]["user_id"] == str(owner.pk)
    replay = post_echo(api_client, body, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()


def test_an_answer_stored_before_is_answered_as_stored(api_client, new_agent, peer):
    key = new_agent.key.plaintext
    body = envelope(new_agent.agent, peer.agent)
    answer = post_echo(api_client, body, key=key).json()
    stored = {**answer, "stored": True}  # as rows written before answers were built again kept it
    MessageLog.objects.filter(pk=answer["id"]).update(response_body=stored)
    replay = post_echo(api_client, body, key=key)
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == stored
    assert _detail(api_client, key, answer["id"])["response_body"] == stored


def test_messages_not_delivered_have_only_what_was_stored(api_client, new_agent, peer, settings):
    key = new_agent.key.plaintext
    settings.CELERY_TASK_ALWAYS_EAGER = False  # accepted, not processed: not answered yet
    accepted = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, HTTP_PREFER="respond-async")
    assert accepted.status_code == 202
    assert answer_of(MessageLog.objects.get(pk=accepted.json()["id"])) is None
    assert _detail(api_client, key, accepted.json()["id"])["response_body"] is None

    refused = post_echo(api_client, envelope(new_agent.agent, peer.agent, type="nope"), key=key)
    assert refused.status_code == 422
    rejected = MessageLog.objects.get(status="rejected")
    assert answer_of(rejected) == rejected.response_body and rejected.response_body["code"] == "validation_error"
