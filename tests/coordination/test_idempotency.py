"""Idempotency and message_id uniqueness inside the echo's one transaction, on both passes; the
in-flight lock and races on PostgreSQL."""

import json
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from agents import services as agent_services
from audit.models import AuditLog
from coordination import idempotency
from coordination.models import IdempotencyRecord, MessageLog
from tests.support.coordination import ECHO_PATH, encode, envelope, post_echo, signed_headers
from tests.support.counting import database_transactions, inserted_tables
from tests.support.live import concurrently, database_url, http_post, meta_to_http


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def _code(response, status):
    assert response.status_code == status, response.content
    return response.json()["code"]


@pytest.mark.django_db
def test_message_id_is_unique_per_sender_across_idempotency_keys(api_client, new_agent, peer):
    key = new_agent.key.plaintext
    body = envelope(new_agent.agent, peer.agent)
    first = post_echo(api_client, body, key=key, HTTP_IDEMPOTENCY_KEY="op-1")
    assert first.status_code == 200, first.content

    again = post_echo(api_client, body, key=key, HTTP_IDEMPOTENCY_KEY="op-2", HTTP_X_REQUEST_ID="reuse-0001")
    assert _code(again, 422) == "message_id_reused"
    assert again.json()["details"] == {"message_id": body["message_id"]}
    refused = MessageLog.objects.get(status="rejected")
    assert (refused.http_status, refused.correlation_id, refused.idempotency_key) == (422, "reuse-0001", "op-2")
    assert AuditLog.objects.get(action="echo.rejected").details["code"] == "message_id_reused"
    assert not IdempotencyRecord.objects.filter(key="op-2").exists()  # no key left behind

    # The default key (the message_id itself) and async mode are refused the same way.
    assert _code(post_echo(api_client, {**body, "payload": {"other": 1}}, key=key), 422) == "message_id_reused"
    asynchronous = post_echo(api_client, body, key=key, HTTP_IDEMPOTENCY_KEY="op-3", HTTP_PREFER="respond-async")
    assert _code(asynchronous, 422) == "message_id_reused"
    assert MessageLog.objects.exclude(status="rejected").get().pk.hex == first.json()["id"].replace("-", "")

    # The original key still replays, and another sender may use the same message_id.
    replay = post_echo(api_client, body, key=key, HTTP_IDEMPOTENCY_KEY="op-1")
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    theirs = envelope(peer.agent, new_agent.agent, message_id=body["message_id"])
    assert post_echo(api_client, theirs, key=peer.key.plaintext).status_code == 200
    assert MessageLog.objects.filter(message_id=body["message_id"], status="delivered").count() == 2


