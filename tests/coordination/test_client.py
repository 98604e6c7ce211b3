"""The Python client over real sockets: envelopes, signatures over the bytes sent, retries that keep the
idempotency key and message id, Retry-After, typed errors, polling, secrets kept out, and the CLI."""

import json
import logging
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from agents import signing
from coordination.client import (
    COORDINATION_PATH,
    BrikkAPIError,
    BrikkClient,
    BrikkConnectionError,
    BrikkTimeoutError,
    Party,
    RetryPolicy,
    build_envelope,
    encode_body,
    main,
    parse_retry_after,
    receipts_of,
)
from tests.support.scripted_server import DROP, Answer, ScriptedServer

API_KEY = "brk_0123456789ab.secret-part-of-the-key-abcdefghijklmnop"
SECRET = "signing-secret-value-0123456789abcdef"
SENDER = "0199b0a4-0000-7000-8000-000000000001"
RECIPIENT = "0199b0a4-0000-7000-8000-000000000002"
REPO = Path(__file__).resolve().parents[2]


class SleepRecorder:
    """Stands in for time.sleep so backoff tests run instantly while recording what was asked."""

    def __init__(self):
        self.calls = []

    def __call__(self, seconds):
        self.calls.append(seconds)


def make_client(url, sleep=None, **kwargs):
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.05))
    return BrikkClient(url, api_key=API_KEY, signing_secret=SECRET, sleep=sleep or SleepRecorder(), **kwargs)


def signature_is_valid(request):
    return signing.matches(
        SECRET,
        signing.parse_signature_header(request.headers["X-Brikk-Signature"]),
        request.method,
        request.path,
        request.headers["X-Brikk-Timestamp"],
        request.body,
    )


# --- envelopes -------------------------------------------------------------------------------


def test_envelope_has_every_field_with_a_uuid7_and_an_rfc3339_utc_timestamp():
    envelope = build_envelope(
        Party(SENDER, "org-1"), {"agent_id": RECIPIENT}, {"hello": "world"}, ttl_ms=5000, reply_to="r", nonce="n"
    )
    assert uuid.UUID(envelope["message_id"]).version == 7
    assert envelope["ts"].endswith("Z")
    assert abs(signing.parse_timestamp(envelope["ts"]) - datetime.now(UTC)) < timedelta(seconds=5)
    assert envelope == {
        "version": "1.0",
        "message_id": envelope["message_id"],
        "ts": envelope["ts"],
        "type": "message",
        "sender": {"agent_id": SENDER, "org_id": "org-1"},
        "recipient": {"agent_id": RECIPIENT},
        "payload": {"hello": "world"},
        "ttl_ms": 5000,
        "reply_to": "r",
        "nonce": "n",
    }


def test_envelope_omits_unset_optionals_and_ids_differ():
    first = build_envelope(SENDER, RECIPIENT, {})
    second = build_envelope(SENDER, RECIPIENT, {})
    assert not {"ttl_ms", "reply_to", "nonce"} & first.keys()
    assert first["message_id"] != second["message_id"]
    assert first["message_id"] < second["message_id"] or first["ts"] <= second["ts"]  # v7 sorts by time


@pytest.mark.parametrize(
    ("payload", "kind", "error"), [([1, 2], "message", TypeError), ({}, "shout", ValueError)], ids=["list", "type"]
)
def test_envelope_refuses_a_non_object_payload_or_unknown_type(payload, kind, error):
    with pytest.raises(error):
        build_envelope(SENDER, RECIPIENT, payload, type=kind)


# --- signing: the bytes signed are the bytes sent -------------------------------------------


