from django.core.management.base import BaseCommand

from audit import chain


class Command(BaseCommand):
    help = (
        "Seal unsealed audit rows into the hash chain, print the head (sequence and hash) and append it "
        "to BRIKK_AUDIT_CHECKPOINT_FILE (or --checkpoint-file). Safe to run while celery beat also seals."
    )

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint-file", help="Append the head here (default: BRIKK_AUDIT_CHECKPOINT_FILE).")
        parser.add_argument("--batch-size", type=int, default=chain.SEAL_BATCH_SIZE)

    def handle(self, *args, checkpoint_file, batch_size, **options):
        sealed = chain.seal(batch_size=batch_size)
        current = chain.head()
        line = chain.write_checkpoint(current, checkpoint_file)
        self.stdout.write(f"sealed {sealed} row(s); head sequence={current.sequence} hash={current.row_hash}")
        self.stdout.write(f"checkpoint {line}")
