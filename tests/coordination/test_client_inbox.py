"""The client's inbox calls against the real API, over HTTP through the full stack (pytest-django's live server),
every request signed with BRIKK_HMAC_REQUIRED: the README's two agents talking, receive/ack/nack/extend/stats,
dead letters and redrive, replies, and the CLI's inbox commands. (Under this WSGI live server a long poll holds a
server thread while it waits; tests/coordination/test_waiting_live.py runs the waiting endpoints on uvicorn.)"""

import contextlib
import io
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from coordination import inbox
from coordination.client import BrikkAPIError, BrikkClient, RetryPolicy, build_envelope, main
from coordination.models import MessageLog
from tests.support.inbox import queue_messages

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def signed_only(settings):
    settings.BRIKK_HMAC_REQUIRED = True


@pytest.fixture
def pair(org, owner, make_agent):
    return make_agent(org, name="agent-a", owner=owner), make_agent(org, name="agent-b", owner=owner)


def client_of(live_server, agent) -> BrikkClient:
    return BrikkClient(
        live_server.url,
        api_key=agent.key.plaintext,
        signing_secret=agent.signing_secret,
        retry=RetryPolicy(max_attempts=3, backoff_base=0.05),
    )


@pytest.fixture
def clients(live_server, pair):
    a, b = pair
    with client_of(live_server, a) as client_a, client_of(live_server, b) as client_b:
        yield client_a, client_b


def ids(pair):
    return str(pair[0].agent.pk), str(pair[1].agent.pk)


def readme_story() -> tuple[str, str]:
    """The Python of the README's "Two agents talking", and what it prints."""
    text = README.read_text().split("### Two agents talking", 1)[1]
    code, rest = text.split("```python\n", 1)[1].split("```", 1)
    printed = rest.split("prints\n\n```\n", 1)[1].split("```", 1)[0]
    return code, printed.strip()


def test_two_agents_talking_the_readmes_story(live_server, pair, monkeypatch):
    """The README's opening example, run as written against the server: A's command, B's result, A's reply."""
    code, expected = readme_story()
    assert code.count("wait_seconds=20") == 2
    a, b = pair
    for name, value in {
        "BRIKK_URL": live_server.url,
        "SENDER": str(a.agent.pk),
        "RECIPIENT": str(b.agent.pk),
        "BRIKK_API_KEY": a.key.plaintext,
        "BRIKK_SIGNING_SECRET": a.signing_secret,
        "RECIPIENT_API_KEY": b.key.plaintext,
        "RECIPIENT_SIGNING_SECRET": b.signing_secret,
    }.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - our own README

    assert out.getvalue().strip() == expected == "result True {'sum': 5}"
    command = MessageLog.objects.get(sender_id=a.agent.pk, type="command")
    reply = MessageLog.objects.get(sender_id=b.agent.pk, type="result")
    assert reply.recipient_id == a.agent.pk and reply.request_body["reply_to"] == str(command.message_id)
    assert command.delivery_state == reply.delivery_state == MessageLog.Delivery.ACKED
    assert command.delivery_count == reply.delivery_count == 1


def test_long_poll(clients):
    _, b = clients
    started = time.monotonic()
    assert b.receive(wait_seconds=1) == []
    assert time.monotonic() - started >= 0.9


def test_receive_extend_nack_ack_and_stats(clients, pair):
    a, b = clients
    a_id, b_id = ids(pair)
    sent = [a.echo(a_id, b_id, {"n": n}, type="command").body for n in range(3)]

    first = b.receive(max_messages=2, lease_seconds=60)
    assert [item["payload"] for item in first] == [{"n": 0}, {"n": 1}]
    for item, answer in zip(first, sent, strict=False):
        assert item["id"] == answer["id"] and item["message_id"] == answer["envelope"]["message_id"]
        assert item["delivery_count"] == 1 and item["receipt"].startswith(item["id"] + ":")
        assert item["sender"] == {"agent_id": a_id} and item["type"] == "command"
    assert b.inbox_stats()["counts"] == {"queued": 1, "leased": 2, "acked": 0, "dead": 0}
    assert a.inbox_stats()["counts"] == {"queued": 0, "leased": 0, "acked": 0, "dead": 0}

    before = MessageLog.objects.get(pk=first[0]["id"]).leased_until
    assert b.extend(first[0], lease_seconds=600) == [{"receipt": first[0]["receipt"], "result": "ok"}]
    assert MessageLog.objects.get(pk=first[0]["id"]).leased_until > before + timedelta(seconds=500)

    assert b.nack([first[1]["receipt"]]) == [{"receipt": first[1]["receipt"], "result": "ok"}]
    second = b.receive(lease_seconds=60)
    assert [(item["payload"]["n"], item["delivery_count"]) for item in second] == [(1, 2), (2, 1)]

    results = b.ack([first[0], *second])
    assert [item["result"] for item in results] == ["ok"] * 3
    assert b.ack(first[0]["receipt"]) == [{"receipt": first[0]["receipt"], "result": "stale"}]
    assert a.ack(second[0])[0]["result"] == "unknown"  # another agent's receipt
    assert b.ack(["not-a-receipt"])[0]["result"] == "unknown"
    assert b.ack([]) == []
    assert b.receive() == []
    assert b.inbox_stats() == {
        "counts": {"queued": 0, "leased": 0, "acked": 3, "dead": 0},
        "oldest_available_age_seconds": None,
    }


