"""The inbox (coordination/inbox.py): delivery state with the message, receive/ack/nack/extend/stats, dead
letters, sweeps and retention. Runs on SQLite (make test) and on PostgreSQL (make test-services)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import services as agent_services
from agents.models import Membership
from audit.models import AuditLog
from coordination import inbox, processing, retention
from coordination.answers import answer_of
from coordination.models import MessageLog
from tests.support.coordination import envelope, post_echo
from tests.support.inbox import inbox_post, queue_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def _results(results):
    return [item["result"] for item in results]


def test_a_sync_echo_is_queued_for_its_recipient_in_the_same_row(api_client, new_agent, peer):
    body = envelope(new_agent.agent, peer.agent, ttl_ms=1_209_600_000)
    answer = post_echo(api_client, body, key=new_agent.key.plaintext).json()
    assert answer["status"] == "delivered" and answer["envelope"] == body
    assert answer["delivery"]["state"] == "queued" and answer["delivery"]["delivery_count"] == 0
    message = MessageLog.objects.get(pk=answer["id"])
    assert message.delivery_state == "queued" and message.available_at == message.responded_at
    assert message.expires_at == message.received_at + timedelta(days=14)

    key = peer.key.plaintext
    received = inbox_post(api_client, key, "receive", {}).json()["messages"]
    assert len(received) == 1
    item = received[0]
    assert {k: item[k] for k in body} == body
    assert item["id"] == answer["id"] and item["delivery_count"] == 1
    assert item["accepted_at"] == answer["received_at"] and item["receipt"].startswith(answer["id"] + ":")
    assert inbox_post(api_client, key, "receive", {}).json() == {"messages": []}  # leased: not again

    stats = api_client.get("/api/v1/inbox/stats", HTTP_X_BRIKK_KEY=key).json()
    assert stats == {"counts": {"queued": 0, "leased": 1, "acked": 0, "dead": 0}, "oldest_available_age_seconds": None}

    acked = inbox_post(api_client, key, "ack", {"receipts": [item["receipt"]]}).json()
    assert acked == {"results": [{"receipt": item["receipt"], "result": "ok"}]}
    detail = api_client.get(answer["links"]["self"], HTTP_X_BRIKK_KEY=new_agent.key.plaintext).json()
    assert detail["delivery"]["state"] == "acked" and detail["delivery"]["delivery_count"] == 1
    assert detail["delivery"]["acked_at"] and detail["delivery"]["first_received_at"]
    assert detail["delivery"]["dead_reason"] is None
    # An ack is not audited (volume).
    assert not AuditLog.objects.filter(resource_id=answer["id"]).exclude(action="echo.delivered").exists()


def test_an_async_message_enters_the_inbox_when_its_echo_is_delivered(api_client, new_agent, peer, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # keep it accepted: no worker
    body = envelope(new_agent.agent, peer.agent)
    response = post_echo(api_client, body, key=new_agent.key.plaintext, HTTP_PREFER="respond-async")
    assert response.status_code == 202
    answer = response.json()
    assert answer["delivery"]["state"] is None and answer["delivery"]["expires_at"]
    assert inbox.receive(peer.agent.pk, peer.agent.organization_id, max_messages=10, lease_seconds=30) == []
    processing.attempt(answer["id"], final_attempt=False)
    message = MessageLog.objects.get(pk=answer["id"])
    assert message.status == "delivered" and message.delivery_state == "queued"
    assert message.response_body is None and answer_of(message)["delivery"]["state"] == "queued"
    assert len(inbox.receive(peer.agent.pk, peer.agent.organization_id, max_messages=10, lease_seconds=30)) == 1


def test_failed_and_refused_messages_have_no_delivery_state(api_client, new_agent, peer, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    answer = post_echo(
        api_client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext, HTTP_PREFER="respond-async"
    ).json()
    processing.fail_message(answer["id"], "gave up")
    assert MessageLog.objects.get(pk=answer["id"]).delivery_state == ""
    refused = envelope(new_agent.agent, peer.agent, ttl_ms=1_209_600_001)
    assert post_echo(api_client, refused, key=new_agent.key.plaintext).status_code == 422
    rejected = MessageLog.objects.get(status="rejected")
    assert rejected.delivery_state == "" and rejected.expires_at is None


def test_oldest_first_in_batches(api_client, new_agent, peer):
    queued = queue_messages(new_agent.agent, peer.agent, 5)
    first = inbox_post(api_client, peer.key.plaintext, "receive", {"max_messages": 3}).json()["messages"]
    second = inbox_post(api_client, peer.key.plaintext, "receive", {"max_messages": 3}).json()["messages"]
    assert [item["id"] for item in first + second] == [str(message.pk) for message in queued]
    assert [item["payload"]["n"] for item in first] == [0, 1, 2]


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("receive", {"max_messages": 0}),
        ("receive", {"max_messages": 101}),
        ("receive", {"lease_seconds": 43201}),
        ("receive", {"max_messages": "5"}),
        ("receive", {"surprise": 1}),
        ("receive", {"wait_seconds": 21}),
        ("receive", {"wait_seconds": -1}),
        ("ack", {"receipts": []}),
        ("ack", {}),
        ("nack", {"receipts": ["x"], "delay_seconds": 901}),
        ("extend", {"receipts": ["x"], "lease_seconds": 0}),
    ],
)
def test_bad_inbox_requests_are_validation_errors(api_client, peer, action, body):
    response = inbox_post(api_client, peer.key.plaintext, action, body)
    assert response.status_code == 422 and response.json()["code"] == "validation_error", response.content


def test_people_have_no_inbox(api_client, owner):
    api_client.force_authenticate(owner)
    assert api_client.post("/api/v1/inbox/receive", {}, format="json").status_code == 403
    assert api_client.get("/api/v1/inbox/stats").status_code == 403


def test_a_lapsed_lease_is_redelivered_and_its_old_receipt_is_stale(new_agent, peer):
    agent, org = peer.agent.pk, peer.agent.organization_id
    queue_messages(new_agent.agent, peer.agent, 1)
    now = timezone.now()
    (first,) = inbox.receive(agent, org, max_messages=10, lease_seconds=30, now=now)
    assert inbox.receive(agent, org, max_messages=10, lease_seconds=30, now=now + timedelta(seconds=29)) == []
    (second,) = inbox.receive(agent, org, max_messages=10, lease_seconds=30, now=now + timedelta(seconds=31))
    assert second["id"] == first["id"] and second["delivery_count"] == 2 and second["receipt"] != first["receipt"]
    later = now + timedelta(seconds=32)
    assert _results(inbox.ack(agent, [first["receipt"]], now=later)) == ["stale"]
    assert MessageLog.objects.get(pk=first["id"]).delivery_state == "leased"  # the stale ack changed nothing
    assert _results(inbox.ack(agent, [second["receipt"]], now=later)) == ["ok"]
    assert _results(inbox.ack(agent, [second["receipt"]], now=later)) == ["stale"]  # acked already
    # A receipt whose own lease ran out, nobody else's yet, is stale too.
    queue_messages(new_agent.agent, peer.agent, 1, now=later)
    (third,) = inbox.receive(agent, org, max_messages=10, lease_seconds=1, now=later)
    assert _results(inbox.ack(agent, [third["receipt"]], now=later + timedelta(seconds=2))) == ["stale"]


def test_nack_with_delay_and_extend(new_agent, peer):
    agent, org = peer.agent.pk, peer.agent.organization_id
    queue_messages(new_agent.agent, peer.agent, 2)
    now = timezone.now()
    one, two = inbox.receive(agent, org, max_messages=10, lease_seconds=30, now=now)
    assert _results(inbox.nack(agent, [one["receipt"]], delay_seconds=60, now=now)) == ["ok"]
    assert _results(inbox.extend(agent, [two["receipt"]], lease_seconds=600, now=now)) == ["ok"]
    assert inbox.receive(agent, org, max_messages=10, lease_seconds=30, now=now + timedelta(seconds=59)) == []
    again = inbox.receive(agent, org, max_messages=10, lease_seconds=30, now=now + timedelta(seconds=61))
    assert [item["id"] for item in again] == [one["id"]] and again[0]["delivery_count"] == 2
    assert _results(inbox.ack(agent, [one["receipt"]], now=now + timedelta(seconds=62))) == ["stale"]
    assert _results(inbox.ack(agent, [two["receipt"]], now=now + timedelta(seconds=500))) == ["ok"]


def test_receipts_of_another_agent_are_unknown(api_client, new_agent, peer, make_agent, org, owner):
    queue_messages(new_agent.agent, peer.agent, 1)
    (item,) = inbox_post(api_client, peer.key.plaintext, "receive", {}).json()["messages"]
    other = make_agent(org, owner=owner)
    for action, extra in (("ack", {}), ("nack", {"delay_seconds": 0}), ("extend", {"lease_seconds": 60})):
        body = {"receipts": [item["receipt"], "garbage", f"{item['id']}:nope"], **extra}
        results = inbox_post(api_client, other.key.plaintext, action, body).json()["results"]
        assert _results(results) == ["unknown", "unknown", "unknown"]
    assert inbox_post(api_client, other.key.plaintext, "receive", {}).json() == {"messages": []}
    assert MessageLog.objects.get(pk=item["id"]).delivery_state == "leased"
    forged = inbox_post(api_client, peer.key.plaintext, "ack", {"receipts": [f"{item['id']}:nope"]}).json()
    assert _results(forged["results"]) == ["stale"]


def test_max_deliveries_and_expiry_dead_letter_exactly_the_right_messages(new_agent, peer, org):
    org.max_deliveries = 2
    org.save()
    agent = peer.agent.pk
    now = timezone.now()
    short = queue_messages(new_agent.agent, peer.agent, 2, ttl=timedelta(seconds=10), now=now)
    long_lived = queue_messages(new_agent.agent, peer.agent, 3, ttl=timedelta(hours=1), now=now)
    acked_in_time = short[1]
    # Lease all five twice, the leases lapsing; ack one short message on its second lease.
    for round_ in range(2):
        at = now + timedelta(seconds=round_ * 4)
        leased = inbox.receive(agent, org.pk, max_messages=10, lease_seconds=2, now=at)
        assert len(leased) == 5
        if round_ == 1:
            receipt = next(item["receipt"] for item in leased if item["id"] == str(acked_in_time.pk))
            assert _results(inbox.ack(agent, [receipt], now=at)) == ["ok"]
    later = now + timedelta(seconds=20)
    assert inbox.receive(agent, org.pk, max_messages=10, lease_seconds=2, now=later) == []  # out of deliveries
    result = inbox.sweep(now=later)
    assert (result.expired, result.max_deliveries) == (1, 3)
    states = dict(MessageLog.objects.values_list("pk", "dead_reason"))
    assert states[short[0].pk] == "expired" and states[acked_in_time.pk] == ""
    assert all(states[message.pk] == "max_deliveries" for message in long_lived)
    audits = AuditLog.objects.filter(action="message.dead_lettered")
    assert sorted(audits.values_list("details__reason", flat=True)) == ["expired"] + ["max_deliveries"] * 3
    assert set(audits.values_list("actor_kind", flat=True)) == {"system"}
    again = inbox.sweep(now=later)  # idempotent
    assert (again.expired, again.max_deliveries, again.leases_returned) == (0, 0, 0)
    assert audits.count() == 4


def test_the_sweep_returns_lapsed_leases_for_the_stats(new_agent, peer):
    agent, org = peer.agent.pk, peer.agent.organization_id
    queue_messages(new_agent.agent, peer.agent, 3)
    now = timezone.now()
    inbox.receive(agent, org, max_messages=2, lease_seconds=5, now=now)
    assert inbox.stats(agent, now=now)["counts"] == {"queued": 1, "leased": 2, "acked": 0, "dead": 0}
    assert inbox.sweep(now=now + timedelta(seconds=6)).leases_returned == 2
    stats = inbox.stats(agent, now=now + timedelta(seconds=6))
    assert stats["counts"] == {"queued": 3, "leased": 0, "acked": 0, "dead": 0}
    assert stats["oldest_available_age_seconds"] >= 6


def test_dead_letters_are_visible_to_their_recipient_and_the_organization_and_redriven_by_owners(
    api_client, new_agent, peer, org, owner, member, make_org, make_user, make_agent
):
    now = timezone.now()
    to_peer = queue_messages(new_agent.agent, peer.agent, 2, ttl=timedelta(seconds=1), now=now)
    to_sender = queue_messages(peer.agent, new_agent.agent, 1, ttl=timedelta(seconds=1), now=now)
    stranger_org = make_org("Elsewhere")
    stranger = make_user("stranger", stranger_org, Membership.Role.OWNER)
    far = make_agent(stranger_org, owner=stranger)
    far_peer = make_agent(stranger_org, owner=stranger)
    theirs = queue_messages(far.agent, far_peer.agent, 1, ttl=timedelta(seconds=1), now=now)
    assert inbox.sweep(now=now + timedelta(seconds=2)).expired == 4

    listed = api_client.get("/api/v1/dead-letters", HTTP_X_BRIKK_KEY=peer.key.plaintext).json()["results"]
    assert {item["id"] for item in listed} == {str(message.pk) for message in to_peer}
    assert listed[0]["dead_reason"] == "expired" and listed[0]["delivery"]["state"] == "dead"
    assert listed[0]["envelope"]["payload"] in ({"n": 0}, {"n": 1})
    api_client.force_authenticate(member)
    everything = api_client.get("/api/v1/dead-letters").json()["results"]
    assert len(everything) == 3  # the organization's, not the other organization's
    filtered = api_client.get("/api/v1/dead-letters", {"recipient": str(new_agent.agent.pk)}).json()["results"]
    assert [item["id"] for item in filtered] == [str(to_sender[0].pk)]
    assert api_client.get("/api/v1/dead-letters", {"reason": "bogus"}).status_code == 422
    # Members read; redrive is for owners and admins (and never an agent key).
    ids = [str(to_peer[0].pk), str(theirs[0].pk)]
    assert api_client.post("/api/v1/dead-letters/redrive", {"ids": ids}, format="json").status_code == 403
    api_client.force_authenticate(None)
    response = api_client.post(
        "/api/v1/dead-letters/redrive", {"ids": ids}, format="json", HTTP_X_BRIKK_KEY=peer.key.plaintext
    )
    assert response.status_code == 403
    api_client.force_authenticate(owner)
    response = api_client.post("/api/v1/dead-letters/redrive", {"ids": ids}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"redriven": [ids[0]], "not_found": [ids[1]]}
    redriven = MessageLog.objects.get(pk=to_peer[0].pk)
    assert redriven.delivery_state == "queued" and redriven.delivery_count == 0 and redriven.dead_reason == ""
    assert redriven.expires_at > timezone.now()
    assert MessageLog.objects.get(pk=theirs[0].pk).delivery_state == "dead"  # another organization's: untouched
    audit = AuditLog.objects.get(action="message.redriven")
    assert audit.resource_id == ids[0] and audit.actor_id == str(owner.pk)
    # Another organization's message is a 404.
    assert api_client.get(f"/api/v1/coordination/messages/{theirs[0].pk}").status_code == 404
    (item,) = inbox.receive(peer.agent.pk, org.pk, max_messages=10, lease_seconds=30)
    assert item["id"] == ids[0] and item["delivery_count"] == 1


def test_retention_never_purges_an_undelivered_message(new_agent, peer):
    old = timezone.now() - timedelta(days=200)
    queued, leased, acked, dead = queue_messages(new_agent.agent, peer.agent, 4, ttl=timedelta(days=400), now=old)
    MessageLog.objects.filter(pk=leased.pk).update(delivery_state="leased")
    MessageLog.objects.filter(pk=acked.pk).update(delivery_state="acked")
    MessageLog.objects.filter(pk=dead.pk).update(delivery_state="dead", dead_reason="expired")
    MessageLog.objects.update(created_at=old)
    cutoff = timezone.now() - timedelta(days=90)
    purgeable = set(retention.MESSAGES.older_than(cutoff).values_list("pk", flat=True))
    assert purgeable == {acked.pk, dead.pk}
