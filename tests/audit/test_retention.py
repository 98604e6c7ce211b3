"""Retention: archive to gzip JSON Lines with a manifest, purge in batches, chain verifies afterwards."""

import gzip
import hashlib
import json
import subprocess
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import chain
from audit.models import AuditChainAnchor, AuditLog
from coordination.models import IdempotencyRecord, MessageLog
from tests.audit.test_chain import _Sink, make_rows, tamper

pytestmark = pytest.mark.django_db

OLD = timezone.now() - timedelta(days=400)


def make_messages(org, count, *, created_at):
    ids = []
    for number in range(count):
        message = MessageLog.objects.create(
            organization=org,
            type="message",
            status="delivered",
            request_body={"payload": {"n": number}},
            response_body={"ok": True},
            received_at=created_at,
            correlation_id=f"msg-{number}",
        )
        MessageLog.objects.filter(pk=message.pk).update(created_at=created_at)  # auto_now_add otherwise
        ids.append(message.pk)
    return ids


def make_idempotency(org, count, *, expires_at, message=None):
    for number in range(count):
        IdempotencyRecord.objects.create(
            organization=org,
            scope="agent:x",
            key=f"key-{expires_at:%s}-{number}",
            request_hash="0" * 64,
            expires_at=expires_at,
            message=message,
        )


def read_jsonl_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def purge(tmp_path, *args):
    out = _Sink()
    call_command(
        "purge_records",
        "--archive-dir",
        str(tmp_path),
        "--audit-days",
        "365",
        "--message-days",
        "90",
        *args,
        stdout=out,
    )
    return out.text


