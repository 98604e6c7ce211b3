"""Delivery metrics (coordination/metrics.py): deliveries, redeliveries, acks, nacks, dead letters by reason, the
accepted → first received and accepted → acked histograms, and the inbox depth per organization and state read at
scrape time. Runs on SQLite (make test) and on PostgreSQL (make test-services)."""

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from agents import services as agent_services
from agents.models import Membership
from coordination import inbox, metrics
from coordination.models import MessageLog
from tests.support.inbox import queue_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def value(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Snapshot:
    """The delivery series now, to compare with later."""

    NAMES = [
        ("brikk_inbox_deliveries_total", {}),
        ("brikk_inbox_redeliveries_total", {}),
        ("brikk_inbox_acks_total", {}),
        ("brikk_inbox_nacks_total", {}),
        ("brikk_inbox_accepted_to_received_seconds_count", {}),
        ("brikk_inbox_accepted_to_received_seconds_sum", {}),
        ("brikk_inbox_accepted_to_received_seconds_bucket", {"le": "5.0"}),
        ("brikk_inbox_accepted_to_received_seconds_bucket", {"le": "10.0"}),
        ("brikk_inbox_accepted_to_acked_seconds_count", {}),
        ("brikk_inbox_accepted_to_acked_seconds_sum", {}),
        ("brikk_dead_letters_total", {"reason": "expired"}),
        ("brikk_dead_letters_total", {"reason": "max_deliveries"}),
    ]

    def __init__(self):
        self.values = {(name, tuple(labels.items())): value(name, **labels) for name, labels in self.NAMES}

    def moved(self, name, **labels) -> float:
        return value(name, **labels) - self.values[(name, tuple(labels.items()))]


def test_receive_nack_and_ack_move_the_counters_and_histograms(new_agent, peer):
    agent, org = peer.agent.pk, peer.agent.organization_id
    accepted = timezone.now()
    queue_messages(new_agent.agent, peer.agent, 2, now=accepted)
    before = Snapshot()

    now = accepted + timedelta(seconds=8)
    first, second = inbox.receive(agent, org, max_messages=10, lease_seconds=30, now=now)
    assert before.moved("brikk_inbox_deliveries_total") == 2 and before.moved("brikk_inbox_redeliveries_total") == 0
    assert before.moved("brikk_inbox_accepted_to_received_seconds_count") == 2
    assert before.moved("brikk_inbox_accepted_to_received_seconds_sum") == pytest.approx(16)
    assert before.moved("brikk_inbox_accepted_to_received_seconds_bucket", le="5.0") == 0
    assert before.moved("brikk_inbox_accepted_to_received_seconds_bucket", le="10.0") == 2

    inbox.nack(agent, [first["receipt"], "bogus"], now=now)
    assert before.moved("brikk_inbox_nacks_total") == 1
    (again,) = inbox.receive(agent, org, max_messages=10, lease_seconds=30, now=now)
    assert again["delivery_count"] == 2
    assert before.moved("brikk_inbox_deliveries_total") == 3 and before.moved("brikk_inbox_redeliveries_total") == 1
    assert before.moved("brikk_inbox_accepted_to_received_seconds_count") == 2  # a redelivery is not a first one

    acked_at = accepted + timedelta(seconds=20)
    inbox.ack(agent, [again["receipt"], second["receipt"], first["receipt"]], now=acked_at)  # the first is stale
    assert before.moved("brikk_inbox_acks_total") == 2 and before.moved("brikk_inbox_nacks_total") == 1
    assert before.moved("brikk_inbox_accepted_to_acked_seconds_count") == 2
    assert before.moved("brikk_inbox_accepted_to_acked_seconds_sum") == pytest.approx(40)
    inbox.ack(agent, [second["receipt"]], now=acked_at)  # already acked: stale, not counted again
    assert before.moved("brikk_inbox_acks_total") == 2


def test_dead_letters_are_counted_by_reason_where_the_sweep_dead_letters(new_agent, peer, org):
    now = timezone.now()
    queue_messages(new_agent.agent, peer.agent, 2, ttl=timedelta(seconds=1), now=now)
    (tired,) = queue_messages(peer.agent, new_agent.agent, 1, now=now)
    MessageLog.objects.filter(pk=tired.pk).update(delivery_count=org.max_deliveries)
    before = Snapshot()
    result = inbox.sweep(now=now + timedelta(seconds=2))
    assert (result.expired, result.max_deliveries) == (2, 1)
    assert before.moved("brikk_dead_letters_total", reason="expired") == 2
    assert before.moved("brikk_dead_letters_total", reason="max_deliveries") == 1
    inbox.sweep(now=now + timedelta(seconds=3))  # idempotent: nothing counted twice
    assert before.moved("brikk_dead_letters_total", reason="expired") == 2


def depth_samples(text: str) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["organization"], sample.labels["state"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "brikk_inbox_depth"
    }


def test_the_inbox_depth_per_organization_and_state_costs_one_query_per_scrape(
    new_agent, peer, make_org, make_user, make_agent
):
    now = timezone.now()
    queued, leased, acked, dead = queue_messages(new_agent.agent, peer.agent, 4, now=now)
    queue_messages(peer.agent, new_agent.agent, 2, now=now)  # the same organization, another agent's inbox
    MessageLog.objects.filter(pk=leased.pk).update(delivery_state="leased")
    MessageLog.objects.filter(pk=acked.pk).update(delivery_state="acked")
    MessageLog.objects.filter(pk=dead.pk).update(delivery_state="dead", dead_reason="expired")
    elsewhere = make_org("Elsewhere")
    stranger = make_user("stranger", elsewhere, Membership.Role.OWNER)
    far, far_peer = make_agent(elsewhere, owner=stranger), make_agent(elsewhere, owner=stranger)
    queue_messages(far.agent, far_peer.agent, 1, now=now)
    mine, theirs = str(new_agent.agent.organization_id), str(elsewhere.pk)

    with CaptureQueriesContext(connection) as queries:
        response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    assert len(queries.captured_queries) == 1, [query["sql"] for query in queries.captured_queries]
    assert "GROUP BY" in queries.captured_queries[0]["sql"]
    depth = depth_samples(response.content.decode())
    assert depth == {
        (mine, "queued"): 3,  # per organization, not per agent; acked ones are history, not depth
        (mine, "leased"): 1,
        (mine, "dead"): 1,
        (theirs, "queued"): 1,
        (theirs, "leased"): 0,
        (theirs, "dead"): 0,
    }

    inbox.receive(far_peer.agent.pk, elsewhere.pk, max_messages=10, lease_seconds=30)
    after = depth_samples(Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode())
    assert (after[(theirs, "queued")], after[(theirs, "leased")]) == (0, 1)


def test_a_database_that_cannot_be_read_never_fails_the_scrape(new_agent, peer, monkeypatch):
    queue_messages(new_agent.agent, peer.agent, 1)

    def unreachable():
        raise OperationalError("connection refused")

    monkeypatch.setattr(metrics, "inbox_depth", unreachable)
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert depth_samples(text) == {} and "# TYPE brikk_inbox_depth gauge" in text
    assert 'brikk_feature_flag{flag="hmac_required"}' in text  # the rest of the scrape is there
