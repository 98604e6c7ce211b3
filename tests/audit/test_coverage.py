"""Every kind of interaction lands in the audit trail with its correlation id; no secret reaches a
log line or an audit row."""

import json
import logging

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from agents import signing
from agents.models import Organization
from audit.models import AuditLog
from brikk.lib.logging import JsonFormatter, RequestContextFilter

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def staff(make_user, org):
    from agents.models import Membership

    user = make_user("staffer", org, Membership.Role.OWNER)
    user.is_staff = user.is_superuser = True
    user.save()
    return user


def jwt_for(client, username, password="correct-horse-battery"):
    response = client.post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["access"]


def row(correlation_id, action):
    rows = list(AuditLog.objects.filter(correlation_id=correlation_id, action=action))
    assert len(rows) == 1, (correlation_id, action, list(AuditLog.objects.values_list("correlation_id", "action")))
    return rows[0]


def test_each_kind_of_event_has_its_row(client, api_client, staff, member, new_agent, make_org):
    def rid(name):
        return {"HTTP_X_REQUEST_ID": f"cov-{name}-0001"}

    # Logins, failed logins, logouts: Django's auth signals.
    assert (
        client.post("/admin/login/", {"username": "staffer", "password": "nope"}, **rid("badlogin")).status_code == 200
    )
    failed = row("cov-badlogin-0001", "user.login_failed")
    assert failed.outcome == "failure" and failed.details == {"username": "staffer", "reason": "invalid_credentials"}
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "staffer", "password": "correct-horse-battery"}, **rid("login")
    )
    assert response.status_code == 302
    login = row("cov-login-0001", "user.login")
    assert (login.actor_kind, login.actor_id, login.outcome) == ("user", str(staff.pk), "success")

    # Admin changes: LogEntry → admin.change.
    target = make_org("Renamed Later")
    change_url = reverse("admin:agents_organization_change", args=[target.pk])
    form = {
        "name": "Renamed",
        "slug": target.slug,
        "max_deliveries": "10",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    assert client.post(change_url, form, **rid("admin")).status_code == 302
    change = row("cov-admin-0001", "admin.change")
    assert change.resource_kind == "organization" and change.resource_id == str(target.pk)
    assert change.details["operation"] == "change" and "Name" in change.details["change"]
    assert LogEntry.objects.count() == 1
    delete_url = reverse("admin:agents_organization_delete", args=[target.pk])
    assert client.post(delete_url, {"post": "yes"}, **rid("admindel")).status_code == 302
    assert row("cov-admindel-0001", "admin.change").details["operation"] == "deletion"
    assert not Organization.objects.filter(pk=target.pk).exists()
    # Deleting an organization leaves its audit rows exactly as recorded (no cascade, no SET NULL).
    assert AuditLog.objects.get(organization_id=target.pk).action == "organization.created"

    assert client.post("/admin/logout/", {"next": "/admin/"}, **rid("logout")).status_code == 302
    assert row("cov-logout-0001", "user.logout").actor_id == str(staff.pk)

    # Agent and key lifecycle through the API (JWT).
    token = jwt_for(api_client, "staffer")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    created = api_client.post("/api/v1/agents/", {"name": "cov"}, format="json", **auth, **rid("create"))
    assert created.status_code == 201
    agent_id = created.json()["agent"]["id"]
    for name, method, path, body in [
        ("update", "patch", f"/api/v1/agents/{agent_id}/", {"description": "x"}),
        ("rotate", "post", f"/api/v1/agents/{agent_id}/rotate-key/", {}),
        ("revoke", "post", f"/api/v1/agents/{agent_id}/revoke-key/", {}),
        ("delete", "delete", f"/api/v1/agents/{agent_id}/", None),
    ]:
        response = getattr(api_client, method)(path, body, format="json", **auth, **rid(name))
        assert response.status_code < 300, (name, response.content)
    expected = {
        "create": "agent.created",
        "update": "agent.updated",
        "rotate": "key.rotated",
        "revoke": "key.revoked",
        "delete": "agent.deleted",
    }
    for name, action in expected.items():
        event = row(f"cov-{name}-0001", action)
        assert (event.actor_kind, event.actor_id) == ("user", str(staff.pk))
        assert event.organization_id == staff.memberships.get().organization_id
        assert event.resource_id == agent_id

    # Authentication failures: API key and JWT.
    prefix = new_agent.key.plaintext.split(".")[0]
    assert api_client.get("/api/v1/agents/", HTTP_X_API_KEY=f"{prefix}.{'x' * 43}", **rid("badkey")).status_code == 401
    assert row("cov-badkey-0001", "auth.failed").details["reason"] == "unknown"
    assert api_client.get("/api/v1/agents/", HTTP_AUTHORIZATION="Bearer not.a.jwt", **rid("badjwt")).status_code == 401
    assert row("cov-badjwt-0001", "auth.failed").details["reason"] == "invalid_token"

    # Permission denial: a member may read but not write.
    member_token = jwt_for(api_client, "member")
    denied = api_client.post(
        "/api/v1/agents/", {"name": "nope"}, format="json", HTTP_AUTHORIZATION=f"Bearer {member_token}", **rid("denied")
    )
    assert denied.status_code == 403
    assert row("cov-denied-0001", "permission.denied").outcome == "denied"


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.addFilter(RequestContextFilter())
        self.setFormatter(JsonFormatter())
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def captured_logs():
    handler = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_logs_carry_context_and_no_secret_reaches_a_log_line_or_audit_row(
    api_client, owner, new_agent, make_agent, captured_logs
):
    key = new_agent.key.plaintext
    path = "/api/v1/agents/"
    timestamp = signing.now_timestamp()
    signature = signing.sign(new_agent.signing_secret, "GET", path, timestamp, b"")
    signed = {
        "HTTP_X_BRIKK_KEY": key,
        "HTTP_X_BRIKK_TIMESTAMP": timestamp,
        "HTTP_X_BRIKK_SIGNATURE": signing.signature_header(signature),
    }
    assert api_client.get(path, **signed, HTTP_X_REQUEST_ID="logs-ok-000001").status_code == 200
    # A signed echo through the whole coordination pipeline, to a second agent.
    from tests.support.coordination import encode, envelope, post_echo, signed_headers

    peer = make_agent(new_agent.agent.organization, name="peer").agent
    body = envelope(new_agent.agent, peer)
    echo_signature = signed_headers(key, new_agent.signing_secret, encode(body))["HTTP_X_BRIKK_SIGNATURE"]
    echoed = post_echo(api_client, body, key=key, secret=new_agent.signing_secret, HTTP_X_REQUEST_ID="logs-echo-0001")
    assert echoed.status_code == 200
    assert json.loads(captured_logs[-1])["request_id"] == "logs-echo-0001"

    token = jwt_for(api_client, "owner")
    rotated = api_client.post(
        f"/api/v1/agents/{new_agent.agent.pk}/rotate-key/",
        {"grace_seconds": 0},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_X_REQUEST_ID="logs-rotate-0001",
    )
    assert rotated.status_code == 201
    new_key = rotated.json()["api_key"]
    # The old key is now refused: an auth.failed line and row, signature headers still attached.
    refused = api_client.get(path, **signed, HTTP_X_REQUEST_ID="logs-refused-01")
    assert refused.status_code == 401

    lines = [json.loads(line) for line in captured_logs]
    audit_lines = {line["action"]: line for line in lines if line.get("event") == "audit"}
    rotate_line = audit_lines["key.rotated"]
    assert rotate_line["request_id"] == "logs-rotate-0001"
    assert rotate_line["organization_id"] == str(owner.memberships.get().organization_id)
    assert (rotate_line["actor_kind"], rotate_line["actor_id"]) == ("user", str(owner.pk))
    assert rotate_line["outcome"] == "success"
    echo_line = audit_lines["echo.delivered"]
    assert echo_line["request_id"] == "logs-echo-0001" and echo_line["outcome"] == "success"
    assert echo_line["organization_id"] == str(new_agent.agent.organization_id)
    assert (echo_line["actor_kind"], echo_line["actor_id"]) == ("agent", str(new_agent.agent.pk))
    failed_line = audit_lines["auth.failed"]
    assert failed_line["request_id"] == "logs-refused-01" and failed_line["outcome"] == "failure"

    secrets = {
        "old key": key,
        "old key secret": key.split(".", 1)[1],
        "new key": new_key,
        "new key secret": new_key.split(".", 1)[1],
        "signing secret": new_agent.signing_secret,
        "signature": signature,
        "echo signature": echo_signature.removeprefix("v1="),
        "jwt": token,
    }
    rows = [json.dumps(list(AuditLog.objects.values()), default=str)]
    for text in captured_logs + rows:
        for name, secret in secrets.items():
            assert secret not in text, f"{name} leaked into: {text[:200]}"
    assert captured_logs, "nothing was logged"


def test_each_coordination_event_has_its_row(api_client, org, new_agent, make_agent, settings):
    from tests.support.coordination import envelope, post_echo

    peer = make_agent(org, name="peer").agent
    key, secret = new_agent.key.plaintext, new_agent.signing_secret

    def rid(name):
        return f"cov-{name}-0001"

    def echo(name, body, **kwargs):
        return post_echo(api_client, body, HTTP_X_REQUEST_ID=rid(name), **kwargs)

    first = envelope(new_agent.agent, peer)
    assert echo("delivered", first, key=key, secret=secret).status_code == 200
    delivered = row(rid("delivered"), "echo.delivered")
    assert delivered.resource_kind == "message" and delivered.actor_id == str(new_agent.agent.pk)
    assert delivered.organization_id == org.pk

    assert echo("replayed", first, key=key, secret=secret).status_code == 200
    assert row(rid("replayed"), "idempotency.replayed").resource_id == delivered.resource_id

    changed = {**first, "payload": {"other": True}}
    assert echo("conflict", changed, key=key, secret=secret).status_code == 422
    row(rid("conflict"), "idempotency.conflict")

    accepted = echo("accepted", envelope(new_agent.agent, peer), key=key, secret=secret, HTTP_PREFER="respond-async")
    assert accepted.status_code == 202
    row(rid("accepted"), "echo.accepted")

    unknown_recipient = envelope(new_agent.agent, peer, recipient={"agent_id": "00000000-0000-4000-8000-000000000000"})
    assert echo("rejected", unknown_recipient, key=key, secret=secret).status_code >= 400
    assert row(rid("rejected"), "echo.rejected").outcome in ("failure", "denied")

    assert echo("badsig", envelope(new_agent.agent, peer), key=key, secret="not-the-secret").status_code == 401
    assert row(rid("badsig"), "auth.failed").details["reason"] == "invalid_signature"

    stale = post_echo(
        api_client,
        envelope(new_agent.agent, peer),
        HTTP_X_BRIKK_KEY=key,
        HTTP_X_BRIKK_TIMESTAMP="1000000000",
        HTTP_X_BRIKK_SIGNATURE="v1=" + "0" * 64,
        HTTP_X_REQUEST_ID=rid("stale"),
    )
    assert stale.status_code == 401
    assert row(rid("stale"), "auth.failed").details["reason"] == "timestamp_error"

    assert echo("guard", envelope(new_agent.agent, peer), key=key, content_type="text/plain").status_code == 415
    row(rid("guard"), "request.rejected")

    org.rate_limit_agent_per_minute = 1
    org.save()
    settings.BRIKK_RATE_LIMIT_ENABLED = True
    statuses = [
        echo(f"limit{n}", envelope(new_agent.agent, peer), key=key, secret=secret).status_code for n in range(3)
    ]
    assert 429 in statuses
    refused = AuditLog.objects.filter(action="rate_limit.refused", correlation_id__startswith="cov-limit")
    assert refused.count() == statuses.count(429)
