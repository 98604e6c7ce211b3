"""What the benchmark scripts share: the production server's environment (rate limits raised, HMAC required,
generated secrets), migrating and seeding agents through ``agents.services``, starting and stopping gunicorn with
brikk/gunicorn.conf.py, CPU from /proc, signed echo requests, and a small threaded Python load (the delivery
benchmark's echo measure; ``make bench`` itself drives the load with wrk: bench/speed_benchmark.py).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from coordination.client import (  # noqa: E402 - needs the repository on sys.path first
    COORDINATION_PATH,
    BrikkClient,
    build_envelope,
    encode_body,
    send_headers,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# High enough that no request of a bounded run can be limited; the layer itself stays on.
RAISED_RATE_LIMIT = 100_000_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVER_LOG = REPO / ".bench" / "server.log"


@dataclass
class Scenario:
    name: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    error_samples: list[str] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = None

    def summary(self) -> dict:
        ordered = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(ordered, 50), 2),
            "p99_ms": round(percentile(ordered, 99), 2),
            "max_ms": round(ordered[-1], 2) if ordered else 0.0,
            "client_cpu_us_per_request": round(1e6 * self.client_cpu_seconds / self.requests, 1)
            if self.requests
            else None,
            "server_cpu_us_per_request": round(1e6 * self.server_cpu_seconds / self.requests, 1)
            if self.requests and self.server_cpu_seconds is not None
            else None,
            "error_samples": self.error_samples[:5],
        }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


# --- the server ------------------------------------------------------------------------------


def server_environment(args) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="brikk.settings",
        DJANGO_DEBUG="false",
        DJANGO_HTTPS="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        BRIKK_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        BRIKK_HMAC_REQUIRED="true",
        BRIKK_RATE_LIMIT_AGENT_PER_MINUTE=str(RAISED_RATE_LIMIT),
        BRIKK_RATE_LIMIT_ORG_PER_MINUTE=str(RAISED_RATE_LIMIT),
        BRIKK_MANIFEST_STATIC="false",  # no collectstatic: the benchmark serves no HTML page
    )
    env.pop("BRIKK_API_KEY_PBKDF2_ITERATIONS", None)  # production strength
    return env


def closed_port() -> int:
    """A local port nothing listens on (connections are refused at once, as by a stopped Redis)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def migrate(env: dict[str, str]) -> None:
    migrated = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if migrated.returncode:
        raise SystemExit(f"migrate failed:\n{migrated.stdout}{migrated.stderr}")


def fresh_database(url: str, suffix: str = "speed") -> str:
    """A new, empty database beside the one ``url`` names (``<name>_<suffix>``, dropped first if a run left it):
    every run starts alike. On a reused database each run leaves hundreds of thousands of dead row versions (every
    message is updated when received and acked), and vacuuming them first writes so much WAL that PostgreSQL's
    checkpoints (max_wal_size) then fall inside the measured phases. Returns the new database's URL."""
    import psycopg  # the server's driver; only PostgreSQL is measured
    from psycopg import sql

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'postgres'}_{suffix}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(parts._replace(path=f"/{name}"))


SEEDER = """
import json, sys, time, django
django.setup()
from agents import services
from brikk.lib.context import update_context
update_context(actor_kind="system", actor_id="bench")
stamp = time.strftime("%Y%m%d-%H%M%S")
org = services.create_organization(f"Bench {stamp}", slug=f"bench-{stamp}-{time.time_ns() % 10**6}")
team = {"org_id": str(org.pk)}
for name in sys.argv[1:]:
    made = services.create_agent(org, name=f"bench-{name}")
    team[name] = {"id": str(made.agent.pk), "api_key": made.key.plaintext, "signing_secret": made.signing_secret}
print(json.dumps(team))
"""


def seed_agents(env: dict[str, str], names: list[str]) -> dict:
    """A new organization with one agent per name, created through agents.services: {"org_id", name: {"id",
    "api_key", "signing_secret"}}. Keys are hashed at production strength."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", SEEDER, *names],
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def migrate_and_seed(env: dict[str, str]) -> dict:
    """Migrate, then create an organization and two agents; return the sender's credentials and both ids."""
    migrate(env)
    team = seed_agents(env, ["sender", "recipient"])
    return {
        "org_id": team["org_id"],
        "sender_id": team["sender"]["id"],
        "recipient_id": team["recipient"]["id"],
        "api_key": team["sender"]["api_key"],
        "signing_secret": team["sender"]["signing_secret"],
    }


