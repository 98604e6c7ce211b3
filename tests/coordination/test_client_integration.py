"""The client against the real coordination endpoint, over HTTP through the full stack (pytest-django's
live server): signed round trips, replays that are answered once, typed errors, async polling, the CLI."""

import json

import pytest

from coordination.client import BrikkAPIError, BrikkClient, RetryPolicy, build_envelope, main, message_id_of
from coordination.models import MessageLog
from tests.support.live import CeleryWorker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pair(org, owner, make_agent):
    return make_agent(org, name="sender", owner=owner), make_agent(org, name="recipient", owner=owner)


@pytest.fixture
def brikk(live_server, pair):
    sender, _ = pair
    with BrikkClient(
        live_server.url,
        api_key=sender.key.plaintext,
        signing_secret=sender.signing_secret,
        retry=RetryPolicy(max_attempts=3, backoff_base=0.05),
    ) as client:
        yield client


def test_signed_echo_round_trip(brikk, pair, settings):
    settings.BRIKK_HMAC_REQUIRED = True
    sender, recipient = pair
    envelope = build_envelope(str(sender.agent.pk), str(recipient.agent.pk), {"hello": "world"}, nonce="n-1")

    reply = brikk.send(envelope)

    assert reply.status_code == 200
    assert reply.body["status"] == "delivered"
    assert reply.body["envelope"]["message_id"] == envelope["message_id"]
    assert reply.body["envelope"]["payload"] == {"hello": "world"}
    assert reply.body["auth"]["agent_id"] == str(sender.agent.pk)
    assert reply.body["correlation_id"] == reply.request_id
    assert not reply.replayed
    row = MessageLog.objects.get(pk=reply.body["id"])
    assert str(row.message_id) == envelope["message_id"]
    assert row.idempotency_key == envelope["message_id"]
    assert row.status == MessageLog.Status.DELIVERED


def test_signed_reads_with_a_query_pass_when_hmac_is_required(brikk, pair, settings):
    """Issue 9: every agent request is signed, reads and their query strings included."""
    settings.BRIKK_HMAC_REQUIRED = True
    sender, recipient = pair
    sent = brikk.echo(str(sender.agent.pk), str(recipient.agent.pk), {"n": 1})

    listed = brikk.list_messages(status="delivered", page_size=5)
    assert [message["id"] for message in listed["results"]] == [sent.body["id"]]
    assert brikk.list_messages(status="failed")["results"] == []
    assert brikk.get_message(sent.body["id"])["status"] == "delivered"
    agents = brikk.request("GET", "/api/v1/agents/", params={"page_size": 1})
    assert len(agents.body["results"]) == 1


def test_resending_the_same_request_is_answered_from_the_store_once(brikk, pair):
    sender, recipient = pair
    envelope = build_envelope(str(sender.agent.pk), str(recipient.agent.pk), {"n": 1})

    first = brikk.send(envelope, idempotency_key="client-op-1")
    again = brikk.send(envelope, idempotency_key="client-op-1")  # what a retry after a lost answer does

    assert again.replayed
    assert again.body == first.body
    assert MessageLog.objects.filter(message_id=envelope["message_id"]).count() == 1


def test_same_key_with_another_body_raises_the_servers_error(brikk, pair):
    sender, recipient = pair
    brikk.echo(str(sender.agent.pk), str(recipient.agent.pk), {"n": 1}, idempotency_key="client-op-2")
    with pytest.raises(BrikkAPIError) as caught:
        brikk.echo(str(sender.agent.pk), str(recipient.agent.pk), {"n": 2}, idempotency_key="client-op-2")
    error = caught.value
    assert (error.status_code, error.code) == (422, "idempotency_key_reused")
    assert error.request_id == error.headers["X-Request-ID"]
    assert error.attempts == 1


def test_a_wrong_signing_secret_is_refused_with_invalid_signature(live_server, pair):
    sender, recipient = pair
    with (
        BrikkClient(live_server.url, api_key=sender.key.plaintext, signing_secret="not-the-secret") as client,
        pytest.raises(BrikkAPIError) as caught,
    ):
        client.echo(str(sender.agent.pk), str(recipient.agent.pk), {})
    assert (caught.value.status_code, caught.value.code) == (401, "invalid_signature")
    assert caught.value.request_id


def test_validation_errors_name_the_bad_fields(brikk, pair):
    sender, _ = pair
    with pytest.raises(BrikkAPIError) as caught:
        brikk.echo(str(sender.agent.pk), "00000000-0000-7000-8000-000000000000", {}, ttl_ms=1_209_600_001)
    error = caught.value
    assert (error.status_code, error.code) == (422, "validation_error")
    assert "ttl_ms" in error.details


