"""The benchmark scripts' own Python: the pre-signed requests wrk replays (bench/speed_benchmark.py), the parser of
wrk's result line, the row check, and the profile script end to end. No wrk is needed here (`make bench` installs it);
how fast anything is stays the scripts' job."""

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents import signing
from bench import speed_benchmark as bench
from coordination.client import COORDINATION_PATH

REPO = Path(__file__).resolve().parents[2]
SENDER = bench.Agent(id=str(uuid.uuid4()), api_key="brk_test_0123456789", signing_secret="s3cret-for-the-test")
RECIPIENT_ID = str(uuid.uuid4())


def signed_correctly(raw: bytes, secret: str) -> bool:
    method, path, headers, body = bench.parse_raw_request(raw)
    signatures = signing.parse_signature_header(headers["X-Brikk-Signature"])
    return signing.matches(secret, signatures, method, path, headers["X-Brikk-Timestamp"], body)


def test_the_echo_request_file_replays_signed_requests_each_with_its_own_message_id(tmp_path):
    path = tmp_path / "echo.bin"
    bench.write_request_file(path, bench.echo_requests(SENDER, RECIPIENT_ID, 40, 8141))
    requests = bench.read_request_file(path)

    assert len(requests) == 40
    message_ids = set()
    for raw in requests:
        method, target, headers, body = bench.parse_raw_request(raw)
        envelope = json.loads(body)
        assert (method, target) == ("POST", COORDINATION_PATH)
        assert headers["Host"] == "127.0.0.1:8141"
        assert int(headers["Content-Length"]) == len(body)
        assert headers["X-Brikk-Key"] == SENDER.api_key
        assert headers["Idempotency-Key"] == envelope["message_id"]
        assert envelope["sender"] == {"agent_id": SENDER.id} and envelope["recipient"] == {"agent_id": RECIPIENT_ID}
        assert envelope["ttl_ms"] == bench.MESSAGE_TTL_MS  # waits in the inbox for the drain
        assert signed_correctly(raw, SENDER.signing_secret)
        assert not signed_correctly(raw, "another secret")
        signed_at = signing.parse_timestamp(headers["X-Brikk-Timestamp"])
        assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 60  # signed just now, inside the window
        message_ids.add(envelope["message_id"])
    assert len(message_ids) == 40


def test_a_changed_body_no_longer_verifies():
    raw = bench.echo_requests(SENDER, RECIPIENT_ID, 1, 8141)[0]
    tampered = raw.replace(b'"bench":"echo"', b'"bench":"ECHO"')
    assert signed_correctly(raw, SENDER.signing_secret)
    assert not signed_correctly(tampered, SENDER.signing_secret)


def test_batch_requests_carry_unique_envelopes_and_sign_the_batch_path(tmp_path):
    path = tmp_path / "batch.bin"
    bench.write_request_file(path, bench.batch_requests(SENDER, RECIPIENT_ID, 5, 7, 8141))
    message_ids = []
    for raw in bench.read_request_file(path):
        method, target, headers, body = bench.parse_raw_request(raw)
        assert (method, target) == ("POST", bench.BATCH_PATH)
        messages = json.loads(body)["messages"]
        assert len(messages) == 7
        assert {message["sender"]["agent_id"] for message in messages} == {SENDER.id}
        assert signed_correctly(raw, SENDER.signing_secret)
        message_ids += [message["message_id"] for message in messages]
    assert len(message_ids) == len(set(message_ids)) == 35


def test_a_request_file_with_trailing_or_foreign_bytes_is_refused(tmp_path):
    path = tmp_path / "requests.bin"
    bench.write_request_file(path, [b"GET / HTTP/1.1\r\n\r\n"])
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ValueError, match="after its last request"):
        bench.read_request_file(path)
    path.write_bytes(b"something else 1\n")
    with pytest.raises(ValueError, match="not a request file"):
        bench.read_request_file(path)


WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:8140/api/v1/coordination
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    41.23ms   12.02ms 130.11ms   71.02%
    Req/Sec   390.11     40.72   470.00     68.33%
  2331 requests in 3.00s, 2.01MB read
