"""Delivery benchmark: the inbox on its production servers (gunicorn for the API, uvicorn for the inbox) with
PostgreSQL and Redis, driven from this machine. Prints, in one run:

- **latency**: send → received by a streaming consumer, at a steady ``--rate`` messages/s (aim: p50 < 10 ms,
  p99 < 50 ms). The time runs from just before the sender's signed echo request to the consumer reading the event.
- **drain**: ``--drain`` messages queued in one inbox, received and acked by ``--consumers`` consumers
  (``POST /api/v1/inbox/receive`` + ``/ack``, 10 at a time): messages/s, against the echo throughput.
- **idle**: ``--idle`` streams held open (over 20 agents): the ASGI server's memory and threads before and
  after, and the echo throughput measured beside them against the same measure without them (aim: at least 80%).

    make bench-delivery
    .venv/bin/python bench/delivery_benchmark.py --help

Everything goes to 127.0.0.1 and is bounded in count and time. Results also go to bench/results/delivery.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import harness as echo  # noqa: E402 - the shared server, load and percentile code

from coordination.client import BrikkClient, encode_body  # noqa: E402

RESULTS = REPO / "bench" / "results" / "delivery.json"
EVENTS_LOG = REPO / ".bench" / "events.log"
IDLE_AGENTS = 20

SEED = """
import json, time, django
django.setup()
from datetime import timedelta
from django.utils import timezone
from uuid6 import uuid7
from agents import services
from brikk.lib.context import update_context
from coordination.models import MessageLog

update_context(actor_kind="system", actor_id="bench")
stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6}"
org = services.create_organization(f"Delivery bench {stamp}", slug=f"delivery-{stamp}")
def agent(name):
    made = services.create_agent(org, name=name)
    return {"id": str(made.agent.pk), "key": made.key.plaintext, "secret": made.signing_secret}
team = {name: agent(name) for name in ("sender", "consumer", "sink", "drain", "pushed")}
from agents import crypto
from agents.models import Agent
from coordination import push_endpoints
from coordination.models import PushEndpoint
PushEndpoint.objects.create(
    organization=org, agent=Agent.objects.get(pk=team["pushed"]["id"]), url="RECEIVER_URL",
    secret_encrypted=crypto.encrypt(push_endpoints.new_secret()))
team["idle"] = [agent(f"idle-{n}") for n in range(IDLE)]
now = timezone.now()
sender, drain = team["sender"]["id"], team["drain"]["id"]
rows = []
for number in range(DRAIN):
    message_id = uuid7()
    rows.append(MessageLog(
        id=uuid7(), organization_id=org.pk, message_id=message_id, sender_id=sender, recipient_id=drain,
        type="message", status="delivered", http_status=200, attempts=1,
        request_body={"version": "1.0", "message_id": str(message_id), "ts": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "type": "message", "sender": {"agent_id": sender}, "recipient": {"agent_id": drain},
                      "payload": {"n": number}},
        received_at=now, responded_at=now, delivery_state="queued", available_at=now,
        expires_at=now + timedelta(hours=1)))
