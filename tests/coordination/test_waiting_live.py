"""Waiting consumers on the real ASGI server (uvicorn serving brikk.asgi) against PostgreSQL: woken across
processes by NOTIFY, streams over real HTTP, and a thousand idle consumers on a few threads."""

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.db import connection, connections
from rest_framework.test import APIClient

from agents import services as agent_services
from agents import signing
from coordination.models import MessageLog
from tests.support.asgi_server import AsgiServer
from tests.support.coordination import envelope, post_echo

pytestmark = [pytest.mark.pg_redis, pytest.mark.django_db(transaction=True)]

LANES = 4


@pytest.fixture
def asgi(tmp_path):
    name = connection.settings_dict["NAME"]  # the test database, where this test's rows are committed
    server = AsgiServer(
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
            "REDIS_URL": settings.REDIS_URL,
            "BRIKK_LOG_LEVEL": "WARNING",
            "BRIKK_MANIFEST_STATIC": "false",
            "BRIKK_ASGI_THREADS": str(LANES),
            "BRIKK_STREAM_HEARTBEAT_SECONDS": "2",
            "BRIKK_DB_POOL_MAX": "20",
        },
        log_path=tmp_path / "uvicorn.log",
    ).start()
    yield server
    server.stop()
    log = (tmp_path / "uvicorn.log").read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


class Connection:
    """One raw HTTP/1.1 connection, as a consumer holds it: a request, then the answer or the stream."""

    def __init__(self, reader, writer):
        self.reader, self.writer, self.buffer = reader, writer, ""

    @classmethod
    async def open(cls, port: int, method: str, target: str, headers: dict, body: bytes = b"") -> "Connection":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return cls(reader, writer)

    async def head(self) -> tuple[int, dict]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        return int(status_line.split()[1]), {name.lower(): value for name, value in headers.items()}

    async def json_body(self, headers: dict) -> dict:
        return json.loads(await self.reader.readexactly(int(headers["content-length"])))

    async def event(self) -> dict:
        """The next event or comment of a chunked text/event-stream."""
        while "\n\n" not in self.buffer:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            self.buffer += (await self.reader.readexactly(size + 2))[:-2].decode()
        block, self.buffer = self.buffer.split("\n\n", 1)
        item = {}
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            item[field or "comment"] = value.lstrip(" ")
        return item

    def close(self):
        self.writer.close()


def signed(key: str, secret: str, method: str, target: str, body: bytes = b"") -> dict:
    timestamp = signing.now_timestamp()
    signature = signing.signature_header(signing.sign(secret, method, target, timestamp, body))
    return {"X-Brikk-Key": key, "X-Brikk-Timestamp": timestamp, "X-Brikk-Signature": signature}


def send(sender, recipient, **fields) -> str:
    """An echo through the test client, committed by this process (the server learns of it by NOTIFY)."""
    try:
        body = envelope(sender.agent, recipient.agent, **fields)
        response = post_echo(APIClient(), body, key=sender.key.plaintext)
        assert response.status_code == 200, response.content
        return response.json()["id"]
    finally:
        if threading.current_thread() is not threading.main_thread():
            connections.close_all()  # the test client leaves it open; the test database is dropped later


def test_a_long_poll_is_woken_within_milliseconds_by_a_commit_in_another_process(asgi, new_agent, peer):
    answers = {}

    def long_poll():
        started = time.monotonic()
        answers["response"] = asgi.request(
            "POST",
            "/api/v1/inbox/receive",
            headers={"X-Brikk-Key": peer.key.plaintext, "Content-Type": "application/json"},
            body=json.dumps({"wait_seconds": 20}).encode(),
            timeout=30,
        )
        answers["finished"] = time.monotonic()
        answers["started"] = started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(1.5)  # the long poll is waiting on the server's event loop
    assert "response" not in answers
    committed = time.monotonic()
    message_id = send(new_agent, peer, payload={"across": "processes"})
    poller.join(30)
    response = answers["response"]
    assert response.status == 200
    [item] = response.json()["messages"]
    assert item["id"] == message_id and item["payload"] == {"across": "processes"}
    woken_after = answers["finished"] - committed
    print(f"long poll answered {woken_after * 1000:.1f} ms after the sender's commit returned")
    assert woken_after < 2  # woken by NOTIFY, not at the end of the 20 s wait


def test_a_signed_stream_over_http_delivers_and_the_consumer_acks(asgi, new_agent, peer):
    async def scenario():
        target = "/api/v1/inbox/stream?lease_seconds=120"
        stream = await Connection.open(
            asgi.port, "GET", target, {**signed(peer.key.plaintext, peer.signing_secret, "GET", target)}
        )
        status, headers = await stream.head()
        assert status == 200, await stream.reader.read(2000)
        assert headers["content-type"].startswith("text/event-stream")
        assert (await stream.event())["retry"] == "1000"
        message_id = await asyncio.to_thread(send, new_agent, peer, payload={"stream": 1})
        event = await asyncio.wait_for(stream.event(), 10)
        heartbeat = await asyncio.wait_for(stream.event(), 10)
        stream.close()
        return message_id, event, heartbeat

    message_id, event, heartbeat = asyncio.run(scenario())
    assert event["event"] == "message" and event["id"] == message_id
    data = json.loads(event["data"])
    assert heartbeat == {"comment": "heartbeat"}
    body = json.dumps({"receipts": [data["receipt"]]}).encode()
    acked = asgi.request(
        "POST",
        "/api/v1/inbox/ack",
        headers={**signed(peer.key.plaintext, peer.signing_secret, "POST", "/api/v1/inbox/ack", body)}
        | {"Content-Type": "application/json"},
        body=body,
    )
    assert acked.status == 200 and acked.json()["results"][0]["result"] == "ok"
    assert MessageLog.objects.get(pk=message_id).delivery_state == "acked"


