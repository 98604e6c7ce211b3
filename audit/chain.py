"""Tamper evidence for the audit trail: a hash chain over sealed rows.

Rows are inserted unsealed on the request path. ``seal()`` (run by celery beat and by
``manage.py seal_audit``) takes unsealed rows in creation order and gives each a ``sequence``,
the ``previous_hash`` of the row before it and its own ``row_hash`` = SHA-256 of its canonical
JSON content (which includes sequence and previous_hash). Only one sealer works at a time
(a PostgreSQL advisory lock; the unique ``sequence`` column is the last line of defence), so the
chain cannot fork, and the request path never waits for it.

``verify()`` walks the chain in sequence order and names the first row that was changed,
removed or inserted. The head's (sequence, hash) is written to a checkpoint file outside the
database after each seal; a database user who rewrites the chain wholesale cannot make it agree
with checkpoints taken earlier.
"""

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditChainAnchor, AuditLog

logger = logging.getLogger("brikk.audit.chain")

GENESIS_HASH = "0" * 64
# An arbitrary constant that names Brikk's sealer lock among PostgreSQL advisory locks.
ADVISORY_LOCK_ID = 0x42524B4B_41554454  # "BRKK" "AUDT", fits PostgreSQL's bigint
SEAL_BATCH_SIZE = 1000

CONTENT_FIELDS = (
    "id",
    "created_at",
    "correlation_id",
    "actor_kind",
    "actor_id",
    "organization_id",
    "action",
    "resource_kind",
    "resource_id",
    "outcome",
    "client_ip",
    "user_agent",
    "details",
    "sequence",
    "previous_hash",
)