MessageLog.objects.bulk_create(rows, batch_size=1000)
print(json.dumps(team))
"""


def seed(env: dict, drain: int, receiver_url: str) -> dict:
    code = SEED.replace("IDLE", str(IDLE_AGENTS)).replace("DRAIN", str(drain)).replace("RECEIVER_URL", receiver_url)
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=300, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_events_server(args, env: dict) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "uvicorn"),
        "brikk.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.events_port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--backlog",
        "4096",
        "--timeout-graceful-shutdown",
        "2",
    ]
    return echo.launch(command, env, EVENTS_LOG, args.events_port, name="uvicorn")


def process_memory(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {"rss_mib": round(rss / 1024, 1), "threads": len(os.listdir(f"/proc/{pid}/task"))}


def gunicorn_memory(master_pid: int) -> dict:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    per_worker = [process_memory(int(pid))["rss_mib"] for pid in children]
    return {"workers": len(per_worker), "rss_mib_per_worker": per_worker}


class Signer:
    def __init__(self, agent: dict):
        self.agent = agent
        self.client = BrikkClient("http://127.0.0.1", api_key=agent["key"], signing_secret=agent["secret"])

    def headers(self, method: str, target: str, body: bytes = b"") -> dict:
        headers = self.client.request_headers(method, target, body)
        if body:
            headers["Content-Type"] = "application/json"
        return headers


def post_json(connection, signer: Signer, path: str, document: dict) -> dict:
    body = encode_body(document)
    connection.request("POST", path, body=body, headers=signer.headers("POST", path, body))
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise echo.RequestFailed(f"{path} answered {response.status} {answer[:300]!r}")
    return json.loads(answer)


# --- latency: a steady rate of sends, one streaming consumer -----------------------------------


def measure_latency(args, team: dict) -> dict:
    consumer = Signer(team["consumer"])
    target = "/api/v1/inbox/stream?lease_seconds=60"
    stream = http.client.HTTPConnection("127.0.0.1", args.events_port, timeout=30)
    stream.request("GET", target, headers=consumer.headers("GET", target))
    response = stream.getresponse()
    if response.status != 200:
        raise SystemExit(f"stream answered {response.status}")
    received: dict[str, float] = {}
    receipts: list[str] = []
    done = threading.Event()

    def read_events():
        data = None
        while not done.is_set():
            try:
                line = response.readline()
            except (OSError, ValueError, AttributeError):  # the stream was closed at the end of the phase
                return
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line.startswith("data: "):
                data = line[6:]
            elif line == "" and data is not None:
                item = json.loads(data)
                received[item["payload"]["tag"]] = time.perf_counter()
                receipts.append(item["receipt"])
                data = None

    def ack_in_batches():
        connection = http.client.HTTPConnection("127.0.0.1", args.events_port, timeout=30)
        while not done.is_set() or receipts:
            batch = [receipts.pop() for _ in range(min(len(receipts), 100))]
            if batch:
                post_json(connection, consumer, "/api/v1/inbox/ack", {"receipts": batch})
            else:
                time.sleep(0.05)

    reader = threading.Thread(target=read_events, daemon=True)
    acker = threading.Thread(target=ack_in_batches)
    reader.start()
    acker.start()

    sender = echo.EchoSender(
        {
            "sender_id": team["sender"]["id"],
            "recipient_id": team["consumer"]["id"],
            "api_key": team["sender"]["key"],
            "signing_secret": team["sender"]["secret"],
        }
    )
    connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    interval = 1 / args.rate
    count = int(args.rate * args.latency_seconds)
    start = time.perf_counter()
    for number in range(count):
        time.sleep(max(0.0, start + number * interval - time.perf_counter()))
        envelope = echo.build_envelope(sender.sender_id, sender.recipient_id, {"tag": str(number)})
        body = encode_body(envelope)
        headers = sender.signer.request_headers("POST", echo.COORDINATION_PATH, body, echo.send_headers(envelope))
        sent[str(number)] = time.perf_counter()
        status, answer = echo._exchange(connection, "POST", echo.COORDINATION_PATH, body, headers)
        answered[str(number)] = time.perf_counter()
        if status != 200:
            raise SystemExit(f"echo answered {status} {answer[:200]!r}")
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    acker.join(30)
    stream.close()
    latencies = sorted((received[tag] - sent[tag]) * 1000 for tag in sent if tag in received)
    echo_latencies = sorted((answered[tag] - sent[tag]) * 1000 for tag in sent)
    return {
        "sender_answered_p50_ms": round(echo.percentile(echo_latencies, 50), 2),
        "rate_per_second": args.rate,
        "sent": count,
        "received": len(latencies),
        "p50_ms": round(echo.percentile(latencies, 50), 2),
        "p99_ms": round(echo.percentile(latencies, 99), 2),
        "max_ms": round(latencies[-1], 2) if latencies else None,
    }


def run_concurrently(target, threads: int) -> float:
    """``target`` on that many threads at once, until all end: the seconds it took."""
    running = [threading.Thread(target=target) for _ in range(threads)]
    started = time.perf_counter()
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return time.perf_counter() - started


# --- drain: receive + ack by several consumers -----------------------------------------------


def measure_drain(args, team: dict) -> dict:
    signer = Signer(team["drain"])
    counts = []
    lock = threading.Lock()

    def consume():
        connection = http.client.HTTPConnection("127.0.0.1", args.events_port, timeout=30)
        taken = 0
        while True:
            messages = post_json(
                connection, signer, "/api/v1/inbox/receive", {"max_messages": 10, "lease_seconds": 60}
            )["messages"]
            if not messages:
                break
            results = post_json(
                connection, signer, "/api/v1/inbox/ack", {"receipts": [item["receipt"] for item in messages]}
            )["results"]
            if any(item["result"] != "ok" for item in results):
                raise SystemExit(f"an ack was not ok: {results}")
            taken += len(messages)
        with lock:
            counts.append(taken)

    seconds = run_concurrently(consume, args.consumers)
    total = sum(counts)
    return {
        "queued": args.drain,
        "consumers": args.consumers,
        "received_and_acked": total,
        "seconds": round(seconds, 2),
        "messages_per_second": round(total / seconds, 1),
        "per_consumer": counts,
    }


# --- push: the dispatcher POSTs to a receiver on 127.0.0.1 ----------------------------------


RECEIVER_LOG = REPO / ".bench" / "receiver.log"
DISPATCHER_LOG = REPO / ".bench" / "dispatcher.log"


def start_receiver(port: int) -> subprocess.Popen:
    RECEIVER_LOG.parent.mkdir(exist_ok=True)
    with RECEIVER_LOG.open("w") as log:
        receiver = subprocess.Popen(  # noqa: S603 - our own uvicorn and app
            [str(Path(sys.executable).parent / "uvicorn"), "bench.push_receiver:app", "--port", str(port)]
            + ["--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools", "--no-access-log"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return receiver
        time.sleep(0.1)
    raise SystemExit("the push receiver did not start")


def measure_push(args, env: dict, team: dict) -> dict:
    """Two measures of the dispatcher (``manage.py push_dispatcher``, one process) against a receiver on 127.0.0.1:

    - **rate**: ``--push`` echoes queued for an agent with an enabled endpoint while no dispatcher runs (the accept
      rate, as fast as ``--concurrency`` threads go), then the dispatcher started: messages pushed per second from
      the first arrival to the last, and the dispatcher's CPU per message. The aim: at least the echo accept rate,
      so that a push agent never falls behind.
    - **latency**: with the dispatcher running, echoes at a steady ``--rate`` for half of ``--latency-seconds``:
      from just before the sender's echo request to the receiver's arrival (aim: p50 < 50 ms)."""
    sender = echo.EchoSender(
        {
            "sender_id": team["sender"]["id"],
            "recipient_id": team["pushed"]["id"],
            "api_key": team["sender"]["key"],
            "signing_secret": team["sender"]["secret"],
        }
    )
    sent: dict[str, float] = {}
    lock = threading.Lock()
    remaining = [args.push]

    def prepare() -> tuple[bytes, dict]:
        # Ten minutes to live: a backlog must not expire (the default 30 s) before the dispatcher gets to it.
        envelope = echo.build_envelope(sender.sender_id, sender.recipient_id, {"bench": True}, ttl_ms=600_000)
        body = encode_body(envelope)
        return body, sender.signer.request_headers("POST", echo.COORDINATION_PATH, body, echo.send_headers(envelope))

    def send_all():
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            body, headers = prepare()
            started = time.time()
            status, answer = echo._exchange(connection, "POST", echo.COORDINATION_PATH, body, headers)
            if status != 200:
                raise SystemExit(f"echo answered {status} {answer[:200]!r}")
            with lock:
                sent[json.loads(answer)["id"]] = started

    seconds = run_concurrently(send_all, args.concurrency)
    accept_rate = len(sent) / seconds  # counted once every sender has ended

    with DISPATCHER_LOG.open("w") as log:
        dispatcher = subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", "push_dispatcher"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        first = wait_for_arrivals(set(list(sent)[:1]), 60)
        cpu_at_first = echo.server_cpu_seconds(dispatcher.pid) or 0.0
        arrivals = wait_for_arrivals(set(sent), 120)
        cpu_at_last = echo.server_cpu_seconds(dispatcher.pid) or 0.0
        backlog = sorted(arrivals[key] for key in sent if key in arrivals)
        pushed = len(backlog)
        push_rate = (pushed - 1) / (backlog[-1] - backlog[0]) if pushed > 1 else 0.0
        cpu_per_message = (cpu_at_last - cpu_at_first) * 1000 / max(pushed - len(first), 1)

        steady: dict[str, float] = {}
        interval = 1 / args.rate
        count = int(args.rate * args.latency_seconds / 2)
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        start = time.perf_counter()
        for number in range(count):
            time.sleep(max(0.0, start + number * interval - time.perf_counter()))
            body, headers = prepare()
            started = time.time()
            status, answer = echo._exchange(connection, "POST", echo.COORDINATION_PATH, body, headers)
            if status != 200:
                raise SystemExit(f"echo answered {status} {answer[:200]!r}")
            steady[json.loads(answer)["id"]] = started
        arrivals = wait_for_arrivals(set(steady), 30)
    finally:
        echo.stop_server(dispatcher)
    latencies = sorted((arrivals[key] - steady[key]) * 1000 for key in steady if key in arrivals)
    return {
        "queued": len(sent),
        "pushed": pushed,
        "accept_rate_per_second": round(accept_rate, 1),
        "push_rate_per_second": round(push_rate, 1),
        "dispatcher_cpu_ms_per_message": round(cpu_per_message, 2),
        "steady_rate_per_second": args.rate,
        "steady_sent": len(steady),
        "steady_pushed": len(latencies),
        "accept_to_receiver_p50_ms": round(echo.percentile(latencies, 50), 2),
        "accept_to_receiver_p99_ms": round(echo.percentile(latencies, 99), 2),
    }


def wait_for_arrivals(expected: set[str], seconds: float) -> dict[str, float]:
    """The receiver's log (``<webhook-id> <arrival>`` per line) once every expected id is in it, or at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        arrivals: dict[str, float] = {}
        for line in RECEIVER_LOG.read_text().splitlines():
            webhook_id, _, at = line.partition(" ")
            if at:
                arrivals.setdefault(webhook_id, float(at))
        if expected <= arrivals.keys() or time.monotonic() > deadline:
            return arrivals
        time.sleep(0.05)