@pytest.mark.django_db
def test_a_lost_race_is_answered_from_the_winner_never_a_500(api_client, new_agent, peer, monkeypatch):
    key = new_agent.key.plaintext
    body = envelope(new_agent.agent, peer.agent)
    first = post_echo(api_client, body, key=key)
    assert first.status_code == 200
    # As if the winner committed just after this request looked: only the unique constraint sees it.
    monkeypatch.setattr(idempotency, "begin", lambda operation: None)

    late = post_echo(api_client, body, key=key)
    assert late.status_code == 200, late.content
    assert late["Idempotent-Replayed"] == "true" and late.json() == first.json()
    changed = post_echo(api_client, {**body, "payload": {"changed": True}}, key=key)
    assert _code(changed, 422) == "idempotency_key_reused"
    other_key = post_echo(api_client, body, key=key, HTTP_IDEMPOTENCY_KEY="op-9")
    assert _code(other_key, 422) == "message_id_reused"

    # The losers' writes were rolled back: one delivered message, one audit row for it, one record.
    assert MessageLog.objects.filter(status="delivered").count() == 1
    assert AuditLog.objects.filter(action="echo.delivered").count() == 1
    assert AuditLog.objects.filter(action="idempotency.replayed").count() == 1
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db
def test_an_expired_key_is_free_again(api_client, new_agent, peer):
    scope = f"agent:{new_agent.agent.pk}"
    IdempotencyRecord.objects.create(
        organization=new_agent.agent.organization,
        scope=scope,
        key="op-old",
        request_hash="0" * 64,
        response_status=200,
        response_body={"old": True},
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    body = envelope(new_agent.agent, peer.agent)
    response = post_echo(api_client, body, key=new_agent.key.plaintext, HTTP_IDEMPOTENCY_KEY="op-old")
    assert response.status_code == 200 and "Idempotent-Replayed" not in response
    renewed = IdempotencyRecord.objects.get(scope=scope, key="op-old")
    assert renewed.request_hash == idempotency.request_hash(body) and renewed.expires_at > timezone.now()
    assert renewed.response_body is None and renewed.message_id == uuid.UUID(response.json()["id"])


@pytest.mark.django_db
def test_a_replay_answers_what_the_message_keeps_and_a_record_without_its_answer_frees_the_key(
    api_client, new_agent, peer
):
    body = envelope(new_agent.agent, peer.agent)
    first = post_echo(api_client, body, key=new_agent.key.plaintext)
    assert first.status_code == 200
    record = IdempotencyRecord.objects.get(key=body["message_id"])
    assert record.response_body is None and str(record.message_id) == first.json()["id"]
    replay = post_echo(api_client, body, key=new_agent.key.plaintext)
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()

    # Its message gone (retention never purges it while the record lives; coordination/retention.py), the record
    # no longer holds an answer: the key is free again, as past its window, and the envelope is sent anew.
    MessageLog.objects.filter(pk=first.json()["id"]).delete()
    again = post_echo(api_client, body, key=new_agent.key.plaintext)
    assert again.status_code == 200 and "Idempotent-Replayed" not in again
    assert again.json()["id"] != first.json()["id"]
    renewed = IdempotencyRecord.objects.get(key=body["message_id"])
    assert str(renewed.message_id) == again.json()["id"] and renewed.pk != record.pk


def _writes(sqls: list[str]) -> list[str]:
    verbs = ("INSERT", "UPDATE", "DELETE")
    return [f"{sql.split()[0]} {sql.split(chr(34))[1]}" for sql in sqls if sql.startswith(verbs)]


@pytest.mark.django_db(transaction=True)
def test_an_echo_and_a_replay_are_one_transaction_each(api_client, new_agent, peer):
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    assert post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, secret=secret).status_code == 200
    body = envelope(new_agent.agent, peer.agent)
    with database_transactions() as db:
        assert post_echo(api_client, body, key=key, secret=secret).status_code == 200
    rows = ["coordination_messagelog", "coordination_idempotencyrecord", "audit_auditlog"]
    if connection.vendor == "postgresql":
        # One statement in autocommit, its own transaction (coordination/echo_statement.py).
        assert db.committed == []
        assert [inserted_tables(sql) for sql in db.autocommit if inserted_tables(sql)] == [rows]
        assert not _writes(db.autocommit), db.autocommit
    else:
        assert [_writes(sqls) for sqls in db.committed] == [[f"INSERT {table}" for table in rows]]
        assert not _writes(db.autocommit), db.autocommit

    with database_transactions() as db:
        assert post_echo(api_client, body, key=key, secret=secret)["Idempotent-Replayed"] == "true"
    assert [_writes(sqls) for sqls in db.committed] == [["INSERT audit_auditlog"]]
    assert not _writes(db.autocommit), db.autocommit


