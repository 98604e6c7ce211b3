"""What a batch send costs per message: in-process CPU of the full signed batch against the bare view and the echo.

The same method as bench/echo_profile.py (Django's WSGI handler driven directly in one thread, on the same
PostgreSQL and Redis as the benchmark, the thread's own CPU by ``time.thread_time``): the figure that decides
whether messages/s through the batch can reach a bare view's requests/s on the same cores.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/batch_profile.py
    .venv/bin/python bench/batch_profile.py --size 100 --batches 50 --step coordination.batch._store
    .venv/bin/python bench/batch_profile.py --cprofile .bench/batch.pstats

Each batch is ``--size`` new envelopes (unique message_ids), every one answered ``delivered`` (checked).
Logging stays at production INFO (JSON) and goes to .bench/profile.log.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import echo_profile  # noqa: E402 - needs the repository on sys.path first
from bench.harness import EchoSender  # noqa: E402
from coordination.client import COORDINATION_PATH, BrikkClient, build_envelope, encode_body  # noqa: E402

BATCH_PATH = f"{COORDINATION_PATH}/batch"

DEFAULT_STEPS = (
    "coordination.views.EchoView.initial",
    "agents.authentication.APIKeyAuthentication.authenticate",
    "coordination.throttling.RateLimitThrottle.allow_request",
    "coordination.views.BatchView.post",
    "coordination.batch._send",
    "coordination.batch._stored_records",
    "coordination.batch._agents",
    "coordination.batch._Batch.decide",
    "coordination.idempotency.request_hash",
    "coordination.echo.validate_envelope",
    "coordination.echo.delivered_message",
    "coordination.batch._store",
    "coordination.refusals.refused_message",
    "audit.services.record_many",
    "django.db.models.query.QuerySet.bulk_create",
    "django.db.transaction.Atomic.__exit__",
    "coordination.batch.Item.result",
    "coordination.views.EchoView.finalize_response",
)


class BatchSender:
    """A batch of new envelopes per request, signed with the client's own code."""

    def __init__(self, credentials: dict, size: int):
        self.sender_id, self.recipient_id, self.size = credentials["sender_id"], credentials["recipient_id"], size
        self.signer = BrikkClient(
            "http://127.0.0.1", api_key=credentials["api_key"], signing_secret=credentials["signing_secret"]
        )

    def prepare(self) -> tuple[bytes, dict]:
        envelopes = [
            build_envelope(self.sender_id, self.recipient_id, {"bench": True, "n": n}) for n in range(self.size)
        ]
        body = encode_body({"messages": envelopes})
        return body, self.signer.request_headers("POST", BATCH_PATH, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100, help="envelopes per batch (1-100)")
    parser.add_argument("--batches", type=int, default=40, help="measured batches")
    echo_profile.add_profile_arguments(parser, requests=300, warmup=10, loop="batch")
    args = parser.parse_args(argv)

    application, credentials = echo_profile.in_process_application(args)
    echo, batch = EchoSender(credentials), BatchSender(credentials, args.size)
    call, environ = echo_profile.call, echo_profile.wsgi_environ

    def bare():
        echo_profile.get_bare(application)

    def signed_echo():
        echo_profile.send_signed_echo(application, echo)

    def signed_batch():
        body, headers = batch.prepare()
        status, answer = call(application, environ("POST", BATCH_PATH, body, headers))
        assert status.startswith("200"), (status, answer[:300])
        assert json.loads(answer)["delivered"] == args.size, answer[:300]

    def client_cost(prepare, count: int) -> float:
        started = time.thread_time()
        for _ in range(count):
            prepare()
        return 1000 * (time.thread_time() - started) / count

    for _ in range(args.warmup):
        bare()
        signed_echo()
        signed_batch()
    bare_ms = echo_profile.cpu_ms(bare, args.requests)
    echo_ms = echo_profile.cpu_ms(signed_echo, args.requests) - client_cost(echo.prepare, args.requests)
    batch_ms = echo_profile.cpu_ms(signed_batch, args.batches) - client_cost(batch.prepare, args.batches)
    per_message = batch_ms / args.size
    print("CPU (thread time, single thread, in-process WSGI; the client's building and signing subtracted):")
    print(f"  bare GET /healthz              {bare_ms:7.3f} ms per request")
    print(f"  signed echo                    {echo_ms:7.3f} ms per message  ({echo_ms / bare_ms:.1f}x bare)")
    print(f"  signed batch of {args.size:<3}            {batch_ms:7.3f} ms per batch")
    print(f"                                 {per_message:7.3f} ms per message ({per_message / bare_ms:.2f}x bare)")

    steps = ([] if args.no_default_steps else list(DEFAULT_STEPS)) + args.step
    if steps:
        for dotted in steps:
            echo_profile.instrument(dotted)
        echo_profile.STEP_TIMES.clear()
        timed_ms = echo_profile.cpu_ms(signed_batch, args.batches)
        print(f"\nsteps, inclusive CPU ms per batch (timed run: {timed_ms:.3f} ms per batch incl. timer overhead):")
        for dotted in steps:
            print(f"  {1000 * echo_profile.STEP_TIMES[dotted] / args.batches:7.3f}  {dotted}")

    if args.cprofile:
        echo_profile.write_cprofile(args.cprofile, lambda: echo_profile.cpu_ms(signed_batch, args.batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