# --- idle streams ---------------------------------------------------------------------------


class IdleStreams:
    """``count`` streams held open by an event loop in a thread of its own (raw sockets: no client library
    cost), each past its opening comment before the measure starts."""

    def __init__(self, port: int, agents: list[dict], count: int):
        self.port, self.agents, self.count = port, agents, count
        self.loop = asyncio.new_event_loop()
        self.writers = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _open(self, agent: dict, gate: asyncio.Semaphore):
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            target = "/api/v1/inbox/stream"
            headers = Signer(agent).headers("GET", target)
            lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise SystemExit(f"an idle stream was refused: {head[:200]!r}")
            await reader.readuntil(b"\n\n")  # the opening comment
            self.writers.append(writer)
            asyncio.ensure_future(self._drain(reader))

    async def _drain(self, reader):
        while await reader.read(4096):
            pass

    def open(self) -> None:
        self.thread.start()
        gate = asyncio.Semaphore(50)

        async def all_of_them():
            await asyncio.gather(*(self._open(self.agents[n % len(self.agents)], gate) for n in range(self.count)))

        asyncio.run_coroutine_threadsafe(all_of_them(), self.loop).result(300)

    async def _close(self) -> None:
        for writer in self.writers:
            writer.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def echo_throughput(args, team: dict, master_pid: int) -> dict:
    sender = echo.EchoSender(
        {
            "sender_id": team["sender"]["id"],
            "recipient_id": team["sink"]["id"],
            "api_key": team["sender"]["key"],
            "signing_secret": team["sender"]["secret"],
        }
    )
    scenario = echo.run_scenario("echo", sender, args, master_pid)
    if scenario.errors:
        raise SystemExit(f"echo errors: {scenario.error_samples}")
    return scenario.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", echo.DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", echo.DEFAULT_REDIS_URL))
    parser.add_argument("--port", type=int, default=8120, help="gunicorn (the echo)")
    parser.add_argument("--events-port", type=int, default=8121, help="uvicorn (the inbox)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=3, help="threads per gunicorn worker (default 3, production's)")
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s of the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--drain", type=int, default=10_000)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000, help="echoes per throughput measure")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per throughput measure, at most")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads of the echo load")
    parser.add_argument("--push", type=int, default=2000, help="messages pushed to a webhook receiver (0: skip)")
    parser.add_argument("--receiver-port", type=int, default=8122)
    args = parser.parse_args(argv)

    env = echo.server_environment(args)
    env["BRIKK_LOG_LEVEL"] = "WARNING"
    print(f"database {echo._redacted(args.database_url)}, redis {echo._redacted(args.redis_url)}")
    print(f"load average before: {os.getloadavg()[0]:.2f}; gunicorn gthread {args.workers}x{args.threads}")
    migrated = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO, env=env, timeout=300
    )
    if migrated.returncode:
        return 1
    env["BRIKK_WEBHOOK_ALLOW_HTTP"] = "true"  # the receiver is plain http on 127.0.0.1
    env["BRIKK_WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.1/32"
    team = seed(env, args.drain, f"http://127.0.0.1:{args.receiver_port}/hook")
    gunicorn = echo.start_server(args, env)
    uvicorn = start_events_server(args, env)
    idle = receiver = None
    try:
        receiver = start_receiver(args.receiver_port) if args.push else None
        results = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "load_before": os.getloadavg()[0]}
        echo_throughput(args, team, gunicorn.pid)  # warm-up: keys verified, connections pooled
        results["echo"] = echo_throughput(args, team, gunicorn.pid)
        print(
            f"echo: {results['echo']['throughput_rps']} req/s, p50/p99 {results['echo']['p50_ms']}/"
            f"{results['echo']['p99_ms']} ms"
        )
        results["latency"] = measure_latency(args, team)
        print(f"latency at {args.rate:.0f}/s: {results['latency']}")
        results["drain"] = measure_drain(args, team)
        print(f"drain: {results['drain']}")
        if args.push:
            results["push"] = measure_push(args, env, team)
            print(f"push: {results['push']}")
        results["events_server_before_idle"] = process_memory(uvicorn.pid)
        idle = IdleStreams(args.events_port, team["idle"], args.idle)
        idle.open()
        time.sleep(1)
        results["events_server_with_idle"] = process_memory(uvicorn.pid)
        results["echo_beside_idle"] = echo_throughput(args, team, gunicorn.pid)
        results["gunicorn"] = gunicorn_memory(gunicorn.pid)
        results["load_after"] = os.getloadavg()[0]
    finally:
        if idle is not None:
            idle.close()
        echo.stop_server(uvicorn)
        echo.stop_server(gunicorn)
        if receiver is not None:
            echo.stop_server(receiver)

    ratio = results["echo_beside_idle"]["throughput_rps"] / results["echo"]["throughput_rps"]
    drain_ratio = results["drain"]["messages_per_second"] / results["echo"]["throughput_rps"]
    results["ratios"] = {"echo_beside_idle_to_echo": round(ratio, 3), "drain_to_echo": round(drain_ratio, 3)}
    before, after = results["events_server_before_idle"], results["events_server_with_idle"]
    print()
    print("| measure | figure | aim |")
    print("|---|---:|---|")
    print(
        f"| send → received p50 / p99 at {args.rate:.0f}/s | {results['latency']['p50_ms']} / "
        f"{results['latency']['p99_ms']} ms | < 10 / < 50 ms |"
    )
    print(
        f"| drain {args.drain} with {args.consumers} consumers | {results['drain']['messages_per_second']} msg/s "
        f"({drain_ratio:.2f}× echo) | ≥ echo |"
    )
    print(f"| echo alone | {results['echo']['throughput_rps']} req/s | |")
    if args.push:
        push = results["push"]
        print(
            f"| push: accept → receiver p50 / p99 at {push['steady_rate_per_second']:.0f}/s | "
            f"{push['accept_to_receiver_p50_ms']} / "
            f"{push['accept_to_receiver_p99_ms']} ms | p50 < 50 ms |"
        )
        print(
            f"| push rate (a backlog of {push['queued']}) / echo accept rate | {push['push_rate_per_second']} / "
            f"{push['accept_rate_per_second']} per s | push ≥ accept |"
        )
        print(f"| dispatcher CPU per pushed message | {push['dispatcher_cpu_ms_per_message']} ms | |")
    print(
        f"| echo beside {args.idle} idle streams | {results['echo_beside_idle']['throughput_rps']} req/s "
        f"({ratio:.2f}×) | ≥ 0.80× |"
    )
    print(
        f"| ASGI server with {args.idle} idle streams | {before['rss_mib']} → {after['rss_mib']} MiB, "
        f"{before['threads']} → {after['threads']} threads | |"
    )
    print(f"| gunicorn workers | {results['gunicorn']['rss_mib_per_worker']} MiB | |")
    print(f"load average before/after: {results['load_before']:.2f} / {results['load_after']:.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps({**results, "settings": vars(args) | {"database_url": None, "redis_url": None}}, indent=2) + "\n"
    )
    complete = results["latency"]["received"] == results["latency"]["sent"]
    complete = complete and results["drain"]["received_and_acked"] == args.drain
    if args.push:
        push = results["push"]
        complete = complete and push["pushed"] == push["queued"] and push["steady_pushed"] == push["steady_sent"]
    return 0 if complete else 1


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    sys.exit(main())