@pytest.fixture
def async_processing(settings):
    """Embedded defaults run Celery eagerly in the server; with Redis a real worker process consumes the queue."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield None
        return
    worker = CeleryWorker().start()
    settings.BRIKK_ASYNC_QUEUE = worker.queue
    yield worker
    worker.stop()


def test_async_echo_is_accepted_then_polled_to_delivered(brikk, pair, async_processing):
    sender, recipient = pair
    accepted = brikk.echo(str(sender.agent.pk), str(recipient.agent.pk), {"later": True}, respond_async=True)
    assert accepted.status_code == 202
    assert accepted.body["status"] == "accepted"

    final = brikk.wait_for_message(message_id_of(accepted), timeout=30, interval=0.1)
    assert final["status"] == "delivered"
    assert final["id"] == accepted.body["id"]


def test_cli_echo_against_the_server(live_server, pair, monkeypatch, capsys):
    sender, recipient = pair
    monkeypatch.setenv("BRIKK_API_KEY", sender.key.plaintext)
    monkeypatch.setenv("BRIKK_SIGNING_SECRET", sender.signing_secret)
    code = main(
        ["--url", live_server.url, "--bearer", "echo", "--sender", str(sender.agent.pk)]
        + ["--recipient", str(recipient.agent.pk), "--payload", '{"hello":"world"}']
    )
    out = capsys.readouterr().out
    assert code == 0
    reply = json.loads(out)
    assert reply["status"] == "delivered"
    assert reply["envelope"]["payload"] == {"hello": "world"}
    assert sender.key.plaintext not in out
    assert sender.signing_secret not in out


def test_the_readmes_idempotency_example_is_answered_once(live_server, pair, monkeypatch, capsys):
    """The README's exact command, run twice: a new ts and message_id each time, one operation."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("# Your own idempotency key", 1)[1].split("\n\n", 1)[0]
    lines = [line for line in block.splitlines()[1:] if not line.lstrip().startswith("#")]
    command = " ".join(line.rstrip("\\").strip() for line in lines)
    sender, recipient = pair
    command = command.replace('"$SENDER"', str(sender.agent.pk)).replace('"$RECIPIENT"', str(recipient.agent.pk))
    argv = shlex.split(command)
    assert argv[:3] == [".venv/bin/python", "-m", "coordination.client"] and "--idempotency-key" in argv
    monkeypatch.setenv("BRIKK_URL", live_server.url)
    monkeypatch.setenv("BRIKK_API_KEY", sender.key.plaintext)
    monkeypatch.setenv("BRIKK_SIGNING_SECRET", sender.signing_secret)

    answers = []
    for _ in range(2):
        assert main(argv[3:]) == 0, capsys.readouterr().err
        answers.append(json.loads(capsys.readouterr().out))
    assert answers[0] == answers[1]
    assert MessageLog.objects.count() == 1
    assert re.fullmatch(r"order-\d+", MessageLog.objects.get().idempotency_key)


def test_send_batch_against_the_server(brikk, pair, settings):
    settings.BRIKK_HMAC_REQUIRED = True
    sender, recipient = pair
    envelopes = [build_envelope(str(sender.agent.pk), str(recipient.agent.pk), {"n": n}) for n in range(120)]
    envelopes[5] = {**envelopes[5], "ttl_ms": 0}
    answer = brikk.send_batch(envelopes)
    assert (answer["delivered"], answer["replayed"], answer["refused"]) == (119, 0, 1)
    assert answer["results"][5]["error"]["code"] == "validation_error"
    assert MessageLog.objects.filter(status="delivered").count() == 119
    # Sent again (a retry of the whole list): nothing is delivered twice.
    again = brikk.send_batch(envelopes)
    assert (again["delivered"], again["replayed"], again["refused"]) == (0, 119, 1)
    assert [result.get("id") for result in again["results"]] == [result.get("id") for result in answer["results"]]
    assert MessageLog.objects.filter(status="delivered").count() == 119


def test_cli_batch_against_the_server(live_server, pair, monkeypatch, capsys, tmp_path):
    sender, recipient = pair
    monkeypatch.setenv("BRIKK_API_KEY", sender.key.plaintext)
    monkeypatch.setenv("BRIKK_SIGNING_SECRET", sender.signing_secret)
    lines = tmp_path / "envelopes.jsonl"
    lines.write_text(
        "".join(json.dumps({"recipient": str(recipient.agent.pk), "payload": {"n": n}}) + "\n" for n in range(3))
    )
    code = main(["--url", live_server.url, "batch", str(lines), "--sender", str(sender.agent.pk)])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["delivered"] == 3
    assert MessageLog.objects.filter(status="delivered", sender=sender.agent).count() == 3
