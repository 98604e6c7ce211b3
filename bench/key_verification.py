"""What verifying an API key costs the server: CPU per verification and the time of refused answers.

In-process, one thread, on the given PostgreSQL and Redis with production settings (debug off, the production
work factor): migrates, seeds an organization with agents, then measures

- the CPU of ``agents.keys.verify`` (the key's row, the failed-attempt count, the hash) for a wrong secret
  under a known prefix, an unknown prefix, a right key this process has not verified yet (a hash), a right key
  it has (no hash), and a wrong secret under a key still hashed at the former factor of 1,000,000;
- the wall time of whole refused requests (Django's handler, audit row included), unknown prefix and wrong
  secret sent in pairs, back to back.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/brikk_keybench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/key_verification.py [--samples 500]

The failure limits are raised for the run (the refusals are what is measured, not the lockout).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FORMER_WORK_FACTOR = 1_000_000


def configure(database_url: str, redis_url: str) -> None:
    from cryptography.fernet import Fernet

    os.environ.update(
        DJANGO_SETTINGS_MODULE="brikk.settings",
        DJANGO_DEBUG="false",
        DJANGO_HTTPS="false",
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        BRIKK_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        BRIKK_LOG_LEVEL="WARNING",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX=str(10**9),
        BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS=str(10**9),
    )
    os.environ.pop("BRIKK_API_KEY_PBKDF2_ITERATIONS", None)  # the production factor
    subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO, env=os.environ, check=True
    )
    import django

    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic here
    django.setup()


def cpu_ms(call, samples: int) -> list[float]:
    costs = []
    for _ in range(samples):
        started = time.thread_time()
        call()
        costs.append((time.thread_time() - started) * 1000)
    return costs


def summary(costs: list[float]) -> str:
    ordered = sorted(costs)
    return f"{statistics.median(ordered):.3f} / {ordered[int(len(ordered) * 0.9) - 1]:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args(argv)
    if not args.database_url or not args.redis_url:
        parser.error("DATABASE_URL and REDIS_URL (or --database-url, --redis-url) are required")
    configure(args.database_url, args.redis_url)

    from django.conf import settings
    from django.test import Client, override_settings

    from agents import keys, services
    from brikk.lib.context import update_context

    update_context(actor_kind="system", actor_id="key-bench")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    org = services.create_organization(f"Key bench {stamp}", slug=f"key-bench-{stamp}-{time.time_ns() % 10**6}")
    agent = services.create_agent(org, name="bench-key")
    with override_settings(BRIKK_API_KEY_PBKDF2_ITERATIONS=FORMER_WORK_FACTOR):  # a key issued before issue 9
        legacy = services.create_agent(org, name="bench-legacy-key")
    prefix = agent.key.api_key.prefix
    address = "192.0.2.50"

    def wrong_secret(key_prefix=prefix) -> str:
        return f"brk_{key_prefix}.{secrets.token_urlsafe(32)}"

    def unknown_prefix() -> str:
        return f"brk_{secrets.token_hex(6)}.{secrets.token_urlsafe(32)}"

    def refused(make):
        def call():
            try:
                keys.verify(make(), address)
            except keys.KeyRejected:
                return
            raise SystemExit("a wrong key was accepted")

        return call

    def first_verification():
        keys.verified_keys.clear()
        keys.verify(agent.key.plaintext, address)

    for _ in range(20):  # connections, prepared statements, the dummy hash
        refused(wrong_secret)(), refused(unknown_prefix)(), first_verification()

    n = args.samples
    rows = [
        ("wrong secret, known prefix", cpu_ms(refused(wrong_secret), n)),
        ("unknown prefix", cpu_ms(refused(unknown_prefix), n)),
        ("right key, first use in this process (hashed)", cpu_ms(first_verification, n)),
        ("right key, verified before (not hashed)", cpu_ms(lambda: keys.verify(agent.key.plaintext, address), n)),
        (
            f"wrong secret under a hash at {FORMER_WORK_FACTOR:,} (until its key is next used)",
            cpu_ms(refused(lambda: wrong_secret(legacy.key.api_key.prefix)), 5),
        ),
    ]
    print(f"work factor {settings.BRIKK_API_KEY_PBKDF2_ITERATIONS}; load average {os.getloadavg()[0]:.2f}\n")
    print("| verification | CPU ms, median / p90 |")
    print("|---|---:|")
    for name, costs in rows:
        print(f"| {name} | {summary(costs)} |")

    client = Client(REMOTE_ADDR=address)

    def answer_ms(presented: str) -> float:
        started = time.perf_counter()
        status = client.get("/api/v1/agents/", HTTP_X_BRIKK_KEY=presented).status_code
        if status != 401:
            raise SystemExit(f"expected 401, got {status}")
        return (time.perf_counter() - started) * 1000

    for _ in range(20):
        answer_ms(wrong_secret()), answer_ms(unknown_prefix())
    known, unknown = [], []
    for _ in range(n // 2):
        known.append(answer_ms(wrong_secret()))
        unknown.append(answer_ms(unknown_prefix()))
    differences = [a - b for a, b in zip(known, unknown, strict=True)]
    print(f"\nwhole refused requests (401, audit row included), {len(known)} pairs, wall ms:")
    print("| answer | median | p90 |")
    print("|---|---:|---:|")
    for name, sample in (("wrong secret, known prefix", known), ("unknown prefix", unknown)):
        ordered = sorted(sample)
        print(f"| {name} | {statistics.median(ordered):.2f} | {ordered[int(len(ordered) * 0.9) - 1]:.2f} |")
    print(f"| median of the pairs' differences | {statistics.median(differences):+.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
