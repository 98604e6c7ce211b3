from django.core.management.base import BaseCommand

from coordination import inbox


class Command(BaseCommand):
    help = (
        "Dead-letter messages past their ttl or out of deliveries, and return lapsed leases to queued. "
        "Idempotent and safe beside another sweep (celery beat runs it every BRIKK_INBOX_SWEEP_INTERVAL_SECONDS)."
    )

    def handle(self, *args, **options):
        result = inbox.sweep()
        self.stdout.write(
            f"dead-lettered {result.expired} expired and {result.max_deliveries} out of deliveries; "
            f"returned {result.leases_returned} lapsed lease(s)"
        )