def test_post_signs_exactly_the_bytes_it_sends():
    with ScriptedServer(default=Answer(200, {"status": "delivered"})) as server, make_client(server.url) as client:
        envelope = build_envelope(SENDER, RECIPIENT, {"text": "héllo ✓", "n": 1})
        response = client.send(envelope)

    assert response.status_code == 200
    assert response.body == {"status": "delivered"}
    [request] = server.received
    assert request.method == "POST"
    assert request.path == COORDINATION_PATH
    assert request.body == encode_body(envelope)
    assert json.loads(request.body) == envelope
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Brikk-Key"] == API_KEY
    assert request.headers["Idempotency-Key"] == envelope["message_id"]
    assert "Prefer" not in request.headers
    signing.parse_timestamp(request.headers["X-Brikk-Timestamp"])
    assert signature_is_valid(request)
    # A signature over any other bytes does not match: the check above is meaningful.
    tampered = request.body.replace(b'"n":1', b'"n":2')
    assert not signing.matches(
        SECRET,
        signing.parse_signature_header(request.headers["X-Brikk-Signature"]),
        "POST",
        request.path,
        request.headers["X-Brikk-Timestamp"],
        tampered,
    )


def test_a_query_string_is_signed_as_sent():
    """Issue 9: the canonical PATH is the path plus '?' and the raw query string when there is one."""
    with ScriptedServer(default=Answer(200, {"results": []})) as server, make_client(server.url) as client:
        client.list_messages(status=["failed", "rejected"], page_size=5)
        client.request("GET", "/api/v1/agents/?page_size=2", params={"x": "a b"})
        client.request("GET", "/api/v1/agents/?")

    listed, explicit, bare = server.received
    assert listed.path == "/api/v1/coordination/messages?status=failed&status=rejected&page_size=5"
    assert explicit.path == "/api/v1/agents/?page_size=2&x=a+b"
    assert bare.path == "/api/v1/agents/"
    for request in server.received:
        assert signature_is_valid(request), request.path
    assert not signing.matches(
        SECRET,
        signing.parse_signature_header(listed.headers["X-Brikk-Signature"]),
        "GET",
        "/api/v1/coordination/messages",
        listed.headers["X-Brikk-Timestamp"],
        b"",
    )


def test_bearer_auth_async_preference_and_explicit_idempotency_key():
    with (
        ScriptedServer(default=Answer(202, {"status": "accepted"})) as server,
        make_client(server.url, auth_header="bearer") as client,
    ):
        response = client.echo(SENDER, RECIPIENT, {"a": 1}, respond_async=True, idempotency_key="op-42")
    assert response.status_code == 202
    [request] = server.received
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert "X-Brikk-Key" not in request.headers
    assert request.headers["Prefer"] == "respond-async"
    assert request.headers["Idempotency-Key"] == "op-42"
    assert json.loads(request.body)["message_id"] != "op-42"


def test_a_path_prefix_in_the_base_url_is_part_of_the_signed_path():
    with ScriptedServer() as server, make_client(server.url + "/brikk/") as client:
        client.echo(SENDER, RECIPIENT, {})
    [request] = server.received
    assert request.path == "/brikk" + COORDINATION_PATH
    assert signature_is_valid(request)


def test_without_a_signing_secret_no_signature_headers_are_sent():
    with ScriptedServer() as server, BrikkClient(server.url, api_key=API_KEY) as client:
        client.echo(SENDER, RECIPIENT, {})
    [request] = server.received
    assert "X-Brikk-Signature" not in request.headers
    assert "X-Brikk-Timestamp" not in request.headers


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [500, 502, 503, 504, 409, DROP], ids=str)
def test_retry_resends_the_same_bytes_key_and_message_id(failure):
    first = DROP if failure == DROP else Answer(failure, {"code": "x", "message": "later", "request_id": "r1"})
    sleep = SleepRecorder()
    with (
        ScriptedServer([first, first], Answer(200, {"status": "delivered"})) as server,
        make_client(server.url, sleep=sleep) as client,
    ):
        envelope = build_envelope(SENDER, RECIPIENT, {"k": "v"})
        response = client.send(envelope)

    assert response.status_code == 200
    assert response.attempts == 3
    assert len(server.received) == 3
    assert {r.body for r in server.received} == {encode_body(envelope)}
    assert {r.headers["Idempotency-Key"] for r in server.received} == {envelope["message_id"]}
    assert {json.loads(r.body)["message_id"] for r in server.received} == {envelope["message_id"]}
    assert all(signature_is_valid(r) for r in server.received)
    assert len(sleep.calls) == 2


