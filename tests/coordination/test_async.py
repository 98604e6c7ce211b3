"""Async echoes (Prefer: respond-async) on the embedded defaults, where Celery runs eagerly in-process.
The same flows against a real worker consuming from Redis are in test_live_worker_and_outages.py."""

import pytest

from agents import services as agent_services
from audit.models import AuditLog
from coordination.models import MessageLog
from coordination.tasks import backoff_seconds
from tests.support.coordination import envelope, post_echo

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


@pytest.fixture
def eager(settings):
    """In-process Celery as on the embedded defaults (forced on in the services pass too, where the
    same flows also run on a real worker: test_live_worker_and_outages.py)."""
    from brikk.celery import app

    settings.BRIKK_ECHO_FAULT_INJECTION = True
    settings.BRIKK_ASYNC_MAX_RETRIES = 3
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def _send_async(api_client, new_agent, peer, payload, captured):
    body = envelope(new_agent.agent, peer.agent, payload=payload)
    with captured(execute=True):
        response = post_echo(
            api_client, body, key=new_agent.key.plaintext, secret=new_agent.signing_secret, HTTP_PREFER="respond-async"
        )
    assert response.status_code == 202, response.content
    return body, response


def test_async_echo_is_accepted_then_delivered(api_client, new_agent, peer, eager, django_capture_on_commit_callbacks):
    body, response = _send_async(api_client, new_agent, peer, {"job": 1}, django_capture_on_commit_callbacks)
    accepted = response.json()
    assert accepted["status"] == "accepted" and accepted["responded_at"] is None
    assert response["Location"] == accepted["links"]["self"]
    assert response["Preference-Applied"] == "respond-async"

    status = api_client.get(response["Location"], HTTP_X_BRIKK_KEY=new_agent.key.plaintext).json()
    assert status["status"] == "delivered" and status["attempts"] == 1 and status["error"] == ""
    assert status["response_body"]["envelope"] == body
    assert status["response_body"]["status"] == "delivered"
    assert status["response_body"]["auth"]["auth_method"] == "hmac"
    actions = list(
        AuditLog.objects.filter(resource_id=accepted["id"])
        .order_by("created_at")
        .values_list("action", "correlation_id")
    )
    assert actions == [("echo.accepted", response["X-Request-ID"]), ("echo.delivered", response["X-Request-ID"])]


def test_async_fails_once_then_succeeds_on_retry(
    api_client, new_agent, peer, eager, django_capture_on_commit_callbacks
):
    _, response = _send_async(
        api_client, new_agent, peer, {"_brikk_fault": {"fail_attempts": 1}}, django_capture_on_commit_callbacks
    )
    message = MessageLog.objects.get(pk=response.json()["id"])
    assert message.status == "delivered" and message.attempts == 2
    assert AuditLog.objects.filter(action="echo.delivered", resource_id=str(message.pk)).count() == 1


def test_async_gives_up_as_failed_with_the_reason(
    api_client, new_agent, peer, eager, django_capture_on_commit_callbacks
):
    _, response = _send_async(
        api_client, new_agent, peer, {"_brikk_fault": {"fail_attempts": 99}}, django_capture_on_commit_callbacks
    )
    message = MessageLog.objects.get(pk=response.json()["id"])
    assert message.status == "failed" and message.attempts == 4  # first try + BRIKK_ASYNC_MAX_RETRIES
    assert message.error == "injected fault on attempt 4"
    failed = AuditLog.objects.get(action="echo.failed")
    assert (
        failed.details["reason"] == "injected fault on attempt 4" and failed.correlation_id == response["X-Request-ID"]
    )


def test_fault_directive_is_inert_unless_the_test_setting_is_on(
    api_client, new_agent, peer, eager, settings, django_capture_on_commit_callbacks
):
    settings.BRIKK_ECHO_FAULT_INJECTION = False
    _, response = _send_async(
        api_client, new_agent, peer, {"_brikk_fault": {"fail_attempts": 99}}, django_capture_on_commit_callbacks
    )
    assert MessageLog.objects.get(pk=response.json()["id"]).status == "delivered"


def test_async_default_setting_and_replay_of_the_202(
    api_client, new_agent, peer, eager, settings, django_capture_on_commit_callbacks
):
    settings.BRIKK_ASYNC_DEFAULT = True
    body = envelope(new_agent.agent, peer.agent)
    with django_capture_on_commit_callbacks(execute=True):
        first = post_echo(api_client, body, key=new_agent.key.plaintext)
    again = post_echo(api_client, body, key=new_agent.key.plaintext)
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true" and again["Location"] == first["Location"]
    assert MessageLog.objects.count() == 1


def test_backoff_is_exponential(settings):
    settings.BRIKK_ASYNC_RETRY_BASE_SECONDS = 2
    assert [backoff_seconds(n) for n in range(4)] == [2, 4, 8, 16]
    assert backoff_seconds(20) == 600


def test_requeue_command_recovers_messages_left_accepted(api_client, new_agent, peer, eager, settings, tmp_path):
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from coordination.models import IdempotencyRecord

    # Accepted, but its on_commit enqueue never ran (as if the broker had been down).
    response = post_echo(
        api_client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext, HTTP_PREFER="respond-async"
    )
    message = MessageLog.objects.get(pk=response.json()["id"])
    assert message.status == "accepted"
    MessageLog.objects.filter(pk=message.pk).update(updated_at=timezone.now() - timedelta(minutes=10))
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    call_command("requeue_messages", "--older-than", "60")
    message.refresh_from_db()
    assert message.status == "delivered" and message.attempts == 1
    # Expired idempotency records have one way out, archive then purge (retention), never a bare delete.
    assert IdempotencyRecord.objects.count() == 1
    call_command("purge_records", "--only", "idempotency", "--idempotency-days", "0", "--archive-dir", str(tmp_path))
    assert not IdempotencyRecord.objects.exists()
    assert list(tmp_path.glob("*/idempotency.jsonl.gz"))
