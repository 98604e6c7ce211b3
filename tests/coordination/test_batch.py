"""The batch send, POST /api/v1/coordination/batch: per-envelope results, one transaction, the echo's rules."""

import pytest

from agents import services as agent_services
from audit.models import AuditLog
from coordination.models import IdempotencyRecord, MessageLog
from tests.support.coordination import envelope, post_echo

pytestmark = pytest.mark.django_db

BATCH_PATH = "/api/v1/coordination/batch"


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def post_batch(client, agent, envelopes, **headers):
    return post_echo(
        client,
        {"messages": envelopes},
        key=agent.key.plaintext,
        secret=agent.signing_secret,
        path=BATCH_PATH,
        **headers,
    )


def test_smoke(api_client, new_agent, peer):
    bodies = [envelope(new_agent.agent, peer.agent, payload={"n": n}) for n in range(3)]
    response = post_batch(api_client, new_agent, bodies)
    assert response.status_code == 200, response.content
    print(response.json())
    assert MessageLog.objects.filter(status="delivered").count() == 3
    assert IdempotencyRecord.objects.count() == 3
    assert AuditLog.objects.filter(action="echo.delivered").count() == 3