def test_archive_then_purge_old_rows_and_keep_young_ones(tmp_path, org):
    make_rows(7, start=OLD)  # old
    make_rows(3, start=timezone.now() - timedelta(days=1))  # young
    old_messages = make_messages(org, 4, created_at=OLD)
    make_messages(org, 2, created_at=timezone.now())
    make_idempotency(
        org, 5, expires_at=timezone.now() - timedelta(hours=1), message=MessageLog.objects.get(pk=old_messages[0])
    )
    make_idempotency(org, 2, expires_at=timezone.now() + timedelta(hours=1))
    total_audit = AuditLog.objects.count()

    output = purge(tmp_path)

    [directory] = [p for p in tmp_path.iterdir() if p.is_dir()]
    manifest = json.loads((directory / "manifest.json").read_text())
    files = {entry["kind"]: entry for entry in manifest["files"]}
    assert set(files) == {"audit", "messages", "idempotency"}
    for entry in manifest["files"]:
        assert hashlib.sha256((directory / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    # `sha256sum -c SHA256SUMS` works as the README prints it.
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=directory, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    # The organization.created row of the fixture is young: only the 7 old rows go, sequence 1..7.
    audit_rows = read_jsonl_gz(directory / "audit.jsonl.gz")
    assert files["audit"]["rows"] == len(audit_rows) == 7
    assert [row["sequence"] for row in audit_rows] == list(range(1, 8))
    assert files["audit"]["first_sequence"] == 1 and files["audit"]["last_sequence"] == 7
    assert files["audit"]["previous_hash"] == chain.GENESIS_HASH
    assert files["audit"]["boundary_hash"] == audit_rows[-1]["row_hash"]
    assert all(chain.row_hash(row) == row["row_hash"] for row in audit_rows)  # archived rows re-verify
    assert manifest["audit_checkpoint"]["sequence"] == total_audit

    assert sorted(row["id"] for row in read_jsonl_gz(directory / "messages.jsonl.gz")) == sorted(
        str(pk) for pk in old_messages
    )
    assert files["messages"]["rows"] == 4 and files["idempotency"]["rows"] == 5

    assert AuditLog.objects.exclude(action="retention.purged").count() == total_audit - 7
    assert MessageLog.objects.count() == 2 and IdempotencyRecord.objects.count() == 2
    # Each purge is audited: one row per kind and organization, with its counts (the old audit rows have none).
    purges = {
        (row.details["table"], str(row.organization_id) if row.organization_id else None): row
        for row in AuditLog.objects.filter(action="retention.purged")
    }
    assert set(purges) == {("audit", None), ("messages", str(org.pk)), ("idempotency", str(org.pk))}
    assert [purges[key].details["rows"] for key in sorted(purges, key=str)] == [7, 5, 4]
    messages_purge = purges[("messages", str(org.pk))]
    assert messages_purge.actor_kind == "system" and messages_purge.resource_id == directory.name
    assert messages_purge.details["sha256"] == files["messages"]["sha256"]
    assert messages_purge.details["deliveries"] == 0 and messages_purge.details["file"] == "messages.jsonl.gz"
    assert AuditChainAnchor.objects.get().sequence == 7
    assert "audit: archived 7 row(s)" in output and "deleted 7" in output
    assert "sha256sum -c SHA256SUMS" in output

    # The chain still verifies, from the archive boundary, also against the manifest (kept off the database).
    out = _Sink()
    call_command("verify_audit", "--manifest", str(directory / "manifest.json"), stdout=out)
    assert "from sequence 8" in out.text and "audit chain OK" in out.text


def test_verify_after_purge_still_catches_tampering_and_a_forged_anchor(tmp_path):
    make_rows(5, start=OLD)
    make_rows(3, start=timezone.now())
    purge(tmp_path, "--only", "audit")
    [directory] = [p for p in tmp_path.iterdir() if p.is_dir()]
    # Someone deletes the first row after the boundary and moves the anchor to hide it.
    first = AuditLog.objects.sealed().order_by("sequence").first()
    tamper("DELETE FROM audit_auditlog WHERE sequence = %s", [first.sequence])
    with pytest.raises(CommandError):
        call_command("verify_audit", stdout=_Sink(), stderr=_Sink())
    AuditChainAnchor.objects.update(sequence=first.sequence, row_hash=first.row_hash)
    call_command("verify_audit", stdout=_Sink())  # the database alone is fooled ...
    err = _Sink()
    with pytest.raises(CommandError):  # ... the manifest outside it is not
        call_command("verify_audit", "--manifest", str(directory / "manifest.json"), stdout=_Sink(), stderr=err)
    assert "removed" in err.text


def test_dry_run_writes_and_deletes_nothing(tmp_path, org):
    make_rows(4, start=OLD)
    make_messages(org, 3, created_at=OLD)
    before = (AuditLog.objects.count(), MessageLog.objects.count())
    output = purge(tmp_path, "--dry-run")
    assert "messages: would archive and delete 3 row(s)" in output
    assert list(tmp_path.iterdir()) == []
    assert (AuditLog.objects.count(), MessageLog.objects.count()) == before


def test_deletes_run_in_small_batches(tmp_path, org):
    make_rows(10, start=OLD)
    make_messages(org, 7, created_at=OLD)
    with CaptureQueriesContext(connection) as queries:
        purge(tmp_path, "--batch-size", "3")
    audit_deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "audit_auditlog"')]
    message_deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "coordination_messagelog"')]
    assert len(audit_deletes) == 4  # 10 rows in batches of 3
    assert len(message_deletes) == 3  # 7 rows in batches of 3
    assert all("BETWEEN" in sql or ">=" in sql for sql in audit_deletes)
    assert not AuditLog.objects.filter(sequence__lte=10).exists()


def test_a_broken_chain_is_never_purged(tmp_path):
    make_rows(5, start=OLD)
    chain.seal()
    tamper("UPDATE audit_auditlog SET outcome = 'denied' WHERE sequence = 2")
    with pytest.raises(CommandError, match="does not verify at sequence 2"):
        purge(tmp_path, "--only", "audit")
    assert AuditLog.objects.count() == 5
    assert not AuditChainAnchor.objects.exists()


def test_unsealed_old_rows_are_sealed_first_and_rows_after_a_young_one_stay(tmp_path):
    make_rows(3, start=OLD)
    make_rows(1, start=timezone.now())
    chain.seal()
    make_rows(2, start=OLD + timedelta(hours=1))  # old, but sealed after a young row: kept with it
    output = purge(tmp_path, "--only", "audit")
    assert "audit: archived 3 row(s)" in output
    kept = AuditLog.objects.exclude(action="retention.purged")  # the purge's own row comes after the seal
    assert kept.count() == 3
    assert kept.unsealed().count() == 0


def test_progress_bar_only_on_a_terminal(tmp_path, capsys):
    make_rows(5, start=OLD)

    class Terminal(_Sink):
        def isatty(self):
            return True

    call_command("purge_records", "--archive-dir", str(tmp_path / "a"), "--only", "audit", stdout=Terminal())
    assert "purge audit" in capsys.readouterr().err
    make_rows(5, start=OLD + timedelta(days=1))
    call_command("purge_records", "--archive-dir", str(tmp_path / "b"), "--only", "audit", stdout=_Sink())
    assert "purge audit" not in capsys.readouterr().err


def test_unknown_kind_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="unknown kind"):
        purge(tmp_path, "--only", "audit,everything")
