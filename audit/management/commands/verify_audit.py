from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import chain


class Command(BaseCommand):
    help = (
        "Verify the audit hash chain from the archive boundary (or the first row) to the head; name the first "
        "row that was changed, removed or inserted. Checks checkpoints from --checkpoint SEQUENCE:HASH and from "
        "the checkpoint file (default BRIKK_AUDIT_CHECKPOINT_FILE). Exits 1 when the chain is broken."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoint", action="append", default=[], metavar="SEQUENCE:HASH", help="A head printed by seal_audit."
        )
        parser.add_argument("--checkpoint-file", help="Default: BRIKK_AUDIT_CHECKPOINT_FILE.")
        parser.add_argument(
            "--manifest", help="An archive manifest.json: the chain must start at the boundary it records."
        )

    def handle(self, *args, checkpoint, checkpoint_file, manifest, **options):
        checkpoints = [self._parse(value) for value in checkpoint]
        path = checkpoint_file or settings.BRIKK_AUDIT_CHECKPOINT_FILE
        if path:
            try:
                checkpoints += chain.read_checkpoints(path)
            except FileNotFoundError:
                if checkpoint_file:
                    raise CommandError(f"No checkpoint file at {path}.") from None
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        start = None
        if manifest:
            from audit.retention import manifest_boundary

            start = manifest_boundary(manifest)
        result = chain.verify(checkpoints, start=start)
        self.stdout.write(
            f"checked {result.checked} sealed row(s) from sequence {result.start.sequence + 1}; "
            f"head sequence={result.head.sequence} hash={result.head.row_hash}; "
            f"{len(checkpoints)} checkpoint(s); {result.unsealed} row(s) not sealed yet"
        )
        if not result.ok:
            for problem in result.problems:
                self.stderr.write(f"TAMPERED: {problem.message}")
            raise CommandError("the audit chain does not verify", returncode=1)
        self.stdout.write(self.style.SUCCESS("audit chain OK"))

    @staticmethod
    def _parse(value: str) -> chain.Head:
        sequence, _, row_hash = value.partition(":")
        if not sequence.isdigit() or len(row_hash) != 64:
            raise CommandError(f"--checkpoint {value!r} is not SEQUENCE:HASH (64 hex digits).")
        return chain.Head(int(sequence), row_hash)