def test_retry_after_is_honoured_and_each_attempt_is_signed_afresh():
    throttled = Answer(429, {"code": "rate_limited", "message": "slow down", "request_id": "r"}, {"Retry-After": "1"})
    with (
        ScriptedServer([throttled]) as server,
        BrikkClient(server.url, api_key=API_KEY, signing_secret=SECRET) as client,
    ):
        response = client.echo(SENDER, RECIPIENT, {})

    assert response.attempts == 2
    first, second = server.received
    assert second.at - first.at >= 1.0
    assert first.headers["X-Brikk-Timestamp"] != second.headers["X-Brikk-Timestamp"]
    assert first.headers["X-Brikk-Signature"] != second.headers["X-Brikk-Signature"]
    assert first.body == second.body
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert signature_is_valid(first) and signature_is_valid(second)


def test_retry_after_as_an_http_date_is_waited_for():
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    sleep = SleepRecorder()
    with (
        ScriptedServer([Answer(503, {"code": "service_unavailable"}, {"Retry-After": when})]) as server,
        make_client(server.url, sleep=sleep) as client,
    ):
        client.echo(SENDER, RECIPIENT, {})
    [waited] = sleep.calls
    assert 28 <= waited <= 30


def test_a_retry_after_beyond_the_limit_is_not_shortened_but_final():
    refusal = Answer(429, {"code": "rate_limited", "message": "m", "request_id": "r9"}, {"Retry-After": "3600"})
    sleep = SleepRecorder()
    with (
        ScriptedServer(default=refusal) as server,
        make_client(server.url, sleep=sleep) as client,
        pytest.raises(BrikkAPIError) as caught,
    ):
        client.echo(SENDER, RECIPIENT, {})
    assert len(server.received) == 1
    assert sleep.calls == []
    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after == 3600


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    policy = RetryPolicy(max_attempts=8, backoff_base=0.1, backoff_max=1.0)
    sleep = SleepRecorder()
    with (
        ScriptedServer(default=Answer(503, {"code": "service_unavailable"})) as server,
        make_client(server.url, sleep=sleep, retry=policy, rng=random.Random(7)) as client,
        pytest.raises(BrikkAPIError) as caught,
    ):
        client.echo(SENDER, RECIPIENT, {})
    assert caught.value.attempts == 8
    assert len(server.received) == 8
    assert len(sleep.calls) == 7
    ceilings = [min(1.0, 0.1 * 2**n) for n in range(7)]
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(sleep.calls, ceilings, strict=True))
    assert len(set(sleep.calls)) == 7  # jittered, not a fixed schedule
    assert max(sleep.calls[4:]) > ceilings[0]  # later waits reach past the first ceiling


def test_final_failure_raises_the_servers_error_body():
    body = {
        "code": "validation_error",
        "message": "The request is not valid; see details.",
        "request_id": "req-123",
        "details": {"recipient": ["unknown agent"]},
    }
    with (
        ScriptedServer(default=Answer(422, body, {"X-Request-ID": "req-123"})) as server,
        make_client(server.url) as client,
        pytest.raises(BrikkAPIError) as caught,
    ):
        client.echo(SENDER, RECIPIENT, {})
    error = caught.value
    assert len(server.received) == 1  # a 4xx other than 409/429 is not retried
    assert (error.status_code, error.code, error.request_id) == (422, "validation_error", "req-123")
    assert error.error_message == body["message"]
    assert error.details == {"recipient": ["unknown agent"]}
    assert error.body == body


def test_persistent_503_ends_after_max_attempts_with_the_last_error():
    answer = Answer(503, {"code": "service_unavailable", "message": "down", "request_id": "r", "details": None})
    with (
        ScriptedServer(default=answer) as server,
        make_client(server.url) as client,
        pytest.raises(BrikkAPIError) as caught,
    ):
        client.echo(SENDER, RECIPIENT, {})
    assert caught.value.code == "service_unavailable"
    assert caught.value.attempts == 4
    assert len(server.received) == 4


