"""Retention: archive old rows, then purge them. Audit rows are this app's own kind; every other app
registers the tables it keeps for a while (``register``, e.g. coordination/retention.py), and one run
archives and purges them all together.

Each run writes one directory under the archive root::

    <archive-dir>/<UTC time>/audit.jsonl.gz        sealed audit rows, in sequence order
                            messages.jsonl.gz     message logs
                            idempotency.jsonl.gz  expired idempotency records
                            manifest.json         per file: sha256, rows, and for audit the
                                                  first/last sequence and boundary hash
                            SHA256SUMS            for ``sha256sum -c SHA256SUMS``

Nothing is deleted before its archive and the manifest are written and flushed to disk. Deletes run
in small batches by primary-key (or sequence) ranges, each batch its own short transaction, so a
purge never holds a lock on a table for long. Audit rows are purged only up to a sealed boundary
whose chain verifies; the boundary becomes the chain's new start (``AuditChainAnchor``) so that
``verify_audit`` goes on verifying from there.

Only what was archived is purged: a table that records when its rows change (``TableKind.changed_at``)
leaves rows changed since the run began for the next run, and each batch deletes exactly the rows it
locked. Rows that go with a row (``TableKind.attach``: a message's delivery attempts, deleted with it by
CASCADE) are archived inside its record. Each purge is audited: one ``retention.purged`` row per kind and
organization, with the counts.
"""

import gzip
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit import chain
from audit.actions import AuditAction
from audit.models import AuditChainAnchor, AuditLog, purge_allowed
from audit.services import record

AUDIT = "audit"
AUDIT_FILE_NAME = "audit.jsonl.gz"
DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True)
class TableKind:
    """A table an app archives and purges by age: ``older_than(cutoff)`` is what may go.

    ``changed_at``: a field set on every change of a row (so rows changed once the run began are left for the
    next one: nothing is purged in another state than it was archived in). ``attach``: adds, to a batch of
    rows (dicts), the rows that go with them when they are deleted (CASCADE), under ``attached`` in each."""

    name: str
    file_name: str
    older_than: Callable[[datetime], QuerySet]
    changed_at: str = ""
    attach: Callable[[list[dict]], None] | None = None
    attached: str = ""


_table_kinds: dict[str, TableKind] = {}


def register(kind: TableKind) -> None:
    """Called from an app's ``ready()``. Purge order is registration order (register a table whose
    rows point at another table's before that one), audit rows last."""
    _table_kinds[kind.name] = kind


def kinds() -> tuple[str, ...]:
    return (*_table_kinds, AUDIT)


class RetentionError(Exception):
    pass


@dataclass
class Selection:
    """What one kind's purge will take: the rows and, for audit, the chain boundary."""

    kind: str
    cutoff: datetime
    rows: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    previous_hash: str | None = None  # the link before the first archived audit row
    boundary_hash: str | None = None  # row_hash of the last archived audit row
    unsealed_skipped: int = 0


@dataclass
class ArchivedFile:
    kind: str
    name: str
    sha256: str
    rows: int
    ranges: list[tuple] = field(default_factory=list)  # primary-key (or sequence) ranges, for the deletes
    organizations: Counter = field(default_factory=Counter)  # rows archived per organization id
    attached: Counter = field(default_factory=Counter)  # rows archived with them (``TableKind.attach``)


@dataclass
class Report:
    directory: Path | None
    selections: dict[str, Selection]
    deleted: dict[str, int] = field(default_factory=dict)
    deleted_attached: dict[str, int] = field(default_factory=dict)  # e.g. messages' delivery attempts


# --- What goes ------------------------------------------------------------------------------


