"""Waiting consumers in process (Django's AsyncClient, ASGI mode): the long poll and the stream, woken by the
in-process announcement on SQLite and by PostgreSQL's NOTIFY on PostgreSQL. The real ASGI server runs in
tests/coordination/test_waiting_live.py."""

import asyncio
import json
import threading
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient
from django.utils import timezone

from agents import services as agent_services
from coordination import inbox, wakeup
from coordination.models import DeliveryAttempt, MessageLog
from tests.support.coordination import envelope, post_echo
from tests.support.inbox import queue_messages

pytestmark = pytest.mark.django_db(transaction=True)  # the waiters run on other threads: rows must commit


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


@pytest.fixture(autouse=True)
def listening(db):
    """On PostgreSQL the listener thread must be listening before a test's first commit, or the NOTIFY of
    that commit would be missed (in production the waiter re-checks after subscribing anyway)."""
    if wakeup.notifies_itself():
        wakeup.listener.ensure_running()
        assert wakeup.listener.listening.wait(10)


@pytest.fixture(autouse=True)
def test_client_connections_closed():
    """Django's AsyncClient runs a request's synchronous part on asgiref's one shared thread and, unlike a
    server, leaves its database connection open there; close it so the test database can be dropped."""
    yield
    asyncio.run(sync_to_async(connections.close_all)())


def receive_async(client: AsyncClient, key: str, **body):
    return client.post(
        "/api/v1/inbox/receive", json.dumps(body), content_type="application/json", headers={"X-Brikk-Key": key}
    )


def send_later(delay: float, sender, recipient, **envelope_fields) -> threading.Thread:
    """An echo from ``sender`` to ``recipient`` after ``delay`` seconds, from another thread (its own
    connection), as another agent's request would arrive."""
    from rest_framework.test import APIClient

    def send():
        time.sleep(delay)
        try:
            response = post_echo(
                APIClient(), envelope(sender.agent, recipient.agent, **envelope_fields), key=sender.key.plaintext
            )
            assert response.status_code == 200, response.content
        finally:
            connections.close_all()  # the test client leaves it open

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_long_poll_answers_at_once_when_a_message_is_waiting(new_agent, peer):
    queue_messages(new_agent.agent, peer.agent, 2)

    async def scenario():
        started = time.monotonic()
        response = await receive_async(AsyncClient(), peer.key.plaintext, wait_seconds=20)
        return response, time.monotonic() - started

    response, elapsed = asyncio.run(scenario())
    assert response.status_code == 200
    assert len(response.json()["messages"]) == 2
    assert elapsed < 5


def test_a_long_poll_with_nothing_to_receive_answers_empty_when_its_wait_ends(peer):
    async def scenario():
        started = time.monotonic()
        response = await receive_async(AsyncClient(), peer.key.plaintext, wait_seconds=1)
        return response, time.monotonic() - started

    response, elapsed = asyncio.run(scenario())
    assert response.status_code == 200
    assert response.json() == {"messages": []}
    assert 1.0 <= elapsed < 5
    assert wakeup.hub.count() == 0  # the waiter unsubscribed


def test_a_waiting_long_poll_is_woken_by_a_message_sent_meanwhile(new_agent, peer):
    async def scenario():
        sender = send_later(0.5, new_agent, peer, payload={"wake": "up"})
        started = time.monotonic()
        response = await receive_async(AsyncClient(), peer.key.plaintext, wait_seconds=20)
        elapsed = time.monotonic() - started
        await sync_to_async(sender.join, thread_sensitive=False)()
        return response, elapsed

    response, elapsed = asyncio.run(scenario())
    messages = response.json()["messages"]
    assert [item["payload"] for item in messages] == [{"wake": "up"}]
    assert elapsed < 10  # woken, not at the end of its 20 seconds
    attempt = DeliveryAttempt.objects.get(message_id=messages[0]["id"])
    assert attempt.kind == "receive" and attempt.consumer.startswith("receive ") and attempt.token