def test_unreachable_server_raises_a_connection_error_after_retrying():
    with ScriptedServer() as server:
        url = server.url
    sleep = SleepRecorder()  # the server is closed now: connection refused
    with make_client(url, sleep=sleep) as client, pytest.raises(BrikkConnectionError) as caught:
        client.echo(SENDER, RECIPIENT, {})
    assert caught.value.attempts == 4
    assert len(sleep.calls) == 3


# --- async polling ----------------------------------------------------------------------------


def test_wait_for_message_polls_signed_gets_until_final():
    script = [Answer(200, {"id": "m1", "status": "accepted"}), Answer(200, {"id": "m1", "status": "processing"})]
    final = Answer(200, {"id": "m1", "status": "delivered", "attempts": 2})
    sleep = SleepRecorder()
    with ScriptedServer(script, final) as server, make_client(server.url, sleep=sleep) as client:
        result = client.wait_for_message("m1", interval=0.01)
    assert result["status"] == "delivered"
    assert [r.path for r in server.received] == ["/api/v1/coordination/messages/m1"] * 3
    assert all(r.method == "GET" and r.body == b"" and signature_is_valid(r) for r in server.received)
    assert len(sleep.calls) == 2


def test_wait_for_message_times_out_with_the_last_status():
    with (
        ScriptedServer(default=Answer(200, {"id": "m1", "status": "processing"})) as server,
        make_client(server.url) as client,
        pytest.raises(BrikkTimeoutError) as caught,
    ):
        client.wait_for_message("m1", timeout=0.05, interval=0.01)
    assert caught.value.last["status"] == "processing"


# --- secrets stay out -------------------------------------------------------------------------


def test_secrets_never_appear_in_repr_errors_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    answer = Answer(503, {"code": "service_unavailable", "message": "down", "request_id": "r"})
    with ScriptedServer(default=answer) as server, make_client(server.url) as client:
        text = repr(client)
        with pytest.raises(BrikkAPIError) as caught:
            client.echo(SENDER, RECIPIENT, {})
    assert "retry" in caplog.text  # retries were logged, so the check below looked at real log lines
    for rendered in (text, str(caught.value), repr(caught.value), caplog.text):
        assert API_KEY not in rendered
        assert SECRET not in rendered
    assert "<set>" in text


def test_parse_retry_after_handles_seconds_dates_and_junk():
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=60), usegmt=True)
    assert parse_retry_after(past) == 0


# --- the inbox --------------------------------------------------------------------------------


def test_a_long_poll_reads_for_longer_than_it_waits():
    """The read timeout of a receive is the client's plus wait_seconds: a server that holds the answer for
    the whole wait is not a timeout; the same delay without a wait is."""
    slow = Answer(200, {"messages": []}, delay=0.8)
    with ScriptedServer(default=slow) as server, make_client(server.url, timeout=0.4) as client:
        assert client.receive(max_messages=5, wait_seconds=1, lease_seconds=60) == []
        [request] = server.received
        assert (request.method, request.path) == ("POST", "/api/v1/inbox/receive")
        assert json.loads(request.body) == {"max_messages": 5, "wait_seconds": 1, "lease_seconds": 60}
        assert signature_is_valid(request)
        with pytest.raises(BrikkConnectionError, match="ReadTimeout"):
            client.receive()


def test_receipts_are_taken_from_messages_and_sent_in_batches_of_100():
    messages = [{"receipt": f"id-{n}:token"} for n in range(150)]
    answer = Answer(200, {"results": [{"receipt": "x", "result": "ok"}] * 100})
    with ScriptedServer(default=answer) as server, make_client(server.url) as client:
        assert len(client.nack(messages, delay_seconds=3)) == 200  # what the server said, twice
        assert client.extend("id-0:token", lease_seconds=90)
    bodies = [json.loads(request.body) for request in server.received]
    assert [len(body["receipts"]) for body in bodies[:2]] == [100, 50]
    assert bodies[1]["receipts"][-1] == "id-149:token" and bodies[0]["delay_seconds"] == 3
    assert bodies[2] == {"receipts": ["id-0:token"], "lease_seconds": 90}
    assert receipts_of({"receipt": "a:b"}) == ["a:b"]


