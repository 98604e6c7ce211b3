"""brikk.lib.bulk: model instances built the fast way, and many rows in one INSERT that read back as saved."""

import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import signals
from django.utils import timezone

from audit.models import AuditLog
from brikk.lib import bulk
from coordination.models import IdempotencyRecord, MessageLog
from tests.support.counting import database_transactions


def test_an_instance_has_the_given_values_and_every_default_of_keyword_construction():
    fast = bulk.instance(AuditLog, action="x.y", actor_kind="agent", created_at=timezone.now())
    slow = AuditLog(action="x.y", actor_kind="agent", created_at=fast.created_at)
    assert isinstance(fast.id, uuid.UUID) and fast.id != slow.id  # a callable default, called for each
    assert fast.details == {} and fast.details is not bulk.instance(AuditLog).details
    for field in AuditLog._meta.concrete_fields:
        if field.name not in ("id", "details"):
            assert getattr(fast, field.attname) == getattr(slow, field.attname), field.name
    assert fast._state.adding
    with pytest.raises(TypeError, match="unexpected fields: sender"):
        bulk.instance(MessageLog, sender=None)


def _rows(org, count):
    now = timezone.now()
    details = {"quote": 'say "hi"\\n', "unicode": "žluťoučký 🐎", "nested": {"list": [1, 2.5, None, True]}}
    return [
        bulk.instance(
            AuditLog,
            created_at=now - timedelta(seconds=n),
            correlation_id=f"bulk-{n}",
            actor_kind="agent",
            actor_id=str(n),
            organization_id=org.pk,
            action="echo.delivered",
            resource_kind="message",
            resource_id=str(uuid.uuid4()),
            outcome="success",
            client_ip="127.0.0.1" if n else None,
            details={**details, "n": n},
        )
        for n in range(count)
    ]


@pytest.mark.django_db
def test_rows_inserted_read_back_as_they_were_built(org):
    rows = _rows(org, 3)
    bulk.insert(rows)
    for row in rows:
        stored = AuditLog.objects.get(pk=row.pk)
        for field in AuditLog._meta.concrete_fields:
            assert getattr(stored, field.attname) == getattr(row, field.attname), field.name
    assert not rows[0]._state.adding
    bulk.insert([])  # nothing to do


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_many_rows_are_one_statement_and_read_back_as_built(org):
    rows = _rows(org, 50)
    with database_transactions() as db:
        bulk.insert(rows)
    assert len(db.autocommit) == 1 and "jsonb_populate_recordset" in db.autocommit[0]
    assert connection.vendor == "postgresql"
    for row in rows[:5]:
        stored = AuditLog.objects.get(pk=row.pk)
        for field in AuditLog._meta.concrete_fields:
            assert getattr(stored, field.attname) == getattr(row, field.attname), field.name
    # A primary key left to the database, and timestamps set as saving sets them.
    record = bulk.instance(
        IdempotencyRecord, organization_id=org.pk, scope="agent:x", key="k", request_hash="h", expires_at=timezone.now()
    )
    bulk.insert([record])
    stored = IdempotencyRecord.objects.get(key="k")
    assert stored.created_at == record.created_at and stored.response_body is None


@pytest.mark.django_db
def test_rows_given_as_values_are_inserted_as_instances_would_be(org):
    """insert_values: the same rows as instance() + insert(), each field's default for what a row leaves out."""
    built = _rows(org, 3)
    given = [{f.attname: getattr(row, f.attname) for f in AuditLog._meta.concrete_fields} for row in built]
    for values in given:
        del values["id"]  # the field's default: a new UUID each
    bulk.insert_values(AuditLog, given)
    stored = {row.correlation_id: row for row in AuditLog.objects.filter(correlation_id__startswith="bulk-")}
    assert len(stored) == 3 and len({row.pk for row in stored.values()}) == 3
    for row in built:
        for field in AuditLog._meta.concrete_fields:
            if field.name != "id":
                assert getattr(stored[row.correlation_id], field.attname) == getattr(row, field.attname), field.name
    # A primary key left to the database, and timestamps set as saving sets them.
    bulk.insert_values(
        IdempotencyRecord,
        [
            {
                "organization_id": org.pk,
                "scope": "agent:x",
                "key": f"k{n}",
                "request_hash": "h",
                "expires_at": timezone.now(),
            }
            for n in range(2)
        ],
    )
    records = list(IdempotencyRecord.objects.filter(scope="agent:x").order_by("key"))
    assert [r.key for r in records] == ["k0", "k1"] and records[0].pk != records[1].pk
    assert None not in (records[0].created_at, records[1].created_at)
    with pytest.raises(TypeError, match="unexpected fields: sender"):
        bulk.insert_values(AuditLog, [{"sender": None}])
    bulk.insert_values(AuditLog, [])  # nothing to do


def test_an_instance_is_built_by_the_model_itself_while_anything_listens_to_its_init_signals():
    seen = []

    def listener(sender, **kwargs):
        seen.append(sender)

    signals.post_init.connect(listener, sender=AuditLog)
    try:
        built = bulk.instance(AuditLog, action="x.y")
    finally:
        signals.post_init.disconnect(listener, sender=AuditLog)
    assert seen == [AuditLog] and built.action == "x.y" and built._state.adding
    seen.clear()
    bulk.instance(AuditLog, action="x.y")
    assert seen == []


def test_the_json_document_takes_what_the_models_hold_and_integers_past_64_bits():
    moment = timezone.now()
    ident = uuid.uuid4()
    document = bulk.json_document({"id": ident, "at": moment, "n": [1, 2.5, None, True], "text": 'é "q"'})
    assert json.loads(document) == {
        "id": str(ident),
        "at": moment.isoformat(),
        "n": [1, 2.5, None, True],
        "text": 'é "q"',
    }
    huge = 10**30  # JSON and jsonb take it; orjson does not, the json module does
    assert json.loads(bulk.json_document({"huge": huge, "id": ident})) == {"huge": huge, "id": str(ident)}
    with pytest.raises(TypeError, match="object is not stored"):
        bulk.json_document({"what": object()})


@pytest.mark.django_db
def test_a_payload_integer_past_64_bits_is_stored_as_sent(org):
    row = _rows(org, 1)[0]
    row.details = {"huge": 10**30}
    bulk.insert([row])
    assert AuditLog.objects.get(pk=row.pk).details == {"huge": 10**30}