def test_a_waiting_long_poll_sleeps_until_a_nack_delay_ends(new_agent, peer):
    queue_messages(new_agent.agent, peer.agent, 1)
    [item] = inbox.receive(peer.agent.pk, peer.agent.organization_id, max_messages=1, lease_seconds=30)
    assert inbox.nack(peer.agent.pk, [item["receipt"]], delay_seconds=2)[0]["result"] == "ok"

    async def scenario():
        started = time.monotonic()
        response = await receive_async(AsyncClient(), peer.key.plaintext, wait_seconds=20)
        return response, time.monotonic() - started

    response, elapsed = asyncio.run(scenario())
    [again] = response.json()["messages"]
    assert again["id"] == item["id"] and again["delivery_count"] == 2
    assert 1.0 <= elapsed < 10  # not before the delay; woken when it ended, without a write
    outcomes = list(DeliveryAttempt.objects.filter(message_id=item["id"]).values_list("outcome", flat=True))
    assert outcomes == ["nacked", ""]


def test_a_long_poll_is_refused_like_any_bad_receive(peer):
    async def scenario():
        return await receive_async(AsyncClient(), peer.key.plaintext, wait_seconds=21)

    response = asyncio.run(scenario())
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error" and "wait_seconds" in response.json()["details"]


async def read_events(response, count: int, timeout: float = 10) -> list[dict]:
    """Parse ``count`` events (``event``, ``id``, ``data``) or comments from a streaming response."""
    items, buffer = [], ""
    content = aiter(response.streaming_content)
    async with asyncio.timeout(timeout):
        while len(items) < count:
            chunk = await anext(content)
            buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
            while "\n\n" in buffer and len(items) < count:
                block, buffer = buffer.split("\n\n", 1)
                item = {}
                for line in block.split("\n"):
                    field, _, value = line.partition(":")
                    item[field or "comment"] = value.lstrip(" ")
                items.append(item)
    return items


def open_stream(client: AsyncClient, key: str, query: str = "", **headers):
    path = "/api/v1/inbox/stream" + (f"?{query}" if query else "")
    return client.get(path, headers={"X-Brikk-Key": key, "Accept": "text/event-stream", **headers})


def test_the_stream_sends_each_message_as_an_event_as_soon_as_it_is_sent(new_agent, peer, settings):
    settings.BRIKK_STREAM_HEARTBEAT_SECONDS = 1

    async def scenario():
        response = await open_stream(AsyncClient(), peer.key.plaintext, "lease_seconds=60")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
        assert response["Cache-Control"] == "no-store"
        [hello] = await read_events(response, 1)
        assert hello["retry"] == "1000"
        sender = send_later(0.2, new_agent, peer, payload={"n": 1})
        events = await read_events(response, 1)
        await sync_to_async(sender.join, thread_sensitive=False)()
        heartbeat = await read_events(response, 1, timeout=5)
        await response.aclose() if hasattr(response, "aclose") else None
        return events, heartbeat

    [event], [heartbeat] = asyncio.run(scenario())
    assert event["event"] == "message"
    data = json.loads(event["data"])
    assert event["id"] == data["id"] and data["payload"] == {"n": 1} and data["delivery_count"] == 1
    assert data["receipt"].startswith(data["id"] + ":")
    leased = MessageLog.objects.get(pk=data["id"])
    assert leased.delivery_state == "leased"
    assert timedelta(seconds=55) < leased.leased_until - timezone.now() <= timedelta(seconds=60)
    assert DeliveryAttempt.objects.get(message_id=data["id"]).kind == "stream"
    assert heartbeat == {"comment": "heartbeat"}
    # The consumer acks through the ack endpoint.
    assert inbox.ack(peer.agent.pk, [data["receipt"]])[0]["result"] == "ok"


def test_last_event_id_resends_at_once_what_the_stream_leased_after_it(new_agent, peer):
    queue_messages(new_agent.agent, peer.agent, 3)

    async def first_connection():
        response = await open_stream(AsyncClient(), peer.key.plaintext, "lease_seconds=300")
        events = await read_events(response, 4)  # the opening comment and three messages
        return [json.loads(item["data"]) for item in events[1:]]

    first = asyncio.run(first_connection())
    assert [item["delivery_count"] for item in first] == [1, 1, 1]
    # The connection dropped after the consumer saw the first event only.

    async def resumed():
        response = await open_stream(AsyncClient(), peer.key.plaintext, "", **{"Last-Event-ID": first[0]["id"]})
        events = await read_events(response, 3)
        return [json.loads(item["data"]) for item in events[1:]]

    again = asyncio.run(resumed())
    assert [item["id"] for item in again] == [item["id"] for item in first[1:]]
    assert [item["delivery_count"] for item in again] == [2, 2]
    # The first one stays leased to the receipt the consumer holds.
    assert inbox.ack(peer.agent.pk, [first[0]["receipt"]])[0]["result"] == "ok"
    assert inbox.ack(peer.agent.pk, [first[1]["receipt"]])[0]["result"] == "stale"