@pytest.mark.parametrize("command", [["receive"], ["ack", "r"], ["nack", "r"], ["stats"], ["listen"], ["batch", "-"]])
def test_cli_inbox_commands_need_a_key(command, monkeypatch, capsys):
    monkeypatch.delenv("BRIKK_API_KEY", raising=False)
    with pytest.raises(SystemExit) as caught:
        main(command)
    assert caught.value.code == 2
    assert "API key is required" in capsys.readouterr().err


# --- command line -----------------------------------------------------------------------------


def test_cli_echo_reads_secrets_from_env_and_prints_the_response(monkeypatch, capsys):
    monkeypatch.setenv("BRIKK_API_KEY", API_KEY)
    monkeypatch.setenv("BRIKK_SIGNING_SECRET", SECRET)
    reply = {"status": "delivered", "envelope": {"payload": {"hello": "world"}}}
    with ScriptedServer(default=Answer(200, reply)) as server:
        monkeypatch.setenv("BRIKK_URL", server.url)
        code = main(
            ["echo", "--sender", SENDER, "--recipient", RECIPIENT, "--payload", '{"hello":"world"}']
            + ["--idempotency-key", "cli-1", "--async"]
        )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == reply
    [request] = server.received
    assert request.headers["Idempotency-Key"] == "cli-1"
    assert request.headers["Prefer"] == "respond-async"
    assert json.loads(request.body)["payload"] == {"hello": "world"}
    assert signature_is_valid(request)


def test_cli_async_wait_follows_the_location_until_delivered(capsys):
    location = "/api/v1/coordination/messages/0199b0a4-0000-7000-8000-00000000abcd"
    accepted = Answer(202, {"status": "accepted"}, {"Location": location})
    script = [accepted, Answer(200, {"status": "processing"})]
    with ScriptedServer(script, Answer(200, {"status": "delivered", "attempts": 1})) as server:
        code = main(
            ["--url", server.url, "--key", API_KEY, "--signing-secret", SECRET, "echo", "--async", "--wait"]
            + ["--sender", SENDER, "--recipient", RECIPIENT]
        )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"status": "delivered", "attempts": 1}
    assert [(r.method, r.path) for r in server.received] == [("POST", COORDINATION_PATH)] + [("GET", location)] * 2
    assert all(signature_is_valid(r) for r in server.received)


def test_cli_error_exits_non_zero_with_the_error_body(capsys):
    body = {"code": "unauthorized", "message": "Invalid API key.", "request_id": "r-1", "details": None}
    with ScriptedServer(default=Answer(401, body)) as server:
        code = main(
            ["--url", server.url, "--key", API_KEY, "echo", "--sender", SENDER, "--recipient", RECIPIENT]
            + ["--payload", "{}"]
        )
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.err) == body
    assert captured.out == ""


