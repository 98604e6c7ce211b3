"""Issue 9, security point 6: every refusal is recorded, whatever it contained.

A refused echo whose body held a NUL used to leave no audit row and no message row on PostgreSQL (the
insert failed, the DatabaseError was swallowed, an ERROR line was all): an impersonation attempt could
hide itself. Now the guards refuse such input up front (and that refusal is audited), what reaches a row is
stored escaped with a flag saying so, and a database error while recording is answered, not swallowed.
"""

import json
import logging

import pytest
from django.db import DatabaseError, OperationalError
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditLog
from audit.services import record
from coordination.messages import Caller
from coordination.models import MessageLog
from coordination.refusals import ESCAPED_NOTE, keep_refused
from tests.support.coordination import ECHO_PATH, envelope, post_echo

pytestmark = pytest.mark.django_db

NUL = "\x00"


@pytest.fixture
def client(client):
    client.raise_request_exception = False
    return client


@pytest.fixture
def victim(org, owner, make_agent):
    return make_agent(org, name="victim", owner=owner)


@pytest.fixture
def peer(org, owner, make_agent):
    return make_agent(org, name="peer", owner=owner)


def test_an_impersonation_hidden_behind_a_nul_is_refused_and_recorded(client, new_agent, victim, peer):
    attempt = envelope(victim.agent, peer.agent, payload={"order": f"transfer{NUL}"})
    response = post_echo(
        client, attempt, key=new_agent.key.plaintext, secret=new_agent.signing_secret, HTTP_USER_AGENT="mallory/1.0"
    )
    assert response.status_code == 422, response.content
    assert response.json()["details"] == {"payload": {"order": ["NUL characters (\\u0000) are not accepted."]}}
    row = AuditLog.objects.get(action=AuditAction.REQUEST_REJECTED)
    assert row.outcome == "failure"
    assert row.correlation_id == response["X-Request-ID"]
    assert row.user_agent == "mallory/1.0"
    assert row.details == {
        "code": "validation_error",
        "status": 422,
        "method": "POST",
        "path": ECHO_PATH,
        "reason": "nul_character",
    }


def test_a_refusal_whose_headers_cannot_be_stored_is_recorded_escaped(client, new_agent, peer):
    response = post_echo(
        client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext, HTTP_USER_AGENT=f"evil{NUL}agent"
    )
    assert response.status_code == 422
    row = AuditLog.objects.get(action=AuditAction.REQUEST_REJECTED)
    assert row.user_agent == "evil\\u0000agent"
    assert row.details["escaped"] is True
    assert row.details["reason"] == "control_character"


def test_a_kept_refusal_stores_what_it_cannot_store_as_sent_escaped_and_says_so(org, new_agent, peer):
    """coordination/refusals.py: the rejected message row and its audit row, whatever the body held."""
    caller = Caller(str(org.pk), "api_key", agent_id=str(new_agent.agent.pk))
    data = envelope(new_agent.agent, peer.agent, payload={f"k{NUL}": ["\ud800", float("inf"), "fine"]})
    body = {"code": "forbidden", "message": f"no{NUL}", "request_id": "r", "details": {"sender": [f"x{NUL}"]}}
    message = keep_refused(
        caller,
        data,
        status=403,
        body=body,
        action=AuditAction.ECHO_REJECTED,
        idempotency_key=f"key{NUL}",
        received_at=timezone.now(),
    )
    stored = MessageLog.objects.get(pk=message.pk)
    assert stored.status == MessageLog.Status.REJECTED
    assert stored.request_body["payload"] == {"k\\u0000": ["\\ud800", "inf", "fine"]}
    assert stored.request_body["sender"] == data["sender"]
    assert stored.response_body["details"] == {"sender": ["x\\u0000"]}
    assert stored.idempotency_key == "key\\u0000"
    assert stored.error == "forbidden: no\\u0000" + ESCAPED_NOTE
    assert stored.sender_id == new_agent.agent.pk
    audit = AuditLog.objects.get(action=AuditAction.ECHO_REJECTED)
    assert audit.resource_id == str(message.pk)
    assert audit.details["escaped"] is True
    assert audit.outcome == "denied"


def test_record_escapes_and_flags_what_the_database_cannot_store():
    row = record(
        AuditAction.REQUEST_REJECTED,
        outcome="failure",
        actor_kind="anonymous",
        actor_id="",
        resource_kind="request",
        resource_id=f"id{NUL}",
        details={"note": f"a{NUL}b", "nested": {"s": "\udfff"}, "n": float("nan"), "password": "dropped"},
    )
    row.refresh_from_db()
    assert row.resource_id == "id\\u0000"
    assert row.details == {"note": "a\\u0000b", "nested": {"s": "\\udfff"}, "n": "nan", "escaped": True}
    plain = record(AuditAction.REQUEST_REJECTED, actor_kind="anonymous", actor_id="", details={"note": "fine"})
    assert "escaped" not in plain.details


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [(DatabaseError("disk full"), 500, "internal_error"), (OperationalError("gone"), 503, "service_unavailable")],
)
def test_a_database_error_while_recording_a_refusal_is_not_swallowed(client, monkeypatch, caplog, error, status, code):
    def failing_record(*args, **kwargs):
        raise error

    monkeypatch.setattr("audit.refusals.record", failing_record)
    with caplog.at_level(logging.ERROR, logger="brikk.api"):
        response = client.get("/api/v1/coordination/messages")  # a 401, audited as auth.failed
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    failures = [entry for entry in caplog.records if "could not record the refusal" in entry.getMessage()]
    assert failures and failures[0].exc_info is not None  # logged with its traceback
    if status == 503:
        assert response["Retry-After"] == "5"


@pytest.mark.pg_redis
def test_postgresql_keeps_escaped_rows(org, new_agent, peer):
    """The point on PostgreSQL: jsonb and text refuse NUL; the escaped rows are stored and read back."""
    caller = Caller(str(org.pk), "api_key", agent_id=str(new_agent.agent.pk))
    data = envelope(new_agent.agent, peer.agent, payload={"x": NUL})
    keep_refused(
        caller,
        data,
        status=422,
        body={"code": "validation_error", "message": "m", "request_id": "r", "details": None},
        action=AuditAction.ECHO_REJECTED,
        idempotency_key=NUL,
        received_at=timezone.now(),
    )
    stored = MessageLog.objects.get()
    assert json.dumps(stored.request_body["payload"]) == json.dumps({"x": "\\u0000"})
    assert AuditLog.objects.get(action=AuditAction.ECHO_REJECTED).details["escaped"] is True
