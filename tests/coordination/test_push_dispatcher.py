"""The long-running push dispatcher (coordination/push.py, Dispatcher) in this process, against a real
verifying receiver: woken by commits (in process on SQLite, NOTIFY on PostgreSQL), never polling; a slow endpoint
delays no other; many deliveries in flight. Runs in both passes."""

import statistics
import threading
import time

import pytest
from django.db import OperationalError, connection
from rest_framework.test import APIClient

from agents import services as agent_services
from coordination import push
from coordination.models import MessageLog
from tests.coordination.test_push import make_endpoint
from tests.support.coordination import envelope, post_echo
from tests.support.inbox import queue_messages
from tests.support.live import wait_for
from tests.support.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.BRIKK_WEBHOOK_ALLOW_HTTP = True
    settings.BRIKK_PUSH_TIMEOUT_SECONDS = 5


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def acked(ids) -> bool:
    try:
        return MessageLog.objects.filter(pk__in=list(ids), delivery_state="acked").count() == len(ids)
    except OperationalError:  # SQLite's shared-cache test database: see send()
        return False


def send(client, sender, recipient) -> dict:
    """An echo, tried again while the test database answers 503: pytest-django's in-memory SQLite database is
    shared-cache, where a table another connection (the dispatcher's thread) is using fails at once instead of
    waiting (``database table is locked``). The file database of ``make run`` waits (its busy timeout)."""
    for _ in range(50):
        response = post_echo(client, envelope(sender.agent, recipient.agent), key=sender.key.plaintext)
        if response.status_code != 503 or connection.vendor != "sqlite":
            break
        time.sleep(0.05)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the in-process mode is the embedded defaults'")
def test_in_process_the_first_commit_for_an_agent_with_an_endpoint_starts_the_dispatcher(new_agent, peer, settings):
    settings.BRIKK_PUSH_IN_PROCESS = True
    client = APIClient()
    with WebhookReceiver([]) as receiver:
        _, secret = make_endpoint(peer.agent, receiver.url)
        receiver.secrets.append(secret)
        assert not push.in_process.running()
        first = send(client, new_agent, peer)  # its commit starts the dispatcher, which pushes it
        receiver.wait_for(1, timeout=15)
        assert push.in_process.running()
        wait_for(lambda: acked([first["id"]]), timeout=15, interval=0.05)
        second = send(client, new_agent, peer)  # woken by this commit (no polling)
        requests = receiver.wait_for(2, timeout=15)
        wait_for(lambda: acked([second["id"]]), timeout=15, interval=0.05)
    assert [request.webhook_id for request in requests] == [first["id"], second["id"]]
    assert all(request.verified_by == [0] for request in requests)


def test_in_process_mode_off_pushes_nothing(new_agent, peer, settings):
    with WebhookReceiver([]) as receiver:
        make_endpoint(peer.agent, receiver.url)
        send(APIClient(), new_agent, peer)
        time.sleep(0.5)
    assert receiver.requests == [] and not push.in_process.running()


def test_the_dispatcher_is_woken_by_a_commit_and_sleeps_until_a_retry_is_due(new_agent, peer):
    """No polling: between the first failure and its retry (5 s) nothing is asked of the receiver; the retry
    comes when due; a message sent meanwhile goes out at once."""
    with WebhookReceiver([], [Reply(500)]) as receiver:
        make_endpoint(peer.agent, receiver.url)
        push.in_process.ensure_running()
        failed = send(APIClient(), new_agent, peer)
        [first] = receiver.wait_for(1, timeout=15)
        other = send(APIClient(), new_agent, peer)
        requests = receiver.wait_for(2, timeout=15)
        assert requests[1].webhook_id == other["id"] and requests[1].started - first.started < 4
        requests = receiver.wait_for(3, timeout=20)
        wait_for(lambda: acked([failed["id"], other["id"]]), timeout=15, interval=0.05)
    assert requests[2].webhook_id == failed["id"]
    assert requests[2].started - first.started >= 3.5  # the 5 s (± 20 %) delay was kept
    assert len(receiver.requests) == 3


def test_a_slow_endpoint_delays_no_other(new_agent, peer, org, settings):
    settings.BRIKK_PUSH_CONCURRENCY_PER_ENDPOINT = 2
    fast_agent = agent_services.create_agent(org, name="fast")
    release = threading.Event()
    with WebhookReceiver([], default=Reply(hold=release)) as slow, WebhookReceiver([]) as fast:
        make_endpoint(peer.agent, slow.url)
        make_endpoint(fast_agent.agent, fast.url)
        queue_messages(new_agent.agent, peer.agent, 6)
        fast_ones = queue_messages(new_agent.agent, fast_agent.agent, 20)
        push.in_process.ensure_running()
        slow.wait_for(2, timeout=15)
        fast.wait_for(20, timeout=15)  # all of the fast endpoint's, while the slow one holds its two
        held = len(slow.requests)
        wait_for(lambda: acked([item.pk for item in fast_ones]), timeout=15, interval=0.05)
        release.set()
        slow.wait_for(6, timeout=20)
    assert held == 2 and slow.max_in_flight == 2  # the per-endpoint cap
    assert len({request.webhook_id for request in fast.requests}) == 20


def test_many_deliveries_in_flight_keep_the_push_rate_up(new_agent, peer, org, settings, capsys):
    """N messages to a healthy receiver that takes 20 ms per request: deliveries overlap (no timed assert;
    the figures are printed)."""
    count, agents = 300, 6
    settings.BRIKK_PUSH_CONCURRENCY_PER_ENDPOINT = 8
    recipients = [peer] + [agent_services.create_agent(org, name=f"push-{n}") for n in range(agents - 1)]
    with WebhookReceiver([], default=Reply(200, delay=0.02)) as receiver:
        for recipient in recipients:
            make_endpoint(recipient.agent, receiver.url)
        ids = []
        for recipient in recipients:
            ids += [item.pk for item in queue_messages(new_agent.agent, recipient.agent, count // agents)]
        started = time.monotonic()
        push.in_process.ensure_running()
        requests = receiver.wait_for(count, timeout=120)
        wait_for(lambda: acked(ids), timeout=60, interval=0.1)
        elapsed = time.monotonic() - started
    assert len({request.webhook_id for request in requests}) == count == len(requests)
    assert all(request.verified_by == [] for request in requests)  # the receiver was given no secret
    assert receiver.max_in_flight > agents  # several endpoints, several in flight each
    gaps = [b.started - a.started for a, b in zip(requests, requests[1:], strict=False)]
    with capsys.disabled():
        print(
            f"\npush rate ({connection.vendor}): {count} messages to {agents} endpoints in {elapsed:.2f} s = "
            f"{count / elapsed:.0f}/s; up to {receiver.max_in_flight} in flight at the receiver; "
            f"median gap between arrivals {statistics.median(gaps) * 1000:.1f} ms"
        )
