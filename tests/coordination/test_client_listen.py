"""The client's inbox stream: the Server-Sent Events parser on raw byte streams, and ``listen`` (handler, acks
and nacks, reconnects with Last-Event-ID, Retry-After, dead connections, stopping) against a real socket server
speaking HTTP/1.1 chunked ``text/event-stream`` (tests/support/sse_server.py)."""

import json
import logging
import threading
import time

import pytest

from agents import signing
from coordination.client import (
    STREAM_PATH,
    BrikkAPIError,
    BrikkClient,
    BrikkConnectionError,
    BrikkError,
    RetryPolicy,
    SSEEvent,
    SSEParser,
    main,
)
from tests.support.sse_server import DROP, HANG, Refuse, SSEServer, Stream, message_event

API_KEY = "brk_0123456789ab.secret-part-of-the-key-abcdefghijklmnop"
SECRET = "signing-secret-value-0123456789abcdef"
SENDER = "0199b0a4-0000-7000-8000-000000000001"
RECIPIENT = "0199b0a4-0000-7000-8000-000000000002"


# --- the parser --------------------------------------------------------------------------------

STREAM = (
    "\ufeff: a heartbeat\r\n"
    "retry: 2500\r\n"
    "\r\n"
    "id: 1\r\n"
    "event: message\r\n"
    "data: first line\r\n"
    "data:  second line keeps one space\r"
    "data\n"
    "\n"
    ":\n"
    "data: é — 😀 split anywhere\n"
    "\r"
    "id: bad\0id\n"
    "event: other\n"
    'data: {"x": 1}\n'
    "\n"
    "event: orphan\n"
    "\n"
    "data: cut off by the end of the stream"
).encode()

EXPECTED = [
    SSEEvent("message", "first line\n second line keeps one space\n", "1"),
    SSEEvent("message", "é — 😀 split anywhere", "1"),
    SSEEvent("other", '{"x": 1}', "1"),
]


def parse(chunks) -> tuple[list[SSEEvent], SSEParser]:
    parser = SSEParser()
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events, parser


def test_the_parser_reads_the_standard_line_endings_fields_and_comments():
    events, parser = parse([STREAM])
    assert events == EXPECTED
    assert parser.retry_ms == 2500
    assert parser.comments == 2
    assert parser.last_event_id == "1"  # an id with NUL is ignored


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_the_parser_gives_the_same_events_wherever_the_stream_is_cut(cut):
    assert parse([STREAM[:cut], b"", STREAM[cut:]])[0] == EXPECTED


def test_the_parser_fed_byte_by_byte():
    assert parse([bytes([byte]) for byte in STREAM])[0] == EXPECTED