def select_audit(cutoff: datetime) -> Selection:
    """Sealed rows after the chain start up to the last sequence before the first row at/after cutoff.

    A row is purged only if every row sealed before it is purged too, so the chain keeps one start.
    """
    selection = Selection(AUDIT, cutoff)
    start = chain.chain_start()
    sealed = AuditLog.objects.sealed().filter(sequence__gt=start.sequence)
    first_young = sealed.filter(created_at__gte=cutoff).order_by("sequence").values_list("sequence", flat=True)
    young = first_young.first()
    last = young - 1 if young is not None else chain.head().sequence
    selection.unsealed_skipped = AuditLog.objects.unsealed().filter(created_at__lt=cutoff).count()
    if last <= start.sequence:
        return selection
    selection.first_sequence, selection.last_sequence = start.sequence + 1, last
    selection.rows = last - start.sequence
    selection.previous_hash = start.row_hash
    selection.boundary_hash = AuditLog.objects.get(sequence=last).row_hash
    return selection


def candidates(kind: str, cutoff: datetime, as_of: datetime | None = None) -> QuerySet:
    """What a table kind's run may archive and purge: older than the cutoff, unchanged since ``as_of``."""
    table = _table_kinds[kind]
    queryset = table.older_than(cutoff)
    if table.changed_at and as_of is not None:
        queryset = queryset.filter(**{f"{table.changed_at}__lt": as_of})
    return queryset


def select_rows(kind: str, cutoff: datetime, as_of: datetime | None = None) -> Selection:
    if kind == AUDIT:
        return select_audit(cutoff)
    return Selection(kind, cutoff, rows=candidates(kind, cutoff, as_of).count())


# --- Archive --------------------------------------------------------------------------------


def _keyset(queryset, batch_size: int) -> Iterator[list[dict]]:
    """Rows as dicts in primary-key order, one batch at a time (no OFFSET, no long cursor)."""
    last = None
    while True:
        page = queryset.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        batch = list(page.values()[:batch_size])
        if not batch:
            return
        yield batch
        last = batch[-1]["id"]


def _audit_batches(selection: Selection, batch_size: int) -> Iterator[list[AuditLog]]:
    low = selection.first_sequence
    while low <= selection.last_sequence:
        high = min(low + batch_size - 1, selection.last_sequence)
        yield list(AuditLog.objects.filter(sequence__gte=low, sequence__lte=high).order_by("sequence"))
        low = high + 1


