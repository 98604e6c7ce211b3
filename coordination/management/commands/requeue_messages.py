from django.core.management.base import BaseCommand

from coordination import idempotency, services


class Command(BaseCommand):
    help = (
        "Enqueue again async messages still 'accepted' after --older-than seconds (the broker was down at "
        "enqueue, or a worker was lost), and purge expired idempotency records. Safe to run from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=300, help="seconds since the message last changed")

    def handle(self, *args, older_than, **options):
        requeued = services.requeue_stale(older_than_seconds=older_than)
        purged = idempotency.purge_expired()
        self.stdout.write(f"requeued {requeued} message(s); purged {purged} expired idempotency record(s)")