# --- PostgreSQL: the advisory lock and real concurrency -------------------------------------------


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_a_request_in_flight_gets_409_and_then_goes_through(api_client, new_agent, peer):
    body = envelope(new_agent.agent, peer.agent)
    lock = idempotency.lock_id(f"agent:{new_agent.agent.pk}", body["message_id"])
    with psycopg.connect(database_url(), autocommit=True) as other:  # the request in flight
        other.execute("SELECT pg_advisory_lock(%s)", [lock])
        response = post_echo(api_client, body, key=new_agent.key.plaintext)
        assert _code(response, 409) == "idempotency_in_progress"
        assert response.json()["details"] == {"idempotency_key": body["message_id"]}
        other.execute("SELECT pg_advisory_unlock(%s)", [lock])
    assert AuditLog.objects.filter(action="idempotency.in_progress").count() == 1
    assert MessageLog.objects.get().http_status == 409 and not IdempotencyRecord.objects.exists()

    retry = post_echo(api_client, body, key=new_agent.key.plaintext)
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry
    assert IdempotencyRecord.objects.get().message_id == MessageLog.objects.get(status="delivered").pk


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_concurrent_reuse_of_a_message_id_under_different_keys_delivers_once(live_server, new_agent, peer):
    raw = encode(envelope(new_agent.agent, peer.agent))
    signed = meta_to_http(signed_headers(new_agent.key.plaintext, new_agent.signing_secret, raw))

    def send(index):
        return http_post(live_server.url, ECHO_PATH, raw, {**signed, "Idempotency-Key": f"op-{index}"})

    results = concurrently(12, send)
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] + [422] * 11, statuses
    assert {body["code"] for status, _, body in results if status == 422} == {"message_id_reused"}
    message_id = json.loads(raw)["message_id"]
    delivered = MessageLog.objects.get(message_id=message_id, status="delivered")
    assert [body["id"] for status, _, body in results if status == 200] == [str(delivered.pk)]
    assert MessageLog.objects.filter(message_id=message_id, status="rejected", http_status=422).count() == 11
    assert IdempotencyRecord.objects.get().message_id == delivered.pk


def test_the_fingerprint_is_of_what_is_asked_whatever_its_form():
    body = {"type": "message", "payload": {"b": [1, 2.5, None], "a": "ü"}, "ttl_ms": 60_000, "ts": "t1", "nonce": "n"}
    digest = idempotency.request_hash(body)
    assert digest.startswith(idempotency.FINGERPRINT_VERSION) and len(digest) == 62  # fits the column (64)
    # Key order, and the per-send fields (ts, message_id, nonce), change nothing; what is asked does.
    reordered = {"ttl_ms": 60_000, "payload": {"a": "ü", "b": [1, 2.5, None]}, "type": "message", "ts": "t2"}
    assert idempotency.request_hash(reordered) == digest
    assert idempotency.request_hash({**body, "payload": {"a": "ü", "b": [1, 2.5]}}) != digest
    # An integer past 64 bits (valid JSON, beyond orjson) is fingerprinted too, the same each time.
    huge = {**body, "payload": {"n": 2**70}}
    assert idempotency.request_hash(huge) == idempotency.request_hash(dict(huge)) != digest


@pytest.mark.django_db
def test_a_record_written_with_the_fingerprint_before_versions_still_replays(api_client, new_agent, peer):
    key = new_agent.key.plaintext
    body = envelope(new_agent.agent, peer.agent, payload={"tiny": 1.5e-05, "big": 1e16})  # where the JSONs differ
    first = post_echo(api_client, body, key=key, HTTP_IDEMPOTENCY_KEY="op-old")
    assert first.status_code == 200, first.content
    legacy = idempotency.legacy_request_hash(body)
    assert legacy != idempotency.request_hash(body) and len(legacy) == 64
    IdempotencyRecord.objects.filter(key="op-old").update(request_hash=legacy)  # as the previous version wrote it

    replay = post_echo(api_client, {**body, "ts": "2030-01-01T00:00:00Z"}, key=key, HTTP_IDEMPOTENCY_KEY="op-old")
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    other = post_echo(api_client, {**body, "payload": {"tiny": 1}}, key=key, HTTP_IDEMPOTENCY_KEY="op-old")
    assert _code(other, 422) == "idempotency_key_reused"
