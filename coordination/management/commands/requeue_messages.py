from django.core.management.base import BaseCommand

from coordination import tasks


class Command(BaseCommand):
    help = (
        "Enqueue again async messages still 'accepted' after --older-than seconds (the broker was down at "
        "enqueue, or a worker was lost). Safe to run from cron. Expired idempotency records are archived "
        "and purged by purge_records."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=300, help="seconds since the message last changed")

    def handle(self, *args, older_than, **options):
        requeued = tasks.requeue_stale(older_than_seconds=older_than)
        self.stdout.write(f"requeued {requeued} message(s)")