def test_a_thousand_idle_consumers_hold_no_thread_and_each_message_reaches_exactly_one(asgi, org, owner, new_agent):
    agents = [agent_services.create_agent(org, name=f"idle-{number}", owner=owner) for number in range(20)]
    threads_before = asgi.threads()
    rss_before = asgi.rss_bytes()

    async def scenario():
        gate = asyncio.Semaphore(50)

        async def stream_consumer(agent):
            async with gate:
                stream = await Connection.open(
                    asgi.port, "GET", "/api/v1/inbox/stream", {"X-Brikk-Key": agent.key.plaintext}
                )
                status, _ = await stream.head()
                assert status == 200
                await stream.event()  # the opening comment: the stream is open and waiting
            return stream

        async def poll_consumer(agent):
            async with gate:
                body = json.dumps({"wait_seconds": 20, "lease_seconds": 120}).encode()
                headers = {"X-Brikk-Key": agent.key.plaintext, "Content-Type": "application/json"}
                return await Connection.open(asgi.port, "POST", "/api/v1/inbox/receive", headers, body)

        streams = await asyncio.gather(*(stream_consumer(agents[n % 20]) for n in range(800)))
        polls = await asyncio.gather(*(poll_consumer(agents[n % 20]) for n in range(200)))
        await asyncio.sleep(1)  # the long polls reach their wait
        idle = {"threads": asgi.threads(), "rss": asgi.rss_bytes()}

        sent = await asyncio.gather(*(asyncio.to_thread(send, new_agent, agent) for agent in agents))

        received = []

        async def watch_stream(stream):
            while True:
                item = await stream.event()
                if item.get("event") == "message":
                    received.append(json.loads(item["data"])["id"])

        async def watch_poll(poll):
            status, headers = await poll.head()
            assert status == 200
            received.extend(item["id"] for item in (await poll.json_body(headers))["messages"])

        watchers = [asyncio.create_task(watch_stream(stream)) for stream in streams]
        watchers += [asyncio.create_task(watch_poll(poll)) for poll in polls]
        deadline = time.monotonic() + 15
        while len(received) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a duplicate would show up now
        for watcher in watchers:
            watcher.cancel()
        for connection_ in streams + polls:
            connection_.close()
        return idle, sent, received

    idle, sent, received = asyncio.run(scenario())
    print(
        f"1,000 idle consumers: threads {threads_before} -> {idle['threads']}, "
        f"RSS {rss_before / 2**20:.0f} -> {idle['rss'] / 2**20:.0f} MiB"
    )
    assert sorted(received) == sorted(sent)  # each message once, to one of its agent's consumers
    # Lanes, the inbox listener, the pool's workers and uvicorn's own: the same few, not one per consumer.
    assert idle["threads"] <= threads_before + LANES + 8


def test_behind_nginx_the_inbox_goes_to_the_asgi_server_and_a_stream_is_not_buffered(asgi, new_agent, peer, tmp_path):
    """deploy/nginx.conf: /api/v1/inbox/ to the ASGI server (here everything else is sent to a port nobody
    listens on, so only that route can answer), events passed on as they come."""
    from tests.support.live_server import free_port
    from tests.support.nginx import Nginx

    proxy = Nginx(
        f"127.0.0.1:{free_port()}",
        events_upstream=f"127.0.0.1:{asgi.port}",
        max_body_bytes=settings.BRIKK_MAX_BODY_BYTES,
        log_path=tmp_path / "nginx.log",
    ).start()
    try:

        async def scenario():
            stream = await Connection.open(
                proxy.port, "GET", "/api/v1/inbox/stream", {"X-Brikk-Key": peer.key.plaintext}
            )
            status, headers = await stream.head()
            assert status == 200 and headers["content-type"].startswith("text/event-stream")
            await asyncio.wait_for(stream.event(), 5)  # the opening comment arrives unbuffered
            message_id = await asyncio.to_thread(send, new_agent, peer)
            event = await asyncio.wait_for(stream.event(), 5)
            stream.close()
            return message_id, event

        message_id, event = asyncio.run(scenario())
        assert event["event"] == "message" and event["id"] == message_id
        elsewhere = urllib.request.Request(f"http://127.0.0.1:{proxy.port}/healthz")  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(elsewhere, timeout=5)  # noqa: S310
        assert refused.value.code == 503  # gunicorn's route: nobody there
    finally:
        proxy.stop()


def test_the_clients_listen_consumes_the_real_stream_acks_and_retries_a_failed_handler(asgi, new_agent, peer):
    from coordination.client import BrikkClient

    seen, stop, failed_once = [], threading.Event(), set()

    def handler(message):
        seen.append((message["payload"]["n"], message["delivery_count"]))
        if message["payload"]["n"] == 1 and not failed_once:
            failed_once.add(1)
            raise RuntimeError("not this time")  # nacked: comes back at once
        if len([n for n, _ in seen if n != 1 or _ > 1]) == 3:
            stop.set()

    client = BrikkClient(
        f"http://127.0.0.1:{asgi.port}", api_key=peer.key.plaintext, signing_secret=peer.signing_secret
    )
    listener = threading.Thread(target=client.listen, args=(handler,), kwargs={"stop": stop, "lease_seconds": 60})
    listener.start()
    sent = [send(new_agent, peer, payload={"n": n}) for n in range(3)]
    listener.join(30)
    client.close()
    assert not listener.is_alive()
    assert sorted(seen) == [(0, 1), (1, 1), (1, 2), (2, 1)]
    states = dict(MessageLog.objects.filter(pk__in=sent).values_list("pk", "delivery_state"))
    assert set(states.values()) == {"acked"}
