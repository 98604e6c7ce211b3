"""Tamper evidence: sealing in order off the request path, and verify_audit naming what changed."""

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from audit import chain, tasks
from audit.models import AuditDeletionRefused, AuditLog
from audit.services import record

pytestmark = pytest.mark.django_db


def make_rows(count, *, action="test.event", start=None):
    start = start or timezone.now() - timedelta(minutes=10)
    for number in range(count):
        AuditLog.objects.create(
            created_at=start + timedelta(seconds=number),
            correlation_id=f"corr-{number:04d}",
            actor_kind="system",
            action=action,
            outcome="success",
            details={"n": number, "nested": {"b": 1, "a": [1, 2]}},
        )


def tamper(sql, params=()):
    """Run SQL as an attacker with direct database access (on PostgreSQL: bypassing our triggers)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params)
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = origin")


def verify_fails(*args):
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit", *args, stdout=_Sink(), stderr=(err := _Sink()))
    assert failure.value.returncode == 1
    return err.text


class _Sink:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def row_at(sequence):
    return AuditLog.objects.get(sequence=sequence)


def test_record_writes_unsealed_rows_and_sealing_chains_them_in_creation_order():
    make_rows(5)
    assert AuditLog.objects.unsealed().count() == 5
    assert chain.seal(batch_size=2) == 5
    rows = list(AuditLog.objects.order_by("sequence"))
    assert [row.sequence for row in rows] == [1, 2, 3, 4, 5]
    assert [row.correlation_id for row in rows] == [f"corr-{n:04d}" for n in range(5)]
    assert rows[0].previous_hash == chain.GENESIS_HASH
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.previous_hash == before.row_hash
    assert all(row.row_hash == chain.row_hash(row) and row.sealed_at for row in rows)
    assert chain.seal() == 0  # nothing left: sealing twice changes nothing
    assert chain.verify().ok


def test_canonical_json_is_stable_and_covers_the_content():
    make_rows(1)
    chain.seal()
    row = AuditLog.objects.get()
    canonical = chain.canonical_json(row)
    assert canonical == chain.canonical_json(chain.archive_record(row))  # archive form hashes the same
    data = json.loads(canonical)
    assert set(data) == set(chain.CONTENT_FIELDS)
    assert b" " not in canonical.replace(b"test.event", b"")  # no whitespace between tokens
    assert list(data) == sorted(data)


def test_verify_passes_on_an_intact_chain_and_prints_the_head():
    make_rows(4)
    call_command("seal_audit", stdout=_Sink())
    out = _Sink()
    call_command("verify_audit", stdout=out)
    assert "audit chain OK" in out.text
    assert f"head sequence=4 hash={row_at(4).row_hash}" in out.text


def test_a_row_edited_in_sql_is_named():
    make_rows(6)
    chain.seal()
    edited = row_at(4)
    tamper(
        "UPDATE audit_auditlog SET outcome = %s WHERE id = %s",
        ["failure", edited.pk.hex if connection.vendor == "sqlite" else edited.pk],
    )
    err = verify_fails()
    assert f"row {edited.pk} (sequence 4) was changed" in err


def test_a_deleted_row_is_named():
    make_rows(6)
    chain.seal()
    removed = row_at(3)
    tamper("DELETE FROM audit_auditlog WHERE sequence = 3")
    err = verify_fails()
    assert "sequence 3 removed" in err
    assert str(row_at(2).pk) in err and str(row_at(4).pk) in err
    assert str(removed.pk) not in err  # gone; named by its sequence and neighbours


def test_a_forged_row_inserted_into_the_chain_is_named():
    make_rows(6)
    chain.seal()
    # The forger makes room at sequence 4 and inserts a row that links correctly to row 3.
    tamper("UPDATE audit_auditlog SET sequence = sequence + 100 WHERE sequence >= 4")
    tamper("UPDATE audit_auditlog SET sequence = sequence - 99 WHERE sequence >= 104")
    forged = AuditLog(
        id=uuid.uuid4(),
        created_at=row_at(3).created_at,
        correlation_id="forged",
        actor_kind="user",
        actor_id="1",
        action="agent.deleted",
        outcome="success",
        details={},
        sequence=4,
        previous_hash=row_at(3).row_hash,
        sealed_at=timezone.now(),
    )
    forged.row_hash = chain.row_hash(forged)
    AuditLog.objects.bulk_create([forged])
    err = verify_fails()
    assert f"row {forged.pk} (sequence 4) was inserted" in err


def test_rows_removed_from_the_end_are_caught_by_a_checkpoint(tmp_path):
    make_rows(5)
    checkpoint_file = tmp_path / "checkpoints.jsonl"
    out = _Sink()
    call_command("seal_audit", "--checkpoint-file", str(checkpoint_file), stdout=out)
    head = chain.head()
    assert f"head sequence=5 hash={head.row_hash}" in out.text
    assert json.loads(checkpoint_file.read_text().splitlines()[-1])["row_hash"] == head.row_hash

    tamper("DELETE FROM audit_auditlog WHERE sequence >= 4")
    call_command("verify_audit", stdout=_Sink())  # without the checkpoint the shorter chain looks whole
    err = verify_fails("--checkpoint-file", str(checkpoint_file))
    assert "checkpoint at sequence 5 is past the chain's head (3)" in err
    err = verify_fails("--checkpoint", f"5:{head.row_hash}")
    assert "past the chain's head" in err


def test_a_chain_rewritten_wholesale_disagrees_with_the_checkpoint(tmp_path, settings):
    settings.BRIKK_AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    make_rows(4)
    call_command("seal_audit", stdout=_Sink())
    # The attacker edits row 2 and recomputes every hash after it, so the links all hold.
    tamper("UPDATE audit_auditlog SET action = 'nothing.happened' WHERE sequence = 2")
    previous = row_at(1).row_hash
    for sequence in (2, 3, 4):
        row = row_at(sequence)
        row.previous_hash = previous
        row.row_hash = previous = chain.row_hash(row)
        tamper(
            "UPDATE audit_auditlog SET previous_hash = %s, row_hash = %s WHERE sequence = %s",
            [row.previous_hash, row.row_hash, sequence],
        )
    err = verify_fails()  # BRIKK_AUDIT_CHECKPOINT_FILE is read by default
    assert "the row with sequence 4 does not match the checkpoint" in err


def test_audit_rows_cannot_be_deleted_through_the_orm():
    make_rows(2)
    with pytest.raises(AuditDeletionRefused):
        AuditLog.objects.all().delete()
    with pytest.raises(AuditDeletionRefused):
        AuditLog.objects.first().delete()
    assert AuditLog.objects.count() == 2


def test_the_celery_task_seals_and_writes_a_checkpoint(tmp_path, settings):
    settings.BRIKK_AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    record("agent.updated")
    assert tasks.seal_audit.apply().get() == 1  # the task as the worker runs it
    assert AuditLog.objects.get().sequence == 1
    assert json.loads((tmp_path / "checkpoints.jsonl").read_text())["sequence"] == 1


def test_celery_beat_schedules_the_sealer():
    from brikk.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["audit-seal"]
    assert entry["task"] == tasks.seal_audit.name == "audit.seal"
    assert entry["schedule"] == settings.BRIKK_AUDIT_SEAL_INTERVAL_SECONDS
    app.loader.import_default_modules()
    assert "audit.seal" in app.tasks


# --- PostgreSQL: triggers and concurrent sealers ----------------------------------------------


@pytest.mark.pg_redis
def test_postgresql_refuses_ad_hoc_deletes_and_edits_of_sealed_rows():
    make_rows(2)
    chain.seal()
    AuditLog.objects.create(
        created_at=timezone.now(), correlation_id="x", actor_kind="system", action="a", outcome="success"
    )
    for statement in (
        "DELETE FROM audit_auditlog WHERE sequence = 1",
        "UPDATE audit_auditlog SET outcome = 'failure' WHERE sequence = 2",
    ):
        with pytest.raises(DatabaseError, match="audit"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    # Unsealed rows can still be sealed (updated); sealed ones stay as they were.
    assert chain.seal() == 1
    assert chain.verify().ok
    assert AuditLog.objects.count() == 3


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sealers_never_fork_the_chain():
    make_rows(600)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def sealer():
        try:
            barrier.wait()
            total = 0
            for _ in range(200):
                total += chain.seal(batch_size=25)
            results.append(total)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sealer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(results) == 600
    sequences = list(AuditLog.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, 601))
    assert chain.verify().ok


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_a_second_sealer_backs_off_while_the_first_holds_the_lock():
    make_rows(3)
    holding, release = threading.Event(), threading.Event()

    def first_sealer():
        with transaction.atomic():
            assert chain._take_sealer_lock()
            holding.set()
            release.wait(10)
        connections.close_all()

    thread = threading.Thread(target=first_sealer)
    thread.start()
    assert holding.wait(10)
    try:
        assert chain.seal_batch() is None  # another sealer is at work: skip, don't wait, don't fork
        assert AuditLog.objects.unsealed().count() == 3
    finally:
        release.set()
        thread.join()
    assert chain.seal() == 3
