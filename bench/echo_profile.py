"""Where one echo's CPU goes: the full signed echo and the bare view, in-process, single-threaded.

Sampling profilers on a busy 2-core box credit time to whichever thread holds the GIL; this script
instead drives Django's WSGI handler directly (no server, no sockets between client and Django) in one
thread, on the same PostgreSQL and Redis as the benchmark, and measures the thread's own CPU
(``time.thread_time``): in total per request, and inclusively inside chosen functions (``--step``).

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/echo_profile.py
    .venv/bin/python bench/echo_profile.py --requests 500 --step coordination.echo.authorize
    .venv/bin/python bench/echo_profile.py --cprofile .bench/echo.pstats   # or --pyinstrument (if installed)

Logging stays at production INFO (JSON) and goes to .bench/profile.log.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import logging
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import (  # noqa: E402 - needs the repository on sys.path first
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    EchoSender,
    migrate_and_seed,
    server_environment,
)
from coordination.client import COORDINATION_PATH  # noqa: E402

LOG_FILE = REPO / ".bench" / "profile.log"

# The steps of an echo, timed inclusively by default (CPU ms per echo in each).
DEFAULT_STEPS = (
    "coordination.views.EchoView.initial",
    "brikk.lib.parsers.enforce",
    "agents.authentication.APIKeyAuthentication.authenticate",
    "agents.keys.verify",
    "agents.keys.KeyIdentity.signing_secrets",
    "coordination.views.InOrganization.has_permission",
    "coordination.throttling.RateLimitThrottle.allow_request",
    "coordination.views.EchoView.post",
    "coordination.echo.submit_echo",
    "coordination.idempotency.request_hash",
    "coordination.echo.validate_envelope",
    "coordination.echo.check_parties",
    "coordination.echo.delivered_message",
    "coordination.answers.echo_body",
    "coordination.messages.message_audit_entry",
    "coordination.echo_statement.deliver",
    "audit.services.announce",
    "coordination.views.EchoView.finalize_response",
)

STEP_TIMES: dict[str, float] = defaultdict(float)
STEP_DEPTH: dict[str, int] = defaultdict(int)


def _resolve(dotted: str):
    """(owner object, attribute name) for a dotted module.Class.function path."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise SystemExit(f"cannot resolve {dotted}")


def instrument(dotted: str) -> None:
    """Wrap the function in place so that its inclusive thread CPU time is added to STEP_TIMES."""
    owner, name = _resolve(dotted)
    original = inspect.getattr_static(owner, name)  # a staticmethod stays recognisable; inherited ones work
    wrapped_static = isinstance(original, staticmethod)
    function = original.__func__ if wrapped_static else original

    def timed(*args, **kwargs):
        STEP_DEPTH[dotted] += 1
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            STEP_DEPTH[dotted] -= 1
            if not STEP_DEPTH[dotted]:  # recursion counts once
                STEP_TIMES[dotted] += time.thread_time() - started

    replacement = staticmethod(timed) if wrapped_static else timed
    setattr(owner, name, replacement)
    # Modules that imported the function by name (``from x import f``) keep the old object: patch them too.
    for module in list(sys.modules.values()):
        if module is None or not getattr(module, "__name__", "").startswith(
            ("coordination", "agents", "audit", "brikk")
        ):
            continue
        for attribute, value in list(vars(module).items()):
            if value is function and module is not owner:
                setattr(module, attribute, timed)


def wsgi_environ(method: str, path: str, body: bytes, headers: dict[str, str]) -> dict:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    return environ


def call(application, environ) -> tuple[str, bytes]:
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"] = status

    chunks = application(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return captured["status"], body


def in_process_application(args):
    """(Django's WSGI handler, the seeded sender's credentials): the database migrated and seeded as the benchmark
    does, Django set up with production settings in this process, its JSON log lines sent to LOG_FILE."""
    env = server_environment(args)
    credentials = migrate_and_seed(env)
    os.environ.update(env)

    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    LOG_FILE.parent.mkdir(exist_ok=True)
    log_stream = LOG_FILE.open("w")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log_stream)  # production JSON formatting stays; only the destination changes
    return WSGIHandler(), credentials


def get_bare(application) -> None:
    status, body = call(application, wsgi_environ("GET", "/healthz", b"", {"Accept": "application/json"}))
    assert status.startswith("200"), (status, body)


def send_signed_echo(application, sender: EchoSender) -> None:
    body, headers = sender.prepare()
    status, answer = call(application, wsgi_environ("POST", COORDINATION_PATH, body, headers))
    assert status.startswith("200"), (status, answer[:300])


def cpu_ms(send, count: int) -> float:
    """This thread's CPU per call of ``send``, in ms."""
    cpu = 0.0
    for _ in range(count):
        started = time.thread_time()
        send()
        cpu += time.thread_time() - started
    return 1000 * cpu / count


def write_cprofile(path: Path, run) -> None:
    """cProfile stats of ``run()`` (thread CPU) into ``path``."""
    import cProfile

    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    run()
    profiler.disable()
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(path)
    print(f"\ncProfile stats: {path} (python -m pstats {path})")


def add_profile_arguments(parser: argparse.ArgumentParser, *, requests: int, warmup: int, loop: str) -> None:
    """The options this profile and bench/batch_profile.py share: how much to measure, where, and what to time."""
    parser.add_argument("--requests", type=int, default=requests, help="measured bare requests and echoes")
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--step", action="append", default=[], help="dotted function to time (repeatable)")
    parser.add_argument("--no-default-steps", action="store_true", help="time only the --step functions")
    parser.add_argument("--cprofile", type=Path, metavar="FILE", help=f"write cProfile stats of the {loop} loop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_profile_arguments(parser, requests=400, warmup=50, loop="echo")
    parser.add_argument("--pyinstrument", type=Path, metavar="FILE", help="write a pyinstrument text report")
    args = parser.parse_args(argv)

    application, credentials = in_process_application(args)
    echo = EchoSender(credentials)

    def bare():
        get_bare(application)

    def signed_echo():
        send_signed_echo(application, echo)

    for _ in range(args.warmup):
        bare()
        signed_echo()
    bare_ms = cpu_ms(bare, args.requests)
    echo_ms = cpu_ms(signed_echo, args.requests)
    print(f"CPU per request (thread time, {args.requests} requests each, single thread, in-process WSGI):")
    print(f"  bare GET /healthz            {bare_ms:7.3f} ms")
    print(f"  signed echo                  {echo_ms:7.3f} ms   ({echo_ms / bare_ms:.1f}x bare)")

    steps = ([] if args.no_default_steps else list(DEFAULT_STEPS)) + args.step
    if steps:
        for dotted in steps:
            instrument(dotted)
        STEP_TIMES.clear()
        timed_ms = cpu_ms(signed_echo, args.requests)
        print(f"\nsteps, inclusive CPU ms per echo (timed run: {timed_ms:.3f} ms per echo incl. timer overhead):")
        for dotted in steps:
            print(f"  {1000 * STEP_TIMES[dotted] / args.requests:7.3f}  {dotted}")

    if args.cprofile:
        write_cprofile(args.cprofile, lambda: cpu_ms(signed_echo, args.requests))
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002, timer_func=time.thread_time)
        profiler.start()
        cpu_ms(signed_echo, args.requests)
        profiler.stop()
        args.pyinstrument.parent.mkdir(parents=True, exist_ok=True)
        args.pyinstrument.write_text(profiler.output_text(unicode=True, show_all=False))
        print(f"\npyinstrument report: {args.pyinstrument}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
