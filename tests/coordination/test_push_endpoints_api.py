"""The push endpoints API (/api/v1/agents/{agent_id}/endpoints/...), resend and a message's attempts: roles,
organization scoping (404), the secret shown only when issued, and the error shapes (409, 422)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Membership
from audit.models import AuditLog
from coordination import push_endpoints
from coordination.models import DeliveryAttempt, MessageLog, PushEndpoint
from tests.support.inbox import queue_messages

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://8.8.8.8/hook"
ENDPOINT_FIELDS = {
    "id",
    "agent_id",
    "url",
    "description",
    "enabled",
    "disabled_reason",
    "disabled_at",
    "last_success_at",
    "failing_since",
    "previous_secret_expires_at",
    "created_at",
    "updated_at",
}


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.BRIKK_WEBHOOK_ALLOW_HTTP = False
    settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = []


@pytest.fixture
def agent(new_agent):
    return new_agent.agent


@pytest.fixture
def as_owner(api_client, owner):
    api_client.force_authenticate(owner)
    return api_client


def endpoints_url(agent):
    return f"/api/v1/agents/{agent.pk}/endpoints/"


def endpoint_url(endpoint, action=""):
    return f"/api/v1/agents/{endpoint.agent_id}/endpoints/{endpoint.pk}" + (f"/{action}" if action else "")


@pytest.fixture
def endpoint(agent, owner):
    return push_endpoints.create(agent, PUBLIC_URL, "hook", actor_id=owner.pk).endpoint


def test_an_owner_registers_an_endpoint_and_sees_its_secret_once(as_owner, agent):
    response = as_owner.post(endpoints_url(agent), {"url": PUBLIC_URL, "description": "billing"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS | {"secret"}
    assert body["secret"].startswith("whsec_")
    assert (body["url"], body["description"], body["enabled"], body["agent_id"]) == (
        PUBLIC_URL,
        "billing",
        True,
        str(agent.pk),
    )
    assert response["Cache-Control"] == "no-store"
    listed = as_owner.get(endpoints_url(agent)).json()
    assert [item["id"] for item in listed] == [body["id"]]
    assert "secret" not in listed[0] and body["secret"] not in str(listed)
    one = as_owner.get(f"{endpoints_url(agent)}{body['id']}").json()
    assert set(one) == ENDPOINT_FIELDS


def test_a_refused_url_is_a_422_naming_the_address_class(as_owner, agent):
    for url, words in (
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::ffff:127.0.0.1]/hook", "IPv4-mapped"),
        ("http://8.8.8.8/hook", "https://"),
    ):
        response = as_owner.post(endpoints_url(agent), {"url": url}, format="json")
        assert response.status_code == 422, url
        body = response.json()
        assert body["code"] == "validation_error"
        assert words in body["details"]["url"][0]
    assert as_owner.post(endpoints_url(agent), {"url": PUBLIC_URL, "secret": "x"}, format="json").json()["details"] == {
        "secret": ["Unknown field."]
    }
    assert not PushEndpoint.objects.exists()


def test_a_second_enabled_endpoint_is_a_409_conflict(as_owner, agent, endpoint):
    response = as_owner.post(endpoints_url(agent), {"url": "https://1.1.1.1/hook"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    staged = as_owner.post(endpoints_url(agent), {"url": "https://1.1.1.1/hook", "enabled": False}, format="json")
    assert staged.status_code == 201 and staged.json()["enabled"] is False
    second = PushEndpoint.objects.get(pk=staged.json()["id"])
    assert as_owner.post(endpoint_url(second, "enable")).json()["code"] == "conflict"
    disabled = as_owner.post(endpoint_url(endpoint, "disable"))
    assert (disabled.status_code, disabled.json()["enabled"], disabled.json()["disabled_reason"]) == (
        200,
        False,
        "manual",
    )
    enabled = as_owner.post(endpoint_url(second, "enable"))
    assert (enabled.status_code, enabled.json()["enabled"], enabled.json()["disabled_reason"]) == (200, True, "")


def test_update_rotate_recover_and_delete(as_owner, agent, endpoint, owner, make_agent, org):
    changed = as_owner.patch(endpoint_url(endpoint), {"description": "renamed"}, format="json")
    assert (changed.status_code, changed.json()["description"]) == (200, "renamed")
    refused = as_owner.patch(endpoint_url(endpoint), {"url": "https://10.0.0.1/"}, format="json")
    assert refused.status_code == 422 and "private" in refused.json()["details"]["url"][0]

    rotated = as_owner.post(endpoint_url(endpoint, "rotate-secret"))
    assert rotated.status_code == 200 and rotated.json()["secret"].startswith("whsec_")
    assert rotated["Cache-Control"] == "no-store"
    assert rotated.json()["previous_secret_expires_at"] is not None
    endpoint.refresh_from_db()
    assert push_endpoints.signing_secrets(endpoint)[0] == rotated.json()["secret"]

    sender = make_agent(org, name="sender", owner=owner).agent
    (dead,) = queue_messages(sender, agent, 1)
    MessageLog.objects.filter(pk=dead.pk).update(
        delivery_state="dead", dead_reason="push_exhausted", dead_at=timezone.now()
    )
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    recovered = as_owner.post(endpoint_url(endpoint, "recover"), {"since": since}, format="json")
    assert recovered.json() == {"recovered": 1}
    assert as_owner.post(endpoint_url(endpoint, "recover"), {"since": "yesterday"}, format="json").status_code == 422

    assert as_owner.delete(endpoint_url(endpoint)).status_code == 204
    assert as_owner.get(endpoint_url(endpoint)).status_code == 404
    assert set(AuditLog.objects.filter(resource_kind="push_endpoint").values_list("action", flat=True)) == {
        "push_endpoint.created",
        "push_endpoint.updated",
        "push_endpoint.secret_rotated",
        "push_endpoint.recovered",
        "push_endpoint.deleted",
    }


def test_members_read_and_never_change(api_client, member, agent, endpoint):
    api_client.force_authenticate(member)
    assert api_client.get(endpoints_url(agent)).status_code == 200
    assert api_client.get(endpoint_url(endpoint)).status_code == 200
    for response in (
        api_client.post(endpoints_url(agent), {"url": PUBLIC_URL}, format="json"),
        api_client.patch(endpoint_url(endpoint), {"description": "x"}, format="json"),
        api_client.delete(endpoint_url(endpoint)),
        api_client.post(endpoint_url(endpoint, "rotate-secret")),
        api_client.post(endpoint_url(endpoint, "disable")),
        api_client.post(endpoint_url(endpoint, "enable")),
        api_client.post(endpoint_url(endpoint, "recover"), {"since": "2026-01-01T00:00:00Z"}, format="json"),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.description) == (True, "hook")


def test_agent_keys_get_403_even_to_read(api_client, new_agent, endpoint):
    key = {"HTTP_X_BRIKK_KEY": new_agent.key.plaintext}
    assert api_client.get(endpoints_url(new_agent.agent), **key).status_code == 403
    response = api_client.post(endpoint_url(endpoint, "rotate-secret"), **key)
    assert response.status_code == 403
    assert "agent key" in response.json()["message"]


def test_another_organizations_agent_and_endpoint_are_404(api_client, make_org, make_user, make_agent, endpoint):
    other = make_org("Other")
    stranger = make_user("stranger", other, Membership.Role.OWNER)
    theirs = make_agent(other, name="theirs", owner=stranger).agent
    their_endpoint = push_endpoints.create(theirs, PUBLIC_URL, actor_id=stranger.pk).endpoint
    api_client.force_authenticate(stranger)
    # Our endpoint, under our agent or under theirs: never found.
    assert api_client.get(endpoints_url(endpoint.agent)).status_code == 404
    assert api_client.get(endpoint_url(endpoint)).status_code == 404
    assert api_client.post(endpoint_url(endpoint, "disable")).status_code == 404
    assert api_client.get(f"{endpoints_url(theirs)}{endpoint.pk}").status_code == 404
    assert api_client.delete(f"{endpoints_url(theirs)}{endpoint.pk}").status_code == 404
    assert api_client.get(endpoint_url(their_endpoint)).status_code == 200
    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_resend_and_attempts(api_client, as_owner, owner, member, agent, endpoint, make_agent, org):
    sender = make_agent(org, name="sender", owner=owner).agent
    (message,) = queue_messages(sender, agent, 1)
    now = timezone.now()
    MessageLog.objects.filter(pk=message.pk).update(delivery_state="acked", acked_at=now)
    DeliveryAttempt.objects.create(
        message=message,
        kind="push",
        started_at=now - timedelta(seconds=5),
        endpoint=endpoint,
        status_code=500,
        latency_ms=12.5,
        error="HTTP 500",
        response_excerpt="<h1>oops</h1>",
        outcome="failed",
    )
    DeliveryAttempt.objects.create(message=message, kind="push", started_at=now, endpoint=endpoint, status_code=204)
    attempts = as_owner.get(f"/api/v1/coordination/messages/{message.pk}/attempts")
    assert attempts.status_code == 200
    first, second = attempts.json()
    assert (first["status_code"], second["status_code"]) == (500, 204)  # newest last
    assert first["endpoint_id"] == str(endpoint.pk)
    assert (first["latency_ms"], first["error"], first["response_excerpt"]) == (12.5, "HTTP 500", "<h1>oops</h1>")

    resent = as_owner.post(f"/api/v1/coordination/messages/{message.pk}/resend")
    assert resent.status_code == 200
    assert resent.json()["previous_state"] == "acked"
    assert resent.json()["delivery"]["state"] == "queued"
    assert AuditLog.objects.filter(action="message.resent", resource_id=str(message.pk)).count() == 1

    MessageLog.objects.filter(pk=message.pk).update(delivery_state="leased", leased_until=now + timedelta(minutes=1))
    conflict = as_owner.post(f"/api/v1/coordination/messages/{message.pk}/resend")
    assert (conflict.status_code, conflict.json()["code"]) == (409, "conflict")

    api_client.force_authenticate(member)
    assert api_client.post(f"/api/v1/coordination/messages/{message.pk}/resend").status_code == 403
    assert api_client.get(f"/api/v1/coordination/messages/{message.pk}/attempts").status_code == 200


def test_another_organizations_message_is_404_for_resend_and_attempts(api_client, make_org, make_user, agent, owner):
    (message,) = queue_messages(agent, agent, 1)
    other = make_org("Other")
    api_client.force_authenticate(make_user("stranger", other, Membership.Role.OWNER))
    assert api_client.post(f"/api/v1/coordination/messages/{message.pk}/resend").status_code == 404
    assert api_client.get(f"/api/v1/coordination/messages/{message.pk}/attempts").status_code == 404
    message.refresh_from_db()
    assert message.delivery_state == "queued"
