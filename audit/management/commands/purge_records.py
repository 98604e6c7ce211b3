import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit import retention


class Command(BaseCommand):
    help = (
        "Archive, then delete, audit rows, message logs and expired idempotency records older than their "
        "retention (BRIKK_AUDIT_RETENTION_DAYS, BRIKK_MESSAGE_RETENTION_DAYS, BRIKK_IDEMPOTENCY_RETENTION_DAYS). "
        "Archives are gzip JSON Lines with a manifest and SHA256SUMS; deletes run in small batches. "
        "The only way audit rows are deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--archive-dir", help="Default: BRIKK_ARCHIVE_DIR.")
        parser.add_argument(
            "--only", default=",".join(retention.kinds()), help="Comma-separated: audit, messages, idempotency."
        )
        parser.add_argument("--audit-days", type=int, help="Default: BRIKK_AUDIT_RETENTION_DAYS.")
        parser.add_argument("--message-days", type=int, help="Default: BRIKK_MESSAGE_RETENTION_DAYS.")
        parser.add_argument(
            "--idempotency-days", type=int, help="Days past expiry (default: BRIKK_IDEMPOTENCY_RETENTION_DAYS)."
        )
        parser.add_argument("--batch-size", type=int, default=retention.DEFAULT_BATCH_SIZE)
        parser.add_argument("--dry-run", action="store_true", help="Show what would go; write and delete nothing.")

    def handle(self, *args, **options):
        kinds = [kind.strip() for kind in options["only"].split(",") if kind.strip()]
        unknown = sorted(set(kinds) - set(retention.kinds()))
        if unknown:
            raise CommandError(f"--only: unknown kind(s) {', '.join(unknown)}; use {', '.join(retention.kinds())}.")
        days = {
            "audit": options["audit_days"] or settings.BRIKK_AUDIT_RETENTION_DAYS,
            "messages": options["message_days"] or settings.BRIKK_MESSAGE_RETENTION_DAYS,
            "idempotency": options["idempotency_days"]
            if options["idempotency_days"] is not None
            else settings.BRIKK_IDEMPOTENCY_RETENTION_DAYS,
        }
        if min(days.values()) < 0 or options["batch_size"] < 1:
            raise CommandError("Days must be zero or more and --batch-size at least 1.")
        archive_dir = options["archive_dir"] or settings.BRIKK_ARCHIVE_DIR
        interactive = hasattr(self.stdout, "isatty") and self.stdout.isatty()

        def progress(description, total):
            return tqdm(total=total, desc=description, unit="row", disable=not interactive, file=sys.stderr)

        try:
            report = retention.run(
                kinds,
                retention.cutoffs(days),
                archive_dir,
                dry_run=options["dry_run"],
                batch_size=options["batch_size"],
                progress_factory=progress,
            )
        except retention.RetentionError as exc:
            raise CommandError(str(exc)) from None

        prefix = "would archive and delete" if options["dry_run"] else "archived"
        for kind, selection in report.selections.items():
            line = f"{kind}: {prefix} {selection.rows} row(s) older than {selection.cutoff:%Y-%m-%d %H:%M:%S}Z"
            if kind == "audit" and selection.rows:
                line += (
                    f" (sequence {selection.first_sequence}..{selection.last_sequence}, "
                    f"boundary hash {selection.boundary_hash})"
                )
            if kind == "audit" and selection.unsealed_skipped:
                line += f"; {selection.unsealed_skipped} old row(s) not sealed yet are kept"
            if kind in report.deleted:
                line += f"; deleted {report.deleted[kind]}"
            if kind in report.deleted_attached:
                line += f" (and {report.deleted_attached[kind]} row(s) that went with them)"
            self.stdout.write(line)
        if report.directory is not None:
            self.stdout.write(
                f"archive: {report.directory} (check with: cd {report.directory} && sha256sum -c SHA256SUMS)"
            )