def test_a_stream_ends_when_its_key_is_revoked(peer, settings):
    settings.BRIKK_STREAM_HEARTBEAT_SECONDS = 1
    settings.BRIKK_STREAM_KEY_CHECK_SECONDS = 1

    async def scenario():
        response = await open_stream(AsyncClient(), peer.key.plaintext)
        await read_events(response, 1)
        await sync_to_async(agent_services.revoke_keys, thread_sensitive=False)(peer.agent)
        return await read_events(response, 1, timeout=5)

    [closed] = asyncio.run(scenario())
    assert closed["event"] == "closed" and json.loads(closed["data"]) == {"reason": "key_no_longer_valid"}


def test_a_stream_ends_after_its_longest_duration(peer, settings):
    settings.BRIKK_STREAM_MAX_SECONDS = 1

    async def scenario():
        response = await open_stream(AsyncClient(), peer.key.plaintext)
        started = time.monotonic()
        events = await read_events(response, 2, timeout=5)
        return events, time.monotonic() - started

    (opening, closed), elapsed = asyncio.run(scenario())
    assert opening["retry"] == "1000"
    assert closed["event"] == "closed" and json.loads(closed["data"]) == {"reason": "max_duration"}
    assert 0.5 < elapsed < 4


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ("lease_seconds=0", {}, "lease_seconds"),
        ("lease_seconds=abc", {}, "lease_seconds"),
        ("surprise=1", {}, "surprise"),
        ("", {"Last-Event-ID": "not-a-message"}, "Last-Event-ID"),
    ],
)
def test_bad_stream_requests_are_validation_errors(peer, query, headers, field):
    async def scenario():
        return await open_stream(AsyncClient(), peer.key.plaintext, query, **headers)

    response = asyncio.run(scenario())
    assert response.status_code == 422
    assert response["Content-Type"].startswith("text/event-stream")
    [error] = [line for line in response.content.decode().split("\n") if line.startswith("data: ")]
    body = json.loads(error.removeprefix("data: "))
    assert body["code"] == "validation_error" and field in body["details"]


def test_the_stream_is_refused_without_a_key_as_json_when_json_is_accepted(peer):
    async def scenario():
        return await AsyncClient().get("/api/v1/inbox/stream", headers={"Accept": "application/json"})

    response = asyncio.run(scenario())
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def test_under_wsgi_the_stream_sends_each_event_as_it_comes(new_agent, peer, settings):
    """runserver and gunicorn: Django would collect an async stream whole before sending a byte; the stream
    runs on a thread of its own instead (brikk/lib/continued.py ThreadedStream)."""
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v1/inbox/stream", HTTP_X_BRIKK_KEY=peer.key.plaintext)
    assert response.status_code == 200 and response.streaming
    chunks = iter(response.streaming_content)
    assert next(chunks).decode().startswith("retry: 1000")
    sender = send_later(0.2, new_agent, peer, payload={"wsgi": True})
    event = next(chunks).decode()
    sender.join()
    response.close()  # cancels the stream; its last database step ends soon after
    time.sleep(0.5)
    assert "event: message" in event and '"payload":{"wsgi":true}' in event


def test_a_stream_ends_cleanly_when_the_database_fails_after_it_opened(peer, monkeypatch):
    """Its 200 and first bytes are sent: a database error ends it with an event the client understands (it
    reconnects), not a broken connection."""
    from django.db import OperationalError

    def unavailable(*args, **kwargs):
        raise OperationalError("the database is gone")

    monkeypatch.setattr(inbox, "receive", unavailable)

    async def scenario():
        response = await open_stream(AsyncClient(), peer.key.plaintext)
        return await read_events(response, 2, timeout=5)

    opening, closed = asyncio.run(scenario())
    assert opening["retry"] == "1000"
    assert closed["event"] == "closed" and json.loads(closed["data"]) == {"reason": "service_unavailable"}