def test_a_cr_ending_one_chunk_and_a_lf_starting_the_next_are_one_line_end():
    events, _ = parse([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert events == [SSEEvent("message", "a\nb", None)]


def test_ids_carry_over_and_an_empty_id_resets_it():
    events, _ = parse([b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"])
    assert [event.id for event in events] == ["7", "7", ""]


def test_retry_takes_digits_only_and_unknown_fields_are_ignored():
    _, parser = parse([b"retry: 1.5\nretry: x\nfoo: bar\nretry: 300\nretry: -1\n\n"])
    assert parser.retry_ms == 300


# --- listen --------------------------------------------------------------------------------------


class SleepRecorder:
    def __init__(self):
        self.calls = []

    def __call__(self, seconds):
        self.calls.append(seconds)


def make_client(url, sleep=None):
    return BrikkClient(
        url,
        api_key=API_KEY,
        signing_secret=SECRET,
        retry=RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.05),
        sleep=sleep or SleepRecorder(),
    )


def item(n: int) -> dict:
    message_id = f"0199b0a4-0000-7000-8000-{n:012d}"
    server_id = f"0199b0a5-0000-7000-8000-{n:012d}"
    return {
        "version": "1.0",
        "message_id": message_id,
        "ts": "2026-01-01T00:00:00.000Z",
        "type": "command",
        "sender": {"agent_id": SENDER},
        "recipient": {"agent_id": RECIPIENT},
        "payload": {"n": n},
        "ttl_ms": 60000,
        "id": server_id,
        "receipt": f"{server_id}:token-{n}",
        "delivery_count": 1,
        "leased_until": "2026-01-01T00:00:30.000Z",
        "accepted_at": "2026-01-01T00:00:00.000Z",
    }


def events(*numbers) -> bytes:
    return b"".join(message_event(item(n)) for n in numbers)


def receipts(*numbers) -> list[str]:
    return [item(n)["receipt"] for n in numbers]


class Recorder:
    """A handler that records the payloads, fails on some and sets ``stop`` after ``stop_after`` messages."""

    def __init__(self, stop_after=None, fail_on=(), interrupt_on=None):
        self.seen = []
        self.stop = threading.Event()
        self.stop_after, self.fail_on, self.interrupt_on = stop_after, fail_on, interrupt_on

    def __call__(self, message):
        n = message["payload"]["n"]
        if n == self.interrupt_on:
            raise KeyboardInterrupt
        self.seen.append(n)
        if self.stop_after is not None and len(self.seen) >= self.stop_after:
            self.stop.set()
        if n in self.fail_on:
            raise RuntimeError(f"handler failed on {n}")


def stream_signature_is_valid(request):
    return signing.matches(
        SECRET,
        signing.parse_signature_header(request.headers["X-Brikk-Signature"]),
        "GET",
        request.path,
        request.headers["X-Brikk-Timestamp"],
        b"",
    )


def test_listen_runs_the_handler_per_message_and_acks_each_arrival_in_one_call():
    handler = Recorder(stop_after=3)
    script = [Stream([events(1, 2), b": heartbeat\n\n", events(3)])]
    with SSEServer(script) as server, make_client(server.url) as client:
        last = client.listen(handler, lease_seconds=45, stop=handler.stop)
    assert handler.seen == [1, 2, 3]
    assert last == item(3)["id"]
    assert server.settled == [("ack", {"receipts": receipts(1, 2)}), ("ack", {"receipts": receipts(3)})]
    [request] = server.streams
    assert request.path == f"{STREAM_PATH}?lease_seconds=45"
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["X-Brikk-Key"] == API_KEY
    assert "Last-Event-ID" not in request.headers
    assert stream_signature_is_valid(request)


def test_a_handler_that_raises_nacks_its_message_with_the_delay(caplog):
    handler = Recorder(stop_after=3, fail_on={2})
    with SSEServer([Stream([events(1, 2, 3)])]) as server, make_client(server.url) as client:
        client.listen(handler, nack_delay_seconds=5, stop=handler.stop)
    assert handler.seen == [1, 2, 3]
    assert server.settled == [
        ("ack", {"receipts": receipts(1, 3)}),
        ("nack", {"receipts": receipts(2), "delay_seconds": 5}),
    ]
    assert "handler failed on 2" in caplog.text


def test_a_dropped_connection_reconnects_with_the_last_event_id():
    handler = Recorder(stop_after=3)
    first = events(1, 2)
    script = [Stream([first[:25], 0.05, first[25:], events(3)[:30]], end=DROP), Stream([events(3)])]
    sleep = SleepRecorder()
    with SSEServer(script) as server, make_client(server.url, sleep) as client:
        client.listen(handler, stop=handler.stop)
    assert handler.seen == [1, 2, 3]  # the event cut off by the drop is not run; it comes again
    assert [request.headers.get("Last-Event-ID") for request in server.streams] == [None, item(2)["id"]]
    assert len(sleep.calls) == 1 and 0 <= sleep.calls[0] <= 0.01  # backoff from the first retry again
    assert all(stream_signature_is_valid(request) for request in server.streams)


def test_a_server_ending_the_stream_is_reconnected_and_retry_sets_the_least_delay():
    handler = Recorder(stop_after=2)
    sleep = SleepRecorder()
    with (
        SSEServer([Stream([b"retry: 1500\n\n", events(1)]), Stream([events(2)])]) as server,
        make_client(server.url, sleep) as client,
    ):
        client.listen(handler, stop=handler.stop)
    assert handler.seen == [1, 2]
    assert sleep.calls == [1.5]
    assert server.streams[1].headers["Last-Event-ID"] == item(1)["id"]


def test_503_and_429_are_retried_after_their_retry_after():
    handler = Recorder(stop_after=1)
    script = [
        Refuse(503, {"code": "service_unavailable"}, {"Retry-After": "7"}),
        Refuse(429, {"code": "rate_limited"}, {"Retry-After": "2"}),
        Refuse(502),
        Stream([events(1)]),
    ]
    sleep = SleepRecorder()
    with SSEServer(script) as server, make_client(server.url, sleep) as client:
        client.listen(handler, stop=handler.stop, last_event_id="resume-here")
    assert handler.seen == [1]
    assert sleep.calls[:2] == [7.0, 2.0]
    assert len(sleep.calls) == 3 and sleep.calls[2] <= 0.04  # backoff: the third consecutive failure
    assert {request.headers["Last-Event-ID"] for request in server.streams} == {"resume-here"}


def test_a_connection_silent_past_the_heartbeat_timeout_is_dead_and_reconnected():
    handler = Recorder(stop_after=2)
    started = time.monotonic()
    with (
        SSEServer([Stream([events(1)], end=HANG), Stream([events(2)])]) as server,
        make_client(server.url) as client,
    ):
        client.listen(handler, stop=handler.stop, heartbeat_timeout=0.3)
    assert handler.seen == [1, 2]
    assert time.monotonic() - started < 5
    assert server.streams[1].headers["Last-Event-ID"] == item(1)["id"]


def test_heartbeats_keep_a_quiet_connection_alive():
    handler = Recorder(stop_after=1)
    with (
        SSEServer([Stream([b":\n\n", 0.15] * 5 + [events(1)])]) as server,
        make_client(server.url) as client,
    ):
        client.listen(handler, stop=handler.stop, heartbeat_timeout=0.5)
    assert handler.seen == [1]
    assert len(server.streams) == 1


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_a_refusal_that_is_not_transient_raises_at_once(status):
    body = {"code": "refused", "message": "no", "request_id": "r-1"}
    with (
        SSEServer([Refuse(status, body)]) as server,
        make_client(server.url) as client,
        pytest.raises(BrikkAPIError) as caught,
    ):
        client.listen(lambda message: None)
    assert (caught.value.status_code, caught.value.code) == (status, "refused")
    assert len(server.streams) == 1


def test_an_answer_that_is_not_an_event_stream_raises():
    with (
        SSEServer([Refuse(200, {"messages": []})]) as server,
        make_client(server.url) as client,
        pytest.raises(BrikkError, match="not an event stream"),
    ):
        client.listen(lambda message: None)


def test_max_failures_consecutive_failed_connections_raise_the_last_error():
    script = [Stream([], end=DROP), Refuse(503, {"code": "service_unavailable"}), Stream([], end=DROP)]
    with (
        SSEServer(script) as server,
        make_client(server.url) as client,
        pytest.raises(BrikkConnectionError),
    ):
        client.listen(lambda message: None, max_failures=3)
    assert len(server.streams) == 3


def test_a_stop_from_another_thread_ends_listen_at_the_next_heartbeat():
    stop = threading.Event()
    with (
        SSEServer([Stream([b":\n\n", 0.05] * 200)]) as server,
        make_client(server.url) as client,
    ):
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        client.listen(lambda message: None, stop=stop)
    assert 0.25 < time.monotonic() - started < 2


def test_a_stop_ends_the_wait_before_reconnecting_at_once():
    stop = threading.Event()
    with (
        SSEServer([Refuse(503, {"code": "service_unavailable"}, {"Retry-After": "30"})]) as server,
        BrikkClient(server.url, api_key=API_KEY) as client,  # the real sleep: an interruptible wait
    ):
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        client.listen(lambda message: None, stop=stop)
    assert time.monotonic() - started < 3
    assert len(server.streams) == 1


def test_keyboard_interrupt_acks_what_was_handled_and_gives_back_the_rest():
    handler = Recorder(interrupt_on=2)
    with SSEServer([Stream([events(1, 2, 3)], end=HANG)]) as server, make_client(server.url) as client:
        last = client.listen(handler, nack_delay_seconds=9)
    assert handler.seen == [1]
    assert last == item(3)["id"]
    assert server.settled == [
        ("ack", {"receipts": receipts(1)}),
        ("nack", {"receipts": receipts(2, 3), "delay_seconds": 0}),
    ]


def test_without_ack_nothing_is_settled():
    handler = Recorder(stop_after=2, fail_on={1})
    with SSEServer([Stream([events(1, 2)])]) as server, make_client(server.url) as client:
        client.listen(handler, ack=False, stop=handler.stop)
    assert handler.seen == [1, 2]
    assert server.settled == []


def test_an_event_that_is_not_a_message_is_skipped(caplog):
    handler = Recorder(stop_after=1)
    chunk = b"event: notice\ndata: {}\n\nid: x\ndata: not json\n\n" + events(1)
    with SSEServer([Stream([chunk])]) as server, make_client(server.url) as client:
        client.listen(handler, stop=handler.stop)
    assert handler.seen == [1]
    assert server.settled == [("ack", {"receipts": receipts(1)})]
    assert caught_warning(caplog, "event x is not a received message")


def caught_warning(caplog, text):
    return any(text in record.getMessage() and record.levelno == logging.WARNING for record in caplog.records)


# --- the command line -----------------------------------------------------------------------------


def test_cli_listen_prints_each_message_as_a_json_line_and_acks(monkeypatch, capsys):
    monkeypatch.setenv("BRIKK_API_KEY", API_KEY)
    monkeypatch.setenv("BRIKK_SIGNING_SECRET", SECRET)
    with SSEServer([Stream([events(1, 2)], end=DROP), Stream([events(3, 4)])]) as server:
        code = main(["--url", server.url, "listen", "--lease", "60", "--count", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [item(1), item(2), item(3)]
    assert server.settled == [
        ("ack", {"receipts": receipts(1, 2)}),
        ("ack", {"receipts": receipts(3)}),
        ("nack", {"receipts": receipts(4), "delay_seconds": 0}),  # leased to us, not printed: given back
    ]
    assert server.streams[0].path == f"{STREAM_PATH}?lease_seconds=60"
    assert all(stream_signature_is_valid(request) for request in server.streams)


def test_cli_listen_without_ack_only_prints(capsys):
    with SSEServer([Stream([events(1)])]) as server:
        code = main(["--url", server.url, "--key", API_KEY, "listen", "--no-ack", "--count", "1"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == item(1)
    assert server.settled == []


def test_cli_listen_exits_1_when_the_stream_is_refused(capsys):
    body = {"code": "forbidden", "message": "Only an agent has an inbox.", "request_id": "r-2", "details": None}
    with SSEServer([Refuse(403, body)]) as server:
        code = main(["--url", server.url, "--key", API_KEY, "listen"])
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.err) == body
    assert captured.out == ""
