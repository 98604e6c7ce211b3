"""Message-log page times on a million rows: keyset pagination stays flat at any depth.

Usage (a PostgreSQL database of its own; it is migrated and filled once, then reused):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/brikk_bench_pages python bench/dashboard_pages.py [--rows 1000000]

Prints the median time of the dashboard's query for the first page, a page in the middle and the
last page, with and without a status filter, and the plan of the deepest one.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brikk.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from agents import services  # noqa: E402
from agents.models import Organization  # noqa: E402
from brikk.dashboard.pagination import paginate  # noqa: E402
from coordination.models import MessageLog  # noqa: E402

SLUG = "bench-pages"


def fill(rows: int) -> Organization:
    organization = Organization.objects.filter(slug=SLUG).first()
    if organization is None:
        organization = services.create_organization("Bench pages", slug=SLUG)
    have = MessageLog.objects.filter(organization=organization).count()
    if have >= rows:
        return organization
    sender = services.create_agent(organization, name=f"bench-sender-{have}").agent
    recipient = services.create_agent(organization, name=f"bench-recipient-{have}").agent
    print(f"inserting {rows - have:,} messages …", flush=True)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # uuid7-like ids (time-ordered), one message per millisecond going back in time.
        cursor.execute(
            """
            INSERT INTO coordination_messagelog
              (id, organization_id, message_id, sender_id, recipient_id, type, status, auth_method, actor_kind,
               actor_id, http_status, request_body, response_body, attempts, error, latency_ms, correlation_id,
               idempotency_key, received_at, responded_at, created_at, updated_at)
            SELECT gen_random_uuid(), %s, gen_random_uuid(), %s, %s,
                   (ARRAY['message','event','command'])[1 + n %% 3],
                   (ARRAY['delivered','delivered','delivered','failed','rejected'])[1 + n %% 5],
                   'api_key', 'agent', '', 200, '{"payload": {}}', '{"status": "delivered"}', 1, '', 2.5,
                   md5(n::text), '', now() - n * interval '1 millisecond', now() - n * interval '1 millisecond',
                   now() - n * interval '1 millisecond', now()
            FROM generate_series(%s, %s) AS n
            """,
            [organization.pk, sender.pk, recipient.pk, have + 1, rows],
        )
        cursor.execute("ANALYZE coordination_messagelog")
    print(f"inserted in {time.perf_counter() - started:.1f} s", flush=True)
    return organization


def timed(fn, repeat=15) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def cursor_at(queryset, depth: int) -> str | None:
    """The cursor of the page starting ``depth`` rows in (found once, by keyset, not timed)."""
    row = queryset.order_by("-created_at", "-id").values("created_at", "id")[depth : depth + 1].first()
    if row is None:
        return None
    from brikk.dashboard.pagination import encode_cursor

    # A cursor just before that row: the page starts exactly at it.
    return encode_cursor(row["created_at"], "ffffffff-ffff-ffff-ffff-ffffffffffff") if row else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL database of its own.")
    call_command("migrate", verbosity=0)
    organization = fill(args.rows)
    base = MessageLog.objects.filter(organization=organization).select_related("sender", "recipient")
    total = args.rows
    print(f"\n{total:,} messages, page size 50; median of 15 runs per figure\n")
    print(f"{'query':<44}{'first page':>12}{'middle':>12}{'last page':>12}")
    for label, queryset in (("all messages", base), ("status=failed", base.filter(status="failed"))):
        size = queryset.count()  # setup only, not part of a page
        cursors = [None, cursor_at(queryset, size // 2), cursor_at(queryset, max(size - 50, 0))]
        times = [timed(lambda c=c, q=queryset: list(paginate(q, cursor=c, size=50).items)) for c in cursors]
        print(f"{label:<44}" + "".join(f"{t:>10.2f}ms" for t in times))
    middle = cursor_at(base, total // 2)
    with connection.cursor() as cursor, CaptureQueriesContext(connection) as captured:
        paginate(base, cursor=middle, size=50)
        sql = captured.captured_queries[-1]["sql"]
        params = None
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("\nplan of the middle page:")
        for (line,) in cursor.fetchall():
            print("  " + line)


if __name__ == "__main__":
    main()
