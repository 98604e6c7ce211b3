"""The echo is one durable transaction: a caller cannot wrap it in its own, where a later rollback of the
caller's work would silently take an answered echo (its message, idempotency record and audit row) with it."""

import pytest
from django.db import transaction
from django.utils import timezone

from coordination import echo
from coordination.messages import Caller
from coordination.models import MessageLog
from tests.support.coordination import envelope


@pytest.mark.django_db(transaction=True)
def test_submit_echo_refuses_to_run_inside_another_transaction(new_agent, org, owner):
    from agents import services

    peer = services.create_agent(org, name="beta", owner=owner)
    caller = Caller(str(org.pk), "api_key", agent_id=str(new_agent.agent.pk))
    data = envelope(new_agent.agent, peer.agent)
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        echo.submit_echo(caller, data, idempotency_header=None, respond_async=False, received_at=timezone.now())
    assert not MessageLog.objects.exists()

    outcome = echo.submit_echo(caller, data, idempotency_header=None, respond_async=False, received_at=timezone.now())
    assert outcome.status == 200 and MessageLog.objects.get().status == "delivered"
