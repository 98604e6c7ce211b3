"""The delivered echo's one statement on PostgreSQL (coordination/echo_statement.py): it stores exactly what the
ORM stores, writes nothing when its gate does not hold, and a unique violation undoes all of it."""

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import IntegrityError
from uuid6 import uuid7

from agents import services as agent_services
from agents.models import Agent
from audit.actions import AuditAction
from audit.models import AuditLog
from audit.services import prepare
from coordination import echo_statement, idempotency
from coordination.answers import answer_of
from coordination.models import IdempotencyRecord, MessageLog
from tests.support.coordination import envelope, post_echo
from tests.support.live import database_url

pytestmark = [pytest.mark.pg_redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def _rows(message, *, key="op-1"):
    moment = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    record = IdempotencyRecord(
        organization_id=message.organization_id,
        scope=f"agent:{message.sender_id}",
        key=key,
        request_hash="f" * 64,
        response_status=200,
        response_body={"id": str(message.pk), "nested": [1, 2.5, None, "ü"]},
        created_at=moment,
        expires_at=moment + timedelta(days=1),
    )
    audit = prepare(
        AuditAction.ECHO_DELIVERED,
        organization_id=message.organization_id,
        actor_kind="agent",
        actor_id=str(message.sender_id),
        resource_kind="message",
        resource_id=message.pk,
        details={"message_id": str(message.message_id), "attempts": 1, "text": "zwölf €"},
    )
    audit.client_ip = "2001:db8::1"
    audit.user_agent = "brikk-tests/1 (ä)"
    return record, audit


def _message(org, sender, recipient, **fields):
    moment = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    values = {
        "id": uuid7(),
        "organization_id": str(org.pk),
        "message_id": uuid.uuid4(),
        "sender_id": sender.pk,
        "recipient_id": recipient.pk,
        "type": MessageLog.Type.EVENT,
        "status": MessageLog.Status.DELIVERED,
        "auth_method": "hmac",
        "actor_kind": "agent",
        "actor_id": str(sender.pk),
        "http_status": 200,
        "request_body": {"payload": {"deep": [{"x": 1e-7}, True, "\u00e9\u4e2d"]}, "n": 12345678901234567890},
        "response_body": {"status": "delivered"},
        "attempts": 1,
        "latency_ms": 1.234567,
        "correlation_id": "corr-1",
        "idempotency_key": "op-1",
        "received_at": moment,
        "responded_at": moment + timedelta(microseconds=7),
        "created_at": moment + timedelta(microseconds=8),
        "updated_at": moment + timedelta(microseconds=8),
        "delivery_state": MessageLog.Delivery.QUEUED,
        "available_at": moment + timedelta(microseconds=7),
        "expires_at": moment + timedelta(hours=1),
    }
    return MessageLog(**{**values, **fields})


def _stored(instance):
    loaded = type(instance).objects.get(pk=instance.pk)
    fields = [f.attname for f in type(instance)._meta.concrete_fields if f.name not in ("id", "in_reply_to")]
    return {name: getattr(loaded, name) for name in fields}


def _as_given(instance, **expected):
    fields = [f for f in type(instance)._meta.concrete_fields if f.name not in ("id", "in_reply_to")]
    values = {f.attname: f.to_python(getattr(instance, f.attname)) for f in fields}
    return {**values, **expected}


def test_the_statement_stores_every_column_as_the_orm_would(org, new_agent, peer):
    message = _message(org, new_agent.agent, peer.agent)
    record, audit = _rows(message)

    assert echo_statement.deliver(
        message, record, audit, lock=idempotency.lock_id(record.scope, record.key), reply_to=None
    )

    assert _stored(message) == _as_given(message, organization_id=org.pk)
    stored_record = IdempotencyRecord.objects.get(scope=record.scope, key=record.key)
    assert stored_record.message_id == message.pk
    record.pk = stored_record.pk
    assert _stored(record) == _as_given(record, organization_id=org.pk, message_id=message.pk)
    assert _stored(audit) == _as_given(audit, organization_id=org.pk)
    assert MessageLog.objects.get(pk=message.pk).in_reply_to_id is None


def test_a_reply_is_linked_to_the_message_it_answers(org, new_agent, peer):
    asked = _message(org, peer.agent, new_agent.agent)
    assert echo_statement.deliver(asked, None, _rows(asked)[1], lock=None, reply_to=None)
    answer = _message(org, new_agent.agent, peer.agent)

    assert echo_statement.deliver(answer, None, _rows(answer)[1], lock=None, reply_to=asked.message_id)

    assert MessageLog.objects.get(pk=answer.pk).in_reply_to_id == asked.pk
    unrelated = _message(org, new_agent.agent, peer.agent)
    assert echo_statement.deliver(unrelated, None, _rows(unrelated)[1], lock=None, reply_to=uuid.uuid4())
    assert MessageLog.objects.get(pk=unrelated.pk).in_reply_to_id is None


def _nothing_written():
    return (
        not MessageLog.objects.exists()
        and not IdempotencyRecord.objects.exists()
        and not AuditLog.objects.filter(action=AuditAction.ECHO_DELIVERED).exists()
    )


def test_a_key_in_flight_writes_nothing(org, new_agent, peer):
    message = _message(org, new_agent.agent, peer.agent)
    record, audit = _rows(message)
    lock = idempotency.lock_id(record.scope, record.key)
    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [lock])
        assert not echo_statement.deliver(message, record, audit, lock=lock, reply_to=None)
    assert _nothing_written()


