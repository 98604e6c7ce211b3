"""The inbox under concurrency, on the real PostgreSQL (make test-services): consumers and sweeps in threads,
each with its own database connection (closed when the thread ends)."""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from agents import services as agent_services
from audit.models import AuditLog
from coordination import inbox, leasing
from coordination.models import MessageLog
from tests.support.inbox import queue_messages

pytestmark = [pytest.mark.pg_redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pair(org, owner):
    sender = agent_services.create_agent(org, name="sender", owner=owner).agent
    recipient = agent_services.create_agent(org, name="recipient", owner=owner).agent
    return sender, recipient


def _in_thread(function):
    """Run ``function`` on this thread's own connection, closed at the end."""

    def run(*args):
        try:
            return function(*args)
        finally:
            connection.close()

    return run


def test_the_receive_statement_uses_the_partial_index(pair, org):
    """The statement itself, explained: its SELECT reads the partial index msg_inbox (seq scans off, so a tiny
    table cannot hide a predicate the index does not cover)."""
    sender, recipient = pair
    queue_messages(sender, recipient, 50)
    now = timezone.now()
    params = {
        "recipient": recipient.pk,
        "now": now,
        "until": now,
        "limit": 10,
        "max_deliveries": 10,
        "kind": "receive",
        "consumer": "",
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + leasing.lease_statement(), params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "msg_inbox" in plan, plan


def test_twenty_consumers_drain_a_thousand_messages_each_received_exactly_once(pair, org):
    sender, recipient = pair
    queued = queue_messages(sender, recipient, 1000)
    start = threading.Barrier(20)

    @_in_thread
    def consume(number):
        start.wait()
        seen = []
        while True:
            batch = inbox.receive(recipient.pk, org.pk, max_messages=7, lease_seconds=300)
            if not batch:
                return seen
            seen.extend(item["id"] for item in batch)
            if number % 2:  # half the consumers ack as they go, concurrently with the others' receives
                results = inbox.ack(recipient.pk, [item["receipt"] for item in batch])
                assert {item["result"] for item in results} == {"ok"}

    with ThreadPoolExecutor(max_workers=20) as pool:
        received = [item for seen in pool.map(consume, range(20)) for item in seen]
    counts = Counter(received)
    assert len(counts) == 1000 and set(counts.values()) == {1}
    assert set(counts) == {str(message.pk) for message in queued}
    states = Counter(MessageLog.objects.values_list("delivery_state", flat=True))
    assert states["queued"] == 0 and states["leased"] + states["acked"] == 1000
    assert set(MessageLog.objects.values_list("delivery_count", flat=True)) == {1}


def test_a_consumer_that_dies_without_acking_has_its_messages_redelivered_after_the_lease(pair, org):
    sender, recipient = pair
    queue_messages(sender, recipient, 5)

    @_in_thread
    def doomed():
        return inbox.receive(recipient.pk, org.pk, max_messages=10, lease_seconds=1)  # and never acks

    with ThreadPoolExecutor(max_workers=1) as pool:
        lost = pool.submit(doomed).result()
    assert len(lost) == 5
    assert inbox.receive(recipient.pk, org.pk, max_messages=10, lease_seconds=30) == []  # leases hold
    time.sleep(1.2)
    again = inbox.receive(recipient.pk, org.pk, max_messages=10, lease_seconds=30)
    assert [item["id"] for item in again] == [item["id"] for item in lost]
    assert {item["delivery_count"] for item in again} == {2}
    # The dead consumer's receipts are stale: acking with them changes nothing.
    stale = inbox.ack(recipient.pk, [item["receipt"] for item in lost])
    assert {item["result"] for item in stale} == {"stale"}
    assert set(MessageLog.objects.values_list("delivery_state", flat=True)) == {"leased"}
    rows = dict(MessageLog.objects.values_list("pk", "receipt"))
    assert {f"{pk}:{receipt}" for pk, receipt in rows.items()} == {item["receipt"] for item in again}
    assert {item["result"] for item in inbox.ack(recipient.pk, [item["receipt"] for item in again])} == {"ok"}


def test_another_agents_receipts_are_unknown_and_change_nothing(pair, org, make_org, make_user, make_agent):
    sender, recipient = pair
    queue_messages(sender, recipient, 3)
    leased = inbox.receive(recipient.pk, org.pk, max_messages=10, lease_seconds=60)
    far_org = make_org("Far")
    far = make_agent(far_org).agent
    receipts = [item["receipt"] for item in leased]
    for other in (sender, far):
        assert {item["result"] for item in inbox.ack(other.pk, receipts)} == {"unknown"}
        assert {item["result"] for item in inbox.nack(other.pk, receipts)} == {"unknown"}
        assert inbox.receive(other.pk, other.organization_id, max_messages=10, lease_seconds=60) == []
    assert set(MessageLog.objects.values_list("delivery_state", flat=True)) == {"leased"}


def test_two_sweeps_at_once_dead_letter_each_message_once(pair, org):
    sender, recipient = pair
    now = timezone.now()
    expired = queue_messages(sender, recipient, 300, ttl=timedelta(seconds=1), now=now - timedelta(seconds=5))
    spent = queue_messages(sender, recipient, 200)
    MessageLog.objects.filter(pk__in=[message.pk for message in spent]).update(delivery_count=org.max_deliveries)
    alive = queue_messages(sender, recipient, 50)
    start = threading.Barrier(2)

    @_in_thread
    def sweep():
        start.wait()
        return inbox.sweep(batch_size=40)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: sweep(), range(2)))
    assert sum(result.expired for result in results) == 300
    assert sum(result.max_deliveries for result in results) == 200
    audits = AuditLog.objects.filter(action="message.dead_lettered")
    assert audits.count() == 500
    assert len(set(audits.values_list("resource_id", flat=True))) == 500
    reasons = Counter(MessageLog.objects.values_list("dead_reason", flat=True))
    assert reasons == {"expired": 300, "max_deliveries": 200, "": 50}
    assert {message.pk for message in alive} == set(
        MessageLog.objects.filter(delivery_state="queued").values_list("pk", flat=True)
    )
    assert {m.pk for m in expired} == set(MessageLog.objects.filter(dead_reason="expired").values_list("pk", flat=True))