def start_server(args, env: dict[str, str]) -> subprocess.Popen:
    # The production configuration (brikk/gunicorn.conf.py: worker class, Prometheus multiprocess
    # mode); the command line only binds to this run's port and applies --workers/--threads/--worker-class.
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        str(REPO / "brikk" / "gunicorn.conf.py"),
        "brikk.wsgi:application",
        "--bind",
        f"127.0.0.1:{args.port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        args.worker_class,
        "--threads",
        str(args.threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    # Production logging (JSON, INFO) stays on, into a file.
    return launch(command, env, SERVER_LOG, args.port, name="gunicorn")


def launch(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    port: int,
    *,
    name: str,
    path: str = "/healthz",
    timeout: float = 30,
    stop=None,
) -> subprocess.Popen:
    """Start a server in its own session (its output into ``log_path``) and wait until ``GET path`` on
    127.0.0.1:``port`` answers 200. SystemExit if it exits first, or if it does not answer within ``timeout`` seconds
    (it is then stopped: ``stop(process)``, by default ``stop_server``). Every server of the benchmarks starts here."""
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 - our own server
            command, cwd=REPO, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with status {process.returncode}: see {log_path}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            answered = connection.getresponse().status == 200
            connection.close()
            if answered:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    (stop or stop_server)(process)
    raise SystemExit(f"{name} did not answer {path} within {timeout:g} s: see {log_path}")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def server_cpu_seconds(master_pid: int) -> float | None:
    """User+system CPU of the gunicorn master and its workers so far, from /proc (Linux)."""
    try:
        pids = [master_pid]
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
        pids += [int(pid) for pid in children]
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return total / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


# --- the load --------------------------------------------------------------------------------
#
# Envelopes are built and signed by coordination.client (the same headers BrikkClient.send sends), but the
# bytes go out through the standard library's http.client on one keep-alive connection per thread:
# httpx costs about 1.1 ms of client CPU per request on this 2-core box against about 0.2 ms for
# http.client, and a load generator that eats a core would measure itself, not the server.


class RequestFailed(Exception):
    pass


def run_scenario(name: str, send, args, master_pid: int, profile_dir: Path | None = None) -> Scenario:
    """``args.concurrency`` threads call ``send(connection)`` until ``args.requests`` are done or time runs out."""
    scenario = Scenario(name)
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + args.duration

    def worker():
        nonlocal issued
        latencies = []
        errors = []
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        try:
            while True:
                with lock:
                    if issued >= args.requests or time.monotonic() >= deadline:
                        break
                    issued += 1
                started = time.perf_counter()
                try:
                    send(connection)
                except (RequestFailed, OSError, http.client.HTTPException) as exc:
                    errors.append(f"{exc.__class__.__name__}: {str(exc)[:300]}")
                    connection.close()  # reconnects on the next request
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()
        with lock:
            scenario.latencies_ms.extend(latencies)
            scenario.errors += len(errors)
            scenario.error_samples.extend(errors[:2])

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    profilers = start_profilers(master_pid, profile_dir, name, args.duration) if profile_dir else []
    cpu_before, server_before = time.process_time(), server_cpu_seconds(master_pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    scenario.seconds = time.perf_counter() - started
    scenario.client_cpu_seconds = time.process_time() - cpu_before
    server_after = server_cpu_seconds(master_pid)
    stop_profilers(profilers)
    if server_before is not None and server_after is not None:
        scenario.server_cpu_seconds = server_after - server_before
    scenario.requests = len(scenario.latencies_ms)
    return scenario


def _exchange(connection, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def send_bare(connection) -> None:
    status, body = _exchange(connection, "GET", "/healthz", None, {"Accept": "application/json"})
    if status != 200 or json.loads(body) != {"status": "ok"}:
        raise RequestFailed(f"/healthz answered {status} {body[:200]!r}")


class EchoSender:
    """Builds a new envelope per request (unique message_id) and signs it with the client's own code."""

    def __init__(self, credentials: dict):
        self.sender_id = credentials["sender_id"]
        self.recipient_id = credentials["recipient_id"]
        self.signer = BrikkClient(
            "http://127.0.0.1", api_key=credentials["api_key"], signing_secret=credentials["signing_secret"]
        )

    def prepare(self) -> tuple[bytes, dict]:
        envelope = build_envelope(self.sender_id, self.recipient_id, {"bench": True, "n": 1})
        body = encode_body(envelope)
        return body, self.signer.request_headers("POST", COORDINATION_PATH, body, send_headers(envelope))

    def __call__(self, connection) -> None:
        body, headers = self.prepare()
        status, answer = _exchange(connection, "POST", COORDINATION_PATH, body, headers)
        if status != 200:
            raise RequestFailed(f"echo answered {status} {answer[:300]!r}")
        if json.loads(answer).get("status") != "delivered":
            raise RequestFailed(f"echo answered 200 without status delivered: {answer[:300]!r}")


# --- profiling (optional: --profile, needs py-spy: bench/requirements-bench.txt) --------------------

PROJECT_CODE = ("coordination/", "agents/", "audit/", "brikk/")


def start_profilers(master_pid: int, directory: Path, name: str, seconds: float) -> list[subprocess.Popen]:
    """py-spy on every gunicorn worker, sampling only threads that hold the GIL (CPU, not waiting)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise SystemExit("--profile needs py-spy: pip install -r bench/requirements-bench.txt (make bench does)")
    directory.mkdir(parents=True, exist_ok=True)
    workers = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [
        subprocess.Popen(  # noqa: S603 - our own py-spy on our own workers
            [str(py_spy), "record", "--gil", "--nonblocking", "-r", "250", "-f", "raw", "-p", pid]
            + ["-d", str(int(seconds) + 1), "-o", str(directory / f"{name}-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in workers
    ]


def stop_profilers(profilers: list[subprocess.Popen]) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for profiler in profilers:
        try:
            profiler.wait(timeout=30)
        except subprocess.TimeoutExpired:
            profiler.kill()


def summarize_profile(directory: Path, name: str, top: int = 25) -> list[tuple[float, str]]:
    """Share of request CPU samples spent in (inclusive) each frame of the project's own code."""
    inclusive: dict[str, int] = {}
    total = 0
    for path in directory.glob(f"{name}-*.txt"):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if not any("django/core/handlers/wsgi.py" in frame for frame in frames):
                continue  # gunicorn's own loop, not a request
            total += int(count)
            for frame in set(frames):
                if any(part in frame for part in PROJECT_CODE):
                    inclusive[frame] = inclusive.get(frame, 0) + int(count)
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return [(round(100 * count / total, 1), frame) for frame, count in ranked] if total else []


def _redacted(url: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(password="***")) if parsed.password else url


def _git_commit() -> str | None:
    """The commit measured, with "-dirty" when tracked files differ from it."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7"],  # noqa: S607 - git from PATH is the point
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
