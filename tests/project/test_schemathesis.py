"""Schemathesis against the whole API, in-process through Django's WSGI handler: generated requests (valid
and invalid) must get no server error, only documented statuses, the documented content type and bodies
matching the documented schemas.

Run once as an agent (X-Brikk-Key, BRIKK_HMAC_REQUIRED off) and once as an organization owner (JWT), plus
a stateful run that follows the schema's links (a created agent to its operations, an echo to its message).
Bounded in examples per operation so that both runs together take well under a minute.
"""

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from uuid6 import uuid7

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 10
ECHO_PATH = "/api/v1/coordination"
# Credentials come from the fixtures: generated values for these documented headers would only ever be
# refused (401), and the point is to reach the layers behind authentication.
CREDENTIAL_HEADERS = {"x-brikk-key", "x-api-key", "authorization", "x-brikk-signature", "x-brikk-timestamp"}

BOUNDED = hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,  # nothing written into the work tree
    derandomize=True,  # the same examples on every run: a failure is reproducible, the run time steady
    suppress_health_check=list(HealthCheck),
)

# Loaded once, at collection: generating the schema touches no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def wsgi_app(settings):
    settings.BRIKK_HMAC_REQUIRED = False
    settings.BRIKK_STREAM_MAX_SECONDS = 1  # an inbox stream that opens ends, so its response can be checked
    # As Django's test client does: the test's transaction must outlive each request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def team(org, owner, make_agent):
    return {
        "owner": owner,
        "sender": make_agent(org, name="sender", owner=owner),
        "receiver": make_agent(org, name="receiver", owner=owner),
    }


@pytest.fixture
def as_agent(team):
    return {"X-Brikk-Key": team["sender"].key.plaintext}


@pytest.fixture
def as_owner(team):
    return {"Authorization": f"Bearer {RefreshToken.for_user(team['owner']).access_token}"}


def prepare(case, team, credentials) -> None:
    """Our credentials instead of generated ones; an envelope sent as the calling agent to a real
    recipient (when the generated body has the shape), so that echoes get past authorization."""
    headers = {name: value for name, value in (case.headers or {}).items() if name.lower() not in CREDENTIAL_HEADERS}
    case.headers = {**headers, **credentials}
    body = case.body
    if case.operation.path == ECHO_PATH and isinstance(body, dict):
        for field, agent in (("sender", team["sender"]), ("recipient", team["receiver"])):
            if isinstance(body.get(field), dict):
                body[field]["agent_id"] = str(agent.agent.pk)
                if isinstance(body[field].get("org_id"), str):
                    body[field]["org_id"] = str(agent.agent.organization_id)
        # Rules the schema cannot express (a fresh UUID v7, a UTC time with Z inside the window); a value of
        # another type is left as generated, to be refused.
        if isinstance(body.get("message_id"), str):
            body["message_id"] = str(uuid7())
        if isinstance(body.get("ts"), str):
            body["ts"] = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    key = case.headers.get("Idempotency-Key")
    if isinstance(key, str) and len(key) < 200:
        # Hypothesis favours the same small keys ("0"): unique ones let bodies reach storage, while an
        # invalid generated key (a control character, only spaces) stays invalid.
        case.headers["Idempotency-Key"] = f"{key}-{uuid7()}"


@schema.parametrize()
@BOUNDED
def test_api_as_an_agent(case, wsgi_app, team, as_agent):
    prepare(case, team, as_agent)
    case.call_and_validate(checks=CHECKS)


@schema.parametrize()
@BOUNDED
def test_api_as_an_organization_owner(case, wsgi_app, team, as_owner):
    prepare(case, team, as_owner)
    case.call_and_validate(checks=CHECKS)


class Workflow(schema.as_state_machine()):
    """Sequences along the links: create an agent, then read, change, rotate, revoke or delete it; echo,
    then read the message."""

    team: dict = {}
    credentials: dict = {}

    def setup(self):
        # Each scenario starts from the same database and cache, so Hypothesis can replay it exactly.
        self.savepoint = transaction.savepoint()

    def teardown(self):
        transaction.savepoint_rollback(self.savepoint)
        cache.clear()

    def before_call(self, case):
        prepare(case, self.team, self.credentials)

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)


def test_stateful_workflows_as_an_organization_owner(wsgi_app, team, as_owner):
    Workflow.team, Workflow.credentials = team, as_owner
    Workflow.run(
        settings=hypothesis_settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
