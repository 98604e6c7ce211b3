"""`manage.py push_dispatcher` as production runs it, on PostgreSQL: woken across processes by NOTIFY, killed with
SIGKILL mid-flight (the message is pushed again after its lease, with the same webhook-id, and acked once), and
two dispatchers at once (each message delivered once)."""

import threading
import time
from collections import Counter

import pytest

from agents import services as agent_services
from coordination.models import DeliveryAttempt, MessageLog
from tests.coordination.test_push import make_endpoint
from tests.support.inbox import queue_messages
from tests.support.live import wait_for
from tests.support.push_dispatcher import DispatcherProcess
from tests.support.webhook_receiver import Reply, WebhookReceiver

pytestmark = [pytest.mark.pg_redis, pytest.mark.django_db(transaction=True)]

TIMEOUT = 1  # the dispatchers' BRIKK_PUSH_TIMEOUT_SECONDS: their leases last 2 x 1 + 5 = 7 s


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


@pytest.fixture
def dispatchers(tmp_path):
    started = []

    def start(name: str) -> DispatcherProcess:
        process = DispatcherProcess(tmp_path / f"{name}.log", BRIKK_PUSH_TIMEOUT_SECONDS=TIMEOUT).start(name)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
        assert "Traceback" not in process.output(), process.output()[-3000:]


def test_a_dispatcher_killed_mid_flight_leaves_the_message_to_be_pushed_again_and_acked_once(
    dispatchers, new_agent, peer
):
    release = threading.Event()
    with WebhookReceiver([], [Reply(200, hold=release)]) as receiver:
        _, secret = make_endpoint(peer.agent, receiver.url)
        receiver.secrets.append(secret)
        doomed = dispatchers("doomed")
        [message] = queue_messages(new_agent.agent, peer.agent, 1)  # committed: NOTIFY wakes the dispatcher
        [first] = receiver.wait_for(1, timeout=20)  # the receiver holds this request
        doomed.kill()
        killed_at = time.monotonic()
        assert MessageLog.objects.get(pk=message.pk).delivery_state == "leased"
        dispatchers("survivor")
        requests = receiver.wait_for(2, timeout=30)
        wait_for(lambda: MessageLog.objects.get(pk=message.pk).delivery_state == "acked", timeout=15)
        release.set()
    again = requests[1]
    assert first.webhook_id == again.webhook_id == str(message.pk)  # the receiver's idempotency key
    assert first.verified_by == again.verified_by == [0]
    assert [request.payload["delivery_count"] for request in requests] == [1, 2]
    assert again.started - killed_at >= 2  # not before the lease ran out (7 s after it was taken)
    tried = list(DeliveryAttempt.objects.filter(message_id=message.pk).order_by("id"))
    assert [(item.kind, item.outcome) for item in tried] == [("push", ""), ("push", "acked")]
    assert tried[0].consumer.endswith("from doomed") and tried[1].consumer.endswith("from survivor")
    final = MessageLog.objects.get(pk=message.pk)
    assert final.delivery_state == "acked" and final.delivery_count == 2


def test_two_dispatchers_at_once_push_each_message_once(dispatchers, new_agent, peer, org):
    recipients = [peer] + [agent_services.create_agent(org, name=f"push-{n}") for n in range(3)]
    with WebhookReceiver([], default=Reply(200, delay=0.01)) as receiver:
        for recipient in recipients:
            make_endpoint(recipient.agent, receiver.url)
        dispatchers("one")
        dispatchers("two")
        ids = []
        for recipient in recipients:
            ids += [str(item.pk) for item in queue_messages(new_agent.agent, recipient.agent, 50)]
        receiver.wait_for(len(ids), timeout=60)
        wait_for(lambda: MessageLog.objects.filter(pk__in=ids, delivery_state="acked").count() == len(ids), timeout=30)
        time.sleep(0.5)  # anything pushed twice would have arrived by now
    counts = Counter(request.webhook_id for request in receiver.requests)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}
    by = Counter(
        consumer.rsplit(" from ", 1)[1]
        for consumer in DeliveryAttempt.objects.filter(message_id__in=ids).values_list("consumer", flat=True)
    )
    print(f"\ntwo dispatchers: {dict(by)}")
    assert sum(by.values()) == len(ids)


def test_accept_to_receiver_latency_and_a_sustained_push_rate(dispatchers, new_agent, peer, org):
    """Printed figures, no timed asserts: one message at a time (commit → NOTIFY → lease → POST) and a backlog
    of 2,000 messages for 8 endpoints, pushed by one dispatcher process to a receiver in this process."""
    recipients = [peer] + [agent_services.create_agent(org, name=f"rate-{n}") for n in range(7)]
    with WebhookReceiver([]) as receiver:
        for recipient in recipients:
            make_endpoint(recipient.agent, receiver.url)
        dispatchers("rate")
        latencies = []
        for number in range(50):
            committed = time.monotonic()
            queue_messages(new_agent.agent, peer.agent, 1)
            latencies.append(receiver.wait_for(number + 1, timeout=10)[number].started - committed)
        backlog = []
        for recipient in recipients:
            backlog += [str(item.pk) for item in queue_messages(new_agent.agent, recipient.agent, 250)]
        started = time.monotonic()
        receiver.wait_for(50 + len(backlog), timeout=120)
        elapsed = time.monotonic() - started
        wait_for(lambda: MessageLog.objects.filter(pk__in=backlog, delivery_state="acked").count() == len(backlog))
    assert len({request.webhook_id for request in receiver.requests}) == 50 + len(backlog)
    assert receiver.max_in_flight > 1  # deliveries overlapped
    latencies.sort()
    print(
        f"\naccept → receiver: p50 {latencies[25] * 1000:.1f} ms, p90 {latencies[45] * 1000:.1f} ms "
        f"(50 messages one at a time); backlog: {len(backlog)} messages to 8 endpoints in {elapsed:.2f} s = "
        f"{len(backlog) / elapsed:.0f}/s, up to {receiver.max_in_flight} in flight at the receiver"
    )