def _plain(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if value is None or isinstance(value, (str, int, float, bool, dict, list)):
        return value
    return str(value)  # UUIDs


def content(row: AuditLog | dict) -> dict:
    """The hashed content of a row (a model instance or an archived JSON object)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return {name: _plain(get(name)) for name in CONTENT_FIELDS}


def canonical_json(row: AuditLog | dict) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes for the same content on any database."""
    return json.dumps(content(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(row: AuditLog | dict) -> str:
    return hashlib.sha256(canonical_json(row)).hexdigest()


def archive_record(row: AuditLog) -> dict:
    """A row as written to an archive: its hashed content plus the seal."""
    record = content(row)
    record.update(row_hash=row.row_hash, sealed_at=_plain(row.sealed_at))
    return record


# --- Sealing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    sequence: int
    row_hash: str


def chain_start() -> Head:
    """The link before the first row in the database: the archive anchor, or the genesis."""
    anchor = AuditChainAnchor.objects.order_by("-sequence").first()
    if anchor is None:
        return Head(0, GENESIS_HASH)
    return Head(anchor.sequence, anchor.row_hash)


def head() -> Head:
    last = AuditLog.objects.sealed().order_by("-sequence").only("sequence", "row_hash").first()
    if last is None:
        return chain_start()
    return Head(last.sequence, last.row_hash)


def _take_sealer_lock() -> bool:
    """Within the current transaction, become the only sealer (PostgreSQL); False if another is sealing."""
    if connection.vendor != "postgresql":
        return True  # SQLite serializes writers; the unique sequence still guards the chain.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [ADVISORY_LOCK_ID])
        return bool(cursor.fetchone()[0])


def seal_batch(batch_size: int = SEAL_BATCH_SIZE) -> int | None:
    """Seal up to ``batch_size`` rows in one short transaction. None if another sealer holds the lock."""
    with transaction.atomic():
        if not _take_sealer_lock():
            return None
        current = head()
        rows = list(
            AuditLog.objects.unsealed().order_by("created_at", "id").select_for_update(skip_locked=True)[:batch_size]
        )
        now = timezone.now()
        sequence, previous = current.sequence, current.row_hash
        for row in rows:
            sequence += 1
            row.sequence = sequence
            row.previous_hash = previous
            row.row_hash = previous = row_hash(row)
            row.sealed_at = now
        if rows:
            AuditLog.objects.bulk_update(rows, ["sequence", "previous_hash", "row_hash", "sealed_at"])
    return len(rows)


def seal(batch_size: int = SEAL_BATCH_SIZE) -> int:
    """Seal every unsealed row, batch by batch. Returns how many this call sealed."""
    total = 0
    while True:
        sealed = seal_batch(batch_size)
        if not sealed:  # None (another sealer is at work) or 0 (nothing left)
            return total
        total += sealed


def write_checkpoint(current: Head, path: str | Path | None = None) -> str:
    """Append the head to the checkpoint file (BRIKK_AUDIT_CHECKPOINT_FILE) and return the line."""
    line = json.dumps(
        {"sequence": current.sequence, "row_hash": current.row_hash, "at": timezone.now().isoformat()},
        sort_keys=True,
    )
    path = path or settings.BRIKK_AUDIT_CHECKPOINT_FILE
    if path:
        with open(path, "a", encoding="utf-8") as checkpoints:
            checkpoints.write(line + "\n")
    return line


def read_checkpoints(path: str | Path) -> list[Head]:
    heads = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            heads.append(Head(int(data["sequence"]), str(data["row_hash"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number} is not a checkpoint line ({exc})") from None
    return heads


# --- Verification -----------------------------------------------------------------------------


@dataclass
class Problem:
    kind: str  # changed, removed, inserted, head_mismatch, truncated
    sequence: int | None
    row_id: str | None
    message: str


@dataclass
class Verification:
    checked: int = 0
    start: Head | None = None
    head: Head | None = None
    problems: list[Problem] = field(default_factory=list)
    unsealed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _sealed_rows(after: int, chunk_size: int = 2000) -> Iterator[AuditLog]:
    rows = AuditLog.objects.sealed().filter(sequence__gt=after).order_by("sequence")
    return rows.iterator(chunk_size=chunk_size)


def verify(checkpoints: list[Head] | None = None, start: Head | None = None) -> Verification:
    """Walk the sealed rows in order from ``start`` (default: the archive anchor or genesis).

    Stops at the first broken link and says what happened there: a row's content changed (its hash
    no longer matches), rows removed (a gap in the sequence), or a row inserted (the next row links
    past it). Then checks each checkpoint against the row with its sequence.
    """
    result = Verification(start=start or chain_start())
    previous = result.start
    before_previous: Head | None = None
    previous_id: str | None = None
    hashes_at: dict[int, str] = {}
    wanted = {checkpoint.sequence for checkpoint in checkpoints or []}

    for row in _sealed_rows(after=result.start.sequence):
        result.checked += 1
        stored = Head(row.sequence, row.row_hash)
        recomputed = row_hash(row)
        if row.sequence in wanted:
            hashes_at[row.sequence] = row.row_hash
        if row.sequence > previous.sequence + 1:
            missing = f"{previous.sequence + 1}" + (
                f"..{row.sequence - 1}" if row.sequence - 1 > previous.sequence + 1 else ""
            )
            result.problems.append(
                Problem(
                    "removed",
                    previous.sequence + 1,
                    None,
                    f"row(s) with sequence {missing} removed (between {previous_id or 'the chain start'} and {row.id})",
                )
            )
            break
        if row.previous_hash != previous.row_hash:
            if before_previous is not None and row.previous_hash == before_previous.row_hash:
                result.problems.append(
                    Problem(
                        "inserted",
                        previous.sequence,
                        previous_id,
                        f"row {previous_id} (sequence {previous.sequence}) was inserted: row {row.id} links past it",
                    )
                )
            elif recomputed != row.row_hash:
                result.problems.append(
                    Problem("changed", row.sequence, str(row.id), f"row {row.id} (sequence {row.sequence}) was changed")
                )
            else:
                result.problems.append(
                    Problem(
                        "changed",
                        previous.sequence,
                        previous_id,
                        f"row {previous_id or '(chain start)'} (sequence {previous.sequence}) was changed or "
                        f"replaced: row {row.id} does not link to it",
                    )
                )
            break
        if recomputed != row.row_hash:
            result.problems.append(
                Problem("changed", row.sequence, str(row.id), f"row {row.id} (sequence {row.sequence}) was changed")
            )
            break
        before_previous, previous, previous_id = previous, stored, str(row.id)

    result.head = previous
    if result.ok:
        for checkpoint in checkpoints or []:
            if checkpoint.sequence <= result.start.sequence:
                if checkpoint.sequence == result.start.sequence and checkpoint.row_hash != result.start.row_hash:
                    result.problems.append(
                        Problem(
                            "head_mismatch", checkpoint.sequence, None, "the archive boundary differs from a checkpoint"
                        )
                    )
                continue  # archived: verified against the archive, not the database
            if checkpoint.sequence > result.head.sequence:
                result.problems.append(
                    Problem(
                        "truncated",
                        checkpoint.sequence,
                        None,
                        f"checkpoint at sequence {checkpoint.sequence} is past the chain's head "
                        f"({result.head.sequence}): sealed rows were removed from the end",
                    )
                )
            elif hashes_at.get(checkpoint.sequence) != checkpoint.row_hash:
                result.problems.append(
                    Problem(
                        "head_mismatch",
                        checkpoint.sequence,
                        None,
                        f"the row with sequence {checkpoint.sequence} does not match the checkpoint: "
                        "the chain was rewritten",
                    )
                )
            if result.problems:
                break
    result.unsealed = AuditLog.objects.unsealed().count()
    return result