Requests/sec:    776.20
Transfer/sec:    685.21KB
BENCH_RESULT {"duration_us":3003101,"requests":2331,"bytes":2107623,"connect_errors":0,"read_errors":0,\
"write_errors":0,"status_errors":0,"timeouts":0,"p50_us":40112,"p90_us":57001,"p99_us":88020,"max_us":130110,\
"issued":2333,"answered":2331,"failed":1,"delivered":2330,"seconds":2.912,"error_sample":"422 {\\"code\\":\\"x\\"}"}
"""


def test_the_wrk_result_line_is_parsed_and_every_kind_of_error_counts():
    run = bench.WrkRun(bench.parse_wrk_output(WRK_OUTPUT))
    assert run.requests == 2331
    assert run.seconds == 2.912  # the replay's own span, not wrk's -d
    assert run.result["p99_us"] == 88020
    assert run.result["error_sample"] == '422 {"code":"x"}'
    assert run.errors == 1 + 2  # one wrong answer, two sent and never answered

    plain = bench.WrkRun(
        {
            "duration_us": 2_000_000,
            "requests": 5000,
            "connect_errors": 0,
            "read_errors": 1,
            "write_errors": 0,
            "status_errors": 3,
            "timeouts": 2,
        }
    )
    assert (plain.requests, plain.seconds, plain.errors) == (5000, 2.0, 6)


def test_a_wrk_run_without_a_result_line_is_an_error():
    with pytest.raises(ValueError, match="no BENCH_RESULT"):
        bench.parse_wrk_output("unable to connect to 127.0.0.1:8140 Connection refused\n")


def test_the_row_check_names_every_count_that_differs_from_what_was_answered():
    rows = {
        "senders": {
            "e": {
                "messages_delivered": 10,
                "messages_not_delivered": 0,
                "idempotency_records": 10,
                "audit_actions": {"echo.delivered": 9},
            },
            "b": {
                "messages_delivered": 300,
                "messages_not_delivered": 1,
                "idempotency_records": 300,
                "audit_actions": {},
            },
        },
        "acked": 309,
        "waiting": 1,
    }
    expected = {"e": ("echo", 10, "echo.delivered"), "b": ("batch", 300, None)}
    assert bench.check_rows(rows, expected, 309) == [
        "echo: echo.delivered = 9, answered 10",
        "batch: messages_not_delivered = 1, answered 0",
    ]
    rows["senders"]["e"]["audit_actions"]["echo.delivered"] = 10
    rows["senders"]["b"]["messages_not_delivered"] = 0
    assert bench.check_rows(rows, expected, 309) == []
    assert bench.check_rows(rows, expected, 310) == ["drain: 309 messages acked in the database, 310 acks answered ok"]


@pytest.mark.pg_redis
def test_profile_script_times_the_echo_and_its_steps(tmp_path):
    stats = tmp_path / "echo.pstats"
    done = subprocess.run(
        [sys.executable, "bench/echo_profile.py", "--requests", "5", "--warmup", "2", "--cprofile", str(stats)],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "signed echo" in done.stdout
    steps = dict(
        (line.split()[1], float(line.split()[0]))
        for line in done.stdout.splitlines()
        if line.startswith("  ") and line.split()[0].replace(".", "").isdigit() and len(line.split()) == 2
    )
    # Every default step ran on each echo (a step that never ran would show 0.000).
    assert steps["coordination.echo.submit_echo"] > 0
    assert steps["coordination.echo_statement.deliver"] > 0  # the echo's one statement (PostgreSQL)
    assert steps["audit.services.announce"] > 0
    assert stats.stat().st_size > 0
    assert "brk_" not in done.stdout


def test_a_phase_served_mostly_by_one_worker_is_noted():
    lopsided = {"processes_ms": {"master 10": 0.0, "worker 11": 1.32, "worker 12": 0.01}}
    assert bench.imbalance(lopsided).startswith("unbalanced: one worker did 99%")
    assert bench.imbalance({"processes_ms": {"master 10": 0.0, "worker 11": 0.4, "worker 12": 0.55}}) == ""
    assert bench.imbalance({"processes_ms": {"worker 11": 2.0}}) == ""  # one worker: nothing to compare