def test_a_nack_with_a_delay_keeps_the_message_back(clients, pair):
    a, b = clients
    a.echo(*ids(pair), {"later": True})
    [item] = b.receive()
    assert b.nack(item, delay_seconds=60)[0]["result"] == "ok"
    assert b.receive() == []
    assert b.inbox_stats()["counts"]["queued"] == 1


def test_more_receipts_than_one_call_takes_go_in_batches(clients, pair):
    _, b = clients
    queue_messages(pair[0].agent, pair[1].agent, 130)
    received = b.receive(max_messages=100) + b.receive(max_messages=100)
    assert len(received) == 130
    results = b.ack(received)
    assert [item["receipt"] for item in results] == [item["receipt"] for item in received]
    assert {item["result"] for item in results} == {"ok"}
    assert MessageLog.objects.filter(delivery_state=MessageLog.Delivery.ACKED).count() == 130


def test_validation_errors_of_the_inbox_raise_with_their_details(clients):
    _, b = clients
    with pytest.raises(BrikkAPIError) as caught:
        b.receive(max_messages=101)
    assert (caught.value.status_code, caught.value.code) == (422, "validation_error")
    assert "max_messages" in caught.value.details


def test_dead_letters_are_listed_and_an_owner_redrives_them(live_server, clients, pair, owner):
    _, b = clients
    now = timezone.now()
    dead = queue_messages(pair[0].agent, pair[1].agent, 2, ttl=timedelta(seconds=1), now=now)
    assert inbox.sweep(now=now + timedelta(seconds=2)).expired == 2

    page = b.dead_letters(page_size=1)
    assert len(page["results"]) == 1 and page["next"]
    listed = b.dead_letters(reason="expired")["results"]
    assert {item["id"] for item in listed} == {str(message.pk) for message in dead}
    assert listed[0]["dead_reason"] == "expired" and listed[0]["delivery"]["state"] == "dead"
    assert b.dead_letters(reason="max_deliveries")["results"] == []
    with pytest.raises(BrikkAPIError) as caught:
        b.redrive([str(dead[0].pk)])  # never an agent key
    assert caught.value.status_code == 403

    token = b.request(
        "POST",
        "/api/v1/auth/token/",
        body=json.dumps({"username": "owner", "password": "correct-horse-battery"}).encode(),
    ).body["access"]
    missing = str(uuid.uuid4())
    with BrikkClient(live_server.url, api_key=token, auth_header="bearer") as person:
        assert person.redrive([dead[0].pk, missing]) == {"redriven": [str(dead[0].pk)], "not_found": [missing]}
        assert len(person.dead_letters()["results"]) == 1  # a person sees the organization's
    [again] = b.receive()
    assert again["id"] == str(dead[0].pk) and again["delivery_count"] == 1


def test_a_reply_answers_the_sender_and_its_idempotency_key_sends_it_once(clients, pair):
    a, b = clients
    a_id, b_id = ids(pair)
    command = build_envelope(a_id, b_id, {"q": "ping"}, type="command")
    a.send(command)
    [received] = b.receive()

    key = f"reply-{received['message_id']}"
    first = b.reply(received, {"a": "pong"}, idempotency_key=key)
    again = b.reply(received, {"a": "pong"}, idempotency_key=key)  # the command delivered twice
    assert first.body["envelope"]["reply_to"] == command["message_id"]
    assert first.body["envelope"]["sender"] == {"agent_id": b_id}
    assert first.body["envelope"]["recipient"] == {"agent_id": a_id}
    assert again.replayed and again.body["id"] == first.body["id"]
    [answer] = a.receive()
    assert (answer["type"], answer["reply_to"], answer["payload"]) == ("result", command["message_id"], {"a": "pong"})
    error = b.reply(received, {"code": "nope"}, type="error").body["envelope"]
    assert error["type"] == "error" and error["reply_to"] == command["message_id"]


def test_cli_receive_ack_nack_and_stats(live_server, pair, monkeypatch, capsys):
    a, b = pair
    with client_of(live_server, a) as client_a:
        for n in range(3):
            client_a.echo(*ids(pair), {"n": n})
    monkeypatch.setenv("BRIKK_URL", live_server.url)
    monkeypatch.setenv("BRIKK_API_KEY", b.key.plaintext)
    monkeypatch.setenv("BRIKK_SIGNING_SECRET", b.signing_secret)

    def run(*argv):
        code = main(list(argv))
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return json.loads(captured.out)

    messages = run("receive", "--max", "2", "--lease", "60")["messages"]
    assert [item["payload"] for item in messages] == [{"n": 0}, {"n": 1}]
    receipts = [item["receipt"] for item in messages]
    assert run("ack", receipts[0]) == {"results": [{"receipt": receipts[0], "result": "ok"}]}
    assert run("nack", receipts[1], "--delay", "0")["results"][0]["result"] == "ok"
    assert run("stats")["counts"] == {"queued": 2, "leased": 0, "acked": 1, "dead": 0}
    taken = run("receive", "--ack")
    assert [item["payload"]["n"] for item in taken["messages"]] == [1, 2]
    assert [item["result"] for item in taken["acked"]] == ["ok", "ok"]
    assert run("receive") == {"messages": []}
    assert run("ack", receipts[0])["results"][0]["result"] == "stale"

    started = time.monotonic()
    assert main(["receive", "--wait", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"messages": []}
    assert time.monotonic() - started >= 0.9