class _HashingWriter:
    """A binary file that hashes what is written to it."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, data):
        self.sha256.update(data)
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()


def _write_gzip_jsonl(path: Path, lines: Iterable[list[dict]], progress: Callable[[int], None]) -> tuple[str, int]:
    rows = 0
    with open(path, "wb") as raw:
        hashing = _HashingWriter(raw)
        with gzip.GzipFile(filename=path.name[: -len(".gz")], mode="wb", fileobj=hashing, mtime=0) as archive:
            for batch in lines:
                for record in batch:
                    archive.write(json.dumps(record, cls=DjangoJSONEncoder, sort_keys=True).encode() + b"\n")
                rows += len(batch)
                progress(len(batch))
        raw.flush()
        os.fsync(raw.fileno())
    return hashing.sha256.hexdigest(), rows


def archive_audit(directory: Path, selection: Selection, batch_size: int, progress) -> ArchivedFile:
    """Write the selected sealed rows, checking every link on the way: a broken chain is never purged."""
    expected_previous = selection.previous_hash
    expected_sequence = selection.first_sequence
    ranges, organizations = [], Counter()

    def records():
        nonlocal expected_previous, expected_sequence
        for batch in _audit_batches(selection, batch_size):
            for row in batch:
                if (
                    row.sequence != expected_sequence
                    or row.previous_hash != expected_previous
                    or chain.row_hash(row) != row.row_hash
                ):
                    raise RetentionError(
                        f"the audit chain does not verify at sequence {expected_sequence} (row {row.id}); "
                        "run manage.py verify_audit; nothing was purged"
                    )
                expected_previous, expected_sequence = row.row_hash, row.sequence + 1
                organizations[str(row.organization_id) if row.organization_id else None] += 1
            ranges.append((batch[0].sequence, batch[-1].sequence) if batch else None)
            yield [chain.archive_record(row) for row in batch]

    name = AUDIT_FILE_NAME
    digest, rows = _write_gzip_jsonl(directory / name, records(), progress)
    if rows != selection.rows:
        raise RetentionError(
            f"expected {selection.rows} audit rows from sequence {selection.first_sequence}, found {rows}: "
            "rows are missing from the chain; run manage.py verify_audit; nothing was purged"
        )
    return ArchivedFile(AUDIT, name, digest, rows, [r for r in ranges if r], organizations)


def archive_table(
    directory: Path, kind: str, cutoff: datetime, batch_size: int, progress, as_of: datetime | None = None
) -> ArchivedFile:
    table = _table_kinds[kind]
    queryset = candidates(kind, cutoff, as_of)
    ranges, organizations, attached = [], Counter(), Counter()

    def batches():
        for batch in _keyset(queryset, batch_size):
            ranges.append((batch[0]["id"], batch[-1]["id"]))
            if table.attach is not None:
                table.attach(batch)
            for row in batch:
                organization = _organization_of(row)
                organizations[organization] += 1
                if table.attached:
                    attached[organization] += len(row[table.attached])
            yield batch

    digest, rows = _write_gzip_jsonl(directory / table.file_name, batches(), progress)
    return ArchivedFile(kind, table.file_name, digest, rows, ranges, organizations, attached)


def _organization_of(row: dict) -> str | None:
    organization = row.get("organization_id")
    return str(organization) if organization is not None else None


def write_manifest(directory: Path, files: list[ArchivedFile], selections: dict[str, Selection]) -> dict:
    head = chain.head()
    manifest = {
        "format": "brikk-archive/1",
        "created_at": timezone.now().isoformat(),
        "audit_checkpoint": {"sequence": head.sequence, "row_hash": head.row_hash},
        "files": [],
    }
    for archived in files:
        selection = selections[archived.kind]
        entry = {
            "kind": archived.kind,
            "name": archived.name,
            "sha256": archived.sha256,
            "rows": archived.rows,
            "older_than": selection.cutoff.isoformat(),
        }
        if archived.kind == AUDIT:
            entry.update(
                first_sequence=selection.first_sequence,
                last_sequence=selection.last_sequence,
                previous_hash=selection.previous_hash,
                boundary_hash=selection.boundary_hash,
            )
        manifest["files"].append(entry)
    _write_durably(directory / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    manifest_sha = hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    sums = [f"{archived.sha256}  {archived.name}" for archived in files] + [f"{manifest_sha}  manifest.json"]
    _write_durably(directory / "SHA256SUMS", "\n".join(sums) + "\n")
    return manifest


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def manifest_boundary(path: str | Path) -> chain.Head:
    """The chain start recorded by an archive manifest (its audit file's last sequence and hash)."""
    manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    for entry in manifest.get("files", []):
        if entry.get("kind") == AUDIT:
            return chain.Head(int(entry["last_sequence"]), entry["boundary_hash"])
    raise RetentionError(f"{path} archives no audit rows, so it records no chain boundary")


# --- Purge ----------------------------------------------------------------------------------


@contextmanager
def _audit_purge_transaction():
    """One short transaction in which audit rows may be deleted (model guard and PostgreSQL trigger)."""
    with transaction.atomic(), purge_allowed():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('brikk.audit_purge', 'on', true)")
        yield


def purge_audit(selection: Selection, archive_name: str, batch_size: int, progress) -> int:
    # The anchor first: from here on verify_audit starts after the boundary, whether or not the
    # deletes below finish (a rerun deletes what is left below the anchor).
    AuditChainAnchor.objects.get_or_create(
        sequence=selection.last_sequence, defaults={"row_hash": selection.boundary_hash, "archive": archive_name}
    )
    return purge_below_anchor(batch_size, progress)


def purge_below_anchor(batch_size: int = DEFAULT_BATCH_SIZE, progress=lambda n: None) -> int:
    start = chain.chain_start()
    deleted = 0
    while True:
        low = (
            AuditLog.objects.filter(sequence__lte=start.sequence)
            .order_by("sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        if low is None:
            return deleted
        high = min(low + batch_size - 1, start.sequence)
        with _audit_purge_transaction():
            count, _ = AuditLog.objects.filter(sequence__gte=low, sequence__lte=high).delete()
        deleted += count
        progress(count)


@dataclass
class Purged:
    rows: int = 0
    attached: int = 0  # rows deleted with them (CASCADE)
    organizations: Counter = field(default_factory=Counter)  # rows per organization id


def purge_table(archived: ArchivedFile, cutoff: datetime, progress, as_of: datetime | None = None) -> Purged:
    """Each archived range in its own transaction: the rows that may still go are locked, then exactly those
    are deleted (so the counts per organization are what was deleted)."""
    purged = Purged()
    for first, last in archived.ranges:
        queryset = candidates(archived.kind, cutoff, as_of)
        model = queryset.model
        with transaction.atomic():
            locked = list(
                queryset.filter(pk__gte=first, pk__lte=last)
                .select_for_update()
                .order_by()
                .values_list("pk", "organization_id")
            )
            per_model = {}
            if locked:
                _, per_model = model.objects.filter(pk__in=[pk for pk, _ in locked]).delete()
        count = per_model.get(model._meta.label, 0)
        purged.rows += count
        purged.attached += sum(number for label, number in per_model.items() if label != model._meta.label)
        purged.organizations.update(str(organization) if organization else None for _, organization in locked)
        progress(count)
    return purged


def audit_purge(kind: str, organizations: Counter, *, selection: Selection, archived: ArchivedFile, run_name: str):
    """One ``retention.purged`` audit row per organization (and one for rows of none) with its counts."""
    table = _table_kinds.get(kind)
    for organization, rows in sorted(organizations.items(), key=lambda item: item[0] or ""):
        details = {
            "table": kind,
            "rows": rows,
            "older_than": selection.cutoff.isoformat(),
            "archive": run_name,
            "file": archived.name,
            "sha256": archived.sha256,
        }
        if table is not None and table.attached:
            details[table.attached] = archived.attached.get(organization, 0)
        record(
            AuditAction.RETENTION_PURGED,
            organization_id=organization,
            actor_kind="system",
            actor_id="retention",
            resource_kind="archive",
            resource_id=run_name,
            details=details,
        )


# --- The run --------------------------------------------------------------------------------


def cutoffs(days_by_kind: dict[str, int], now: datetime | None = None) -> dict[str, datetime]:
    now = now or timezone.now()
    return {kind: now - timedelta(days=days) for kind, days in days_by_kind.items()}


def run(
    selected: Iterable[str],
    cutoff_by_kind: dict[str, datetime],
    archive_root: str | Path,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress_factory=None,
) -> Report:
    """Seal, select, archive (all kinds), write the manifest, then purge in batches."""
    wanted = set(selected)
    order = [kind for kind in kinds() if kind in wanted]
    if AUDIT in order and not dry_run:
        chain.seal()
    as_of = timezone.now()
    selections = {kind: select_rows(kind, cutoff_by_kind[kind], as_of) for kind in order}
    if dry_run or not any(selection.rows for selection in selections.values()):
        return Report(None, selections)

    progress_factory = progress_factory or (lambda description, total: _NoProgress())
    directory = Path(archive_root) / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    directory.mkdir(parents=True, exist_ok=False)
    files = []
    for kind in order:
        selection = selections[kind]
        if not selection.rows:
            continue
        with progress_factory(f"archive {kind}", selection.rows) as bar:
            if kind == AUDIT:
                files.append(archive_audit(directory, selection, batch_size, bar.update))
            else:
                files.append(archive_table(directory, kind, selection.cutoff, batch_size, bar.update, as_of))
    write_manifest(directory, files, selections)

    report = Report(directory, selections)
    for archived in files:
        selection = selections[archived.kind]
        with progress_factory(f"purge {archived.kind}", archived.rows) as bar:
            if archived.kind == AUDIT:
                report.deleted[AUDIT] = purge_audit(selection, str(directory / archived.name), batch_size, bar.update)
                # Sealed rows do not change: what was archived per organization is what went.
                organizations = archived.organizations
            else:
                purged = purge_table(archived, selection.cutoff, bar.update, as_of)
                report.deleted[archived.kind], organizations = purged.rows, purged.organizations
                if purged.attached:
                    report.deleted_attached[archived.kind] = purged.attached
        audit_purge(archived.kind, organizations, selection=selection, archived=archived, run_name=directory.name)
    return report


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass
