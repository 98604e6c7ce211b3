"""Retention of delivered messages (coordination/retention.py through audit/retention.py): acked and dead ones are
archived with their delivery attempts, then purged (the attempts with them, CASCADE); queued and leased ones never;
one changed while the run archives is left for the next run; each purge is audited. Runs on SQLite (make test)
and on PostgreSQL (make test-services)."""

import dataclasses
import gzip
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import services as agent_services
from audit import retention as audit_retention
from audit.models import AuditLog
from coordination import idempotency, inbox
from coordination.models import DeliveryAttempt, IdempotencyRecord, MessageLog
from tests.support.inbox import queue_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def read_archive(directory, name="messages.jsonl.gz"):
    with gzip.open(directory / name, "rt", encoding="utf-8") as handle:
        return {row["id"]: row for row in map(json.loads, handle)}


def age(*messages, days=200):
    MessageLog.objects.filter(pk__in=[message.pk for message in messages]).update(
        created_at=timezone.now() - timedelta(days=days)
    )


def run(tmp_path, **kwargs):
    return audit_retention.run(["messages"], {"messages": timezone.now() - timedelta(days=90)}, tmp_path, **kwargs)


def test_acked_and_dead_messages_go_with_their_attempts_and_undelivered_ones_stay(new_agent, peer, org, tmp_path):
    agent = peer.agent.pk
    acked, dead, queued, leased = queue_messages(new_agent.agent, peer.agent, 4, ttl=timedelta(days=30))
    now = timezone.now()
    items = inbox.receive(agent, org.pk, max_messages=4, lease_seconds=30, now=now)
    assert len(items) == 4
    by_id = {item["id"]: item for item in items}
    inbox.nack(agent, [by_id[str(acked.pk)]["receipt"], by_id[str(queued.pk)]["receipt"]], now=now)
    (again,) = inbox.receive(agent, org.pk, max_messages=1, lease_seconds=30, now=now)  # acked's second lease
    assert again["id"] == str(acked.pk)
    assert [r["result"] for r in inbox.ack(agent, [again["receipt"]], now=now)] == ["ok"]
    MessageLog.objects.filter(pk=dead.pk).update(delivery_state="dead", dead_reason="expired", leased_until=None)
    age(acked, dead, queued, leased)
    attempts_before = {
        message.pk: DeliveryAttempt.objects.filter(message_id=message.pk).count()
        for message in (acked, dead, queued, leased)
    }
    assert attempts_before == {acked.pk: 2, dead.pk: 1, queued.pk: 1, leased.pk: 1}

    report = run(tmp_path)

    assert report.deleted == {"messages": 2} and report.deleted_attached == {"messages": 3}
    archived = read_archive(report.directory)
    assert set(archived) == {str(acked.pk), str(dead.pk)}
    deliveries = archived[str(acked.pk)]["deliveries"]
    assert [attempt["outcome"] for attempt in deliveries] == ["nacked", "acked"]
    assert deliveries[1]["token"] == again["receipt"].split(":")[1] and "message_id" not in deliveries[0]
    assert [attempt["outcome"] for attempt in archived[str(dead.pk)]["deliveries"]] == [""]
    # Purged with their attempts; the queued and leased ones, and theirs, are all still there.
    assert set(MessageLog.objects.values_list("pk", flat=True)) == {queued.pk, leased.pk}
    assert set(DeliveryAttempt.objects.values_list("message_id", flat=True)) == {queued.pk, leased.pk}
    audit = AuditLog.objects.get(action="retention.purged")
    assert str(audit.organization_id) == str(org.pk) and audit.resource_id == report.directory.name
    assert audit.details["table"] == "messages"
    assert audit.details["rows"] == 2 and audit.details["deliveries"] == 3


def test_a_message_changed_while_the_run_archives_is_left_for_the_next_run(new_agent, peer, org, tmp_path):
    acked, redriven = queue_messages(new_agent.agent, peer.agent, 2, ttl=timedelta(days=30))
    MessageLog.objects.filter(pk=acked.pk).update(delivery_state="acked")
    MessageLog.objects.filter(pk=redriven.pk).update(delivery_state="dead", dead_reason="expired")
    age(acked, redriven)

    class Meanwhile:
        """While the messages are archived, an owner redrives the dead one and its recipient acks it at once."""

        def __init__(self, description, total):
            self.description = description

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            if self.description == "archive messages":
                MessageLog.objects.filter(pk=redriven.pk).update(
                    delivery_state="acked", dead_reason="", updated_at=timezone.now()
                )
            return False

        def update(self, n):
            pass

    report = run(tmp_path, progress_factory=Meanwhile)
    assert set(read_archive(report.directory)) == {str(acked.pk), str(redriven.pk)}  # archived as dead ...
    # ... but changed since: not purged in another state than archived. The next run takes it, acked.
    assert report.deleted == {"messages": 1}
    assert MessageLog.objects.get(pk=redriven.pk).delivery_state == "acked"
    assert AuditLog.objects.get(action="retention.purged").details["rows"] == 1

    later = run(tmp_path / "next")
    assert later.deleted == {"messages": 1}
    assert read_archive(later.directory)[str(redriven.pk)]["delivery_state"] == "acked"
    assert not MessageLog.objects.exists()


def test_a_message_whose_answer_a_live_idempotency_record_replays_is_kept_until_the_record_expires(
    new_agent, peer, org, tmp_path
):
    kept, stored_copy = queue_messages(new_agent.agent, peer.agent, 2, ttl=timedelta(days=30))
    MessageLog.objects.filter(pk__in=[kept.pk, stored_copy.pk]).update(delivery_state="acked")
    age(kept, stored_copy)
    operation = idempotency.Operation(str(org.pk), f"agent:{new_agent.agent.pk}", "op-1", "0" * 64)
    idempotency.complete(operation, status=200, message=kept)  # replays kept's answer
    # A record that stores its answer (an accepted echo's 202) does not hold its message back.
    idempotency.complete(dataclasses.replace(operation, key="op-2"), status=202, message=stored_copy, body={"id": "x"})

    report = run(tmp_path)
    assert report.deleted == {"messages": 1}
    assert list(MessageLog.objects.values_list("pk", flat=True)) == [kept.pk]

    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert run(tmp_path).deleted == {"messages": 1} and not MessageLog.objects.exists()