def test_a_key_with_a_record_writes_nothing(org, new_agent, peer):
    first = _message(org, new_agent.agent, peer.agent)
    record, audit = _rows(first)
    assert echo_statement.deliver(first, record, audit, lock=1, reply_to=None)
    second = _message(org, new_agent.agent, peer.agent)
    record, audit = _rows(second)  # the same key

    assert not echo_statement.deliver(second, record, audit, lock=1, reply_to=None)

    assert not MessageLog.objects.filter(pk=second.pk).exists()
    assert IdempotencyRecord.objects.count() == 1 and AuditLog.objects.filter(action="echo.delivered").count() == 1


@pytest.mark.parametrize("who", ["sender", "recipient"])
@pytest.mark.parametrize("status", [Agent.Status.MAINTENANCE, Agent.Status.DELETED])
def test_an_agent_that_may_not_take_part_writes_nothing(org, new_agent, peer, who, status):
    Agent.objects.filter(pk=(new_agent if who == "sender" else peer).agent.pk).update(status=status)
    message = _message(org, new_agent.agent, peer.agent)

    assert not echo_statement.deliver(message, *_rows(message), lock=1, reply_to=None)

    assert _nothing_written()


def test_an_agent_of_another_organization_writes_nothing(org, make_org, make_agent, new_agent):
    stranger = make_agent(make_org("Elsewhere"), name="stranger").agent
    message = _message(org, new_agent.agent, stranger)

    assert not echo_statement.deliver(message, *_rows(message), lock=1, reply_to=None)

    assert _nothing_written()


def test_an_agent_may_send_to_itself(org, new_agent):
    message = _message(org, new_agent.agent, new_agent.agent)
    assert echo_statement.deliver(message, *_rows(message), lock=1, reply_to=None)


def test_a_unique_violation_undoes_the_whole_statement(org, new_agent, peer):
    first = _message(org, new_agent.agent, peer.agent)
    assert echo_statement.deliver(first, *_rows(first), lock=1, reply_to=None)
    reused = _message(org, new_agent.agent, peer.agent, message_id=first.message_id)

    with pytest.raises(IntegrityError):
        echo_statement.deliver(reused, *_rows(reused, key="op-2"), lock=2, reply_to=None)

    assert list(MessageLog.objects.values_list("pk", flat=True)) == [first.pk]
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["op-1"]
    assert AuditLog.objects.filter(action="echo.delivered").count() == 1


_VARYING = {"id", "message_id", "created_at", "updated_at", "received_at", "responded_at", "available_at"}


def _comparable(message: MessageLog) -> dict:
    row = {f.attname: getattr(message, f.attname) for f in MessageLog._meta.concrete_fields if f.name not in _VARYING}
    row.pop("expires_at"), row.pop("latency_ms"), row.pop("correlation_id"), row.pop("idempotency_key")
    row["request_body"] = {k: v for k, v in row["request_body"].items() if k not in ("message_id", "ts")}
    answer = answer_of(message)
    row["answer"] = (sorted(answer), answer["status"], answer["auth"], sorted(answer["delivery"].items())[:1])
    return row


def _audit(message: MessageLog) -> dict:
    row = AuditLog.objects.values().get(resource_id=str(message.pk))
    for name in ("id", "created_at", "resource_id", "correlation_id"):
        row.pop(name)
    row["details"].pop("message_id")
    return row


def test_an_echo_through_the_statement_stores_what_the_transaction_stores(api_client, new_agent, peer, monkeypatch):
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    statement = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, secret=secret)
    monkeypatch.setattr(echo_statement, "applies", lambda using="default": False)
    orm = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, secret=secret)

    assert statement.status_code == orm.status_code == 200
    assert set(statement.json()) == set(orm.json())
    assert set(statement.headers) == set(orm.headers)
    by_statement = MessageLog.objects.get(pk=statement.json()["id"])
    by_orm = MessageLog.objects.get(pk=orm.json()["id"])
    assert _comparable(by_statement) == _comparable(by_orm)
    assert by_statement.response_body is None and by_orm.response_body is None
    assert answer_of(by_statement) == statement.json() and answer_of(by_orm) == orm.json()
    assert _audit(by_statement) == _audit(by_orm)
    records = {r.message_id: r for r in IdempotencyRecord.objects.all()}
    assert records[by_statement.pk].response_body is None and records[by_orm.pk].response_body is None
    assert records[by_statement.pk].request_hash == idempotency.request_hash(by_statement.request_body)
    window = timedelta(seconds=settings.BRIKK_IDEMPOTENCY_TTL_SECONDS)
    assert records[by_statement.pk].expires_at - records[by_statement.pk].created_at == window
    assert abs(records[by_orm.pk].expires_at - records[by_orm.pk].created_at - window) < timedelta(seconds=1)


def test_refusals_and_replays_are_answered_by_the_transaction(api_client, new_agent, peer):
    """When the gate does not hold, echo.py's transaction answers, exactly as before."""
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    body = envelope(new_agent.agent, peer.agent)
    assert post_echo(api_client, body, key=key, secret=secret).status_code == 200
    replay = post_echo(api_client, body, key=key, secret=secret)
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    reused = post_echo(api_client, {**body, "payload": {"other": 1}}, key=key, secret=secret)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    Agent.objects.filter(pk=peer.agent.pk).update(status=Agent.Status.MAINTENANCE)
    refused = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, secret=secret)
    assert refused.status_code == 422, refused.content
    assert refused.json()["details"] == {"recipient": {"agent_id": ["Not an active agent of your organization."]}}
    assert MessageLog.objects.filter(status="delivered").count() == 1