def test_cli_refuses_a_payload_that_is_not_a_json_object(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--key", API_KEY, "echo", "--sender", SENDER, "--recipient", RECIPIENT, "--payload", "[1]"])
    assert caught.value.code == 2
    assert "JSON object" in capsys.readouterr().err


def test_cli_runs_as_a_module_without_django(tmp_path):
    with ScriptedServer(default=Answer(200, {"status": "delivered"})) as server:
        env = {"PATH": "/usr/bin:/bin", "BRIKK_URL": server.url, "BRIKK_API_KEY": API_KEY}
        done = subprocess.run(
            [sys.executable, "-m", "coordination.client", "--attempts", "1"]
            + ["echo", "--sender", SENDER, "--recipient", RECIPIENT, "--payload", '{"x":1}'],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        unreachable = subprocess.run(
            [sys.executable, "-m", "coordination.client", "--url", "http://127.0.0.1:9", "--attempts", "1"]
            + ["echo", "--sender", SENDER, "--recipient", RECIPIENT],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": "delivered"}
    assert len(server.received) == 1
    assert unreachable.returncode == 3
    assert "ConnectError" in unreachable.stderr
    assert API_KEY not in unreachable.stderr


# --- batch send -------------------------------------------------------------------------------


def _batch_answer(request_body: dict) -> dict:
    results = [
        {"index": index, "message_id": envelope["message_id"], "status": "delivered", "id": str(uuid.uuid4())}
        for index, envelope in enumerate(request_body["messages"])
    ]
    return {"results": results, "delivered": len(results), "replayed": 0, "refused": 0}


def test_send_batch_sends_a_hundred_per_signed_request_and_merges_the_answers():
    envelopes = [build_envelope(SENDER, RECIPIENT, {"n": n}) for n in range(150)]
    first = _batch_answer({"messages": envelopes[:100]})
    second = _batch_answer({"messages": envelopes[100:]})
    second["results"][0] = {**second["results"][0], "status": "refused", "error": {"code": "validation_error"}}
    second.update(delivered=49, refused=1)
    with ScriptedServer([Answer(200, first), Answer(200, second)]) as server, make_client(server.url) as client:
        merged = client.send_batch(envelopes)
    assert [len(json.loads(request.body)["messages"]) for request in server.received] == [100, 50]
    assert all(
        request.path == "/api/v1/coordination/batch" and signature_is_valid(request) for request in server.received
    )
    assert "Idempotency-Key" not in server.received[0].headers  # each envelope's message_id is its key
    assert json.loads(server.received[1].body)["messages"][0] == envelopes[100]
    assert [result["index"] for result in merged["results"]] == list(range(150))
    assert (merged["delivered"], merged["replayed"], merged["refused"]) == (149, 0, 1)
    assert merged["results"][100]["status"] == "refused"


def test_cli_batch_completes_json_lines_and_exits_1_when_one_is_refused(tmp_path, monkeypatch, capsys):
    lines = tmp_path / "envelopes.jsonl"
    lines.write_text(
        json.dumps({"recipient": RECIPIENT, "payload": {"n": 1}})
        + "\n\n"
        + json.dumps({"recipient": {"agent_id": RECIPIENT}, "payload": {}, "type": "event", "ttl_ms": 5000})
        + "\n"
    )
    answer = {
        "results": [
            {"index": 0, "message_id": "m", "status": "delivered", "id": "x"},
            {"index": 1, "message_id": "n", "status": "refused", "error": {"code": "forbidden"}},
        ],
        "delivered": 1,
        "replayed": 0,
        "refused": 1,
    }
    with ScriptedServer(default=Answer(200, answer)) as server:
        code = main(["--url", server.url, "--key", API_KEY, "--signing-secret", SECRET, "batch", str(lines)]
                    + ["--sender", SENDER])  # fmt: skip
    assert code == 1
    assert json.loads(capsys.readouterr().out) == answer
    [request] = server.received
    sent = json.loads(request.body)["messages"]
    assert [envelope["sender"] for envelope in sent] == [{"agent_id": SENDER}] * 2
    assert sent[1]["recipient"] == {"agent_id": RECIPIENT} and sent[1]["type"] == "event" and sent[1]["ttl_ms"] == 5000
    assert all(uuid.UUID(envelope["message_id"]).version == 7 and envelope["ts"].endswith("Z") for envelope in sent)
    assert signature_is_valid(request)


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json\n", "line 1 is not JSON"), ('{"payload": {}}\n', "recipient and payload"), ("\n", "no envelopes")],
)
def test_cli_batch_refuses_bad_lines(tmp_path, capsys, content, message):
    lines = tmp_path / "envelopes.jsonl"
    lines.write_text(content)
    with pytest.raises(SystemExit) as caught:
        main(["--key", API_KEY, "batch", str(lines), "--sender", SENDER])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
