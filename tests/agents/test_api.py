"""The agents API: organization scoping, roles, lifecycle endpoints, JWT, error shape."""

import pytest

from agents import keys
from agents.models import Agent, APIKey, Membership
from audit.models import AuditLog

pytestmark = pytest.mark.django_db

AGENTS_URL = "/api/v1/agents/"


def detail_url(agent):
    return f"{AGENTS_URL}{agent.pk}/"


@pytest.fixture
def other_org_agent(make_org, make_user, make_agent):
    other = make_org("Other")
    return make_agent(other, name="theirs", owner=make_user("stranger", other, Membership.Role.OWNER))


def test_anonymous_gets_401_in_the_error_shape(api_client):
    response = api_client.get(AGENTS_URL, HTTP_X_REQUEST_ID="anon-request-1")
    assert response.status_code == 401
    assert response.json() == {
        "code": "unauthorized",
        "message": "Authentication credentials were not provided.",
        "request_id": "anon-request-1",
        "details": None,
    }
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert AuditLog.objects.filter(action="auth.failed", correlation_id="anon-request-1").exists()


def test_list_shows_only_own_organization(api_client, owner, new_agent, other_org_agent):
    api_client.force_authenticate(owner)
    names = [agent["name"] for agent in api_client.get(AGENTS_URL).json()["results"]]
    assert names == ["alpha"]


def test_user_of_org_a_gets_404_for_org_b_agent(api_client, owner, other_org_agent):
    api_client.force_authenticate(owner)
    url = detail_url(other_org_agent.agent)
    assert api_client.get(url).status_code == 404
    assert api_client.patch(url, {"name": "mine"}, format="json").status_code == 404
    assert api_client.delete(url).status_code == 404
    assert api_client.post(f"{url}rotate-key/", {}, format="json").status_code == 404
    other_org_agent.agent.refresh_from_db()
    assert other_org_agent.agent.name == "theirs"
    assert other_org_agent.agent.status == Agent.Status.ACTIVE


def test_agent_key_sees_only_its_organization(api_client, new_agent, other_org_agent):
    headers = {"HTTP_X_API_KEY": new_agent.key.plaintext}
    assert api_client.get(detail_url(other_org_agent.agent), **headers).status_code == 404
    assert api_client.get(detail_url(new_agent.agent), **headers).status_code == 200


def test_agent_key_cannot_write(api_client, new_agent):
    response = api_client.post(AGENTS_URL, {"name": "x"}, format="json", HTTP_X_API_KEY=new_agent.key.plaintext)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_member_reads_but_may_not_write(api_client, member, new_agent):
    api_client.force_authenticate(member)
    assert api_client.get(AGENTS_URL).status_code == 200
    response = api_client.post(AGENTS_URL, {"name": "nope"}, format="json", HTTP_X_REQUEST_ID="member-write-01")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert not Agent.objects.filter(name="nope").exists()
    denied = AuditLog.objects.get(action="permission.denied", correlation_id="member-write-01")
    assert denied.actor_id == str(member.pk)
    assert api_client.post(f"{detail_url(new_agent.agent)}revoke-key/", {}, format="json").status_code == 403
    assert APIKey.objects.filter(agent=new_agent.agent, revoked_at__isnull=True).count() == 1


@pytest.mark.parametrize("role", [Membership.Role.ADMIN, Membership.Role.OWNER])
def test_admin_and_owner_create_agents(api_client, org, make_user, role):
    user = make_user(f"user-{role}", org, role)
    api_client.force_authenticate(user)
    response = api_client.post(
        AGENTS_URL, {"name": "worker", "description": "d", "metadata": {"team": "x"}}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["api_key"].startswith("brk_")
    assert body["signing_secret"].startswith("bss_")
    assert response["Cache-Control"] == "no-store"
    agent = Agent.objects.get(pk=body["agent"]["id"])
    assert agent.organization == org and agent.owner == user and agent.metadata == {"team": "x"}
    created = AuditLog.objects.get(action="agent.created", resource_id=str(agent.pk))
    assert created.actor_id == str(user.pk)
    assert body["api_key"] not in str(created.details)


def test_invalid_agent_input_is_422_with_field_details_and_changes_nothing(api_client, owner, new_agent):
    api_client.force_authenticate(owner)
    response = api_client.post(AGENTS_URL, {"name": "alpha", "metadata": [1], "status": "bogus"}, format="json")
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert set(body["details"]) == {"name", "metadata", "status"}
    assert Agent.objects.count() == 1


def test_malformed_json_is_400_protocol_error(api_client, owner):
    api_client.force_authenticate(owner)
    response = api_client.post(AGENTS_URL, data=b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "protocol_error"


def test_update_and_status_change(api_client, owner, new_agent):
    api_client.force_authenticate(owner)
    response = api_client.patch(detail_url(new_agent.agent), {"status": "idle", "description": "new"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "idle"
    new_agent.agent.refresh_from_db()
    assert new_agent.agent.description == "new"
    deleted = api_client.patch(detail_url(new_agent.agent), {"status": "deleted"}, format="json")
    assert deleted.status_code == 422


def test_soft_delete_keeps_the_row_and_hides_it(api_client, owner, new_agent):
    api_client.force_authenticate(owner)
    assert api_client.delete(detail_url(new_agent.agent)).status_code == 204
    agent = Agent.objects.get(pk=new_agent.agent.pk)
    assert agent.status == Agent.Status.DELETED and agent.deleted_at is not None
    assert not agent.api_keys.filter(revoked_at__isnull=True).exists()
    assert api_client.get(detail_url(agent)).status_code == 404
    assert AuditLog.objects.filter(action="agent.deleted", resource_id=str(agent.pk)).exists()
    # The name is free again for a new agent.
    assert api_client.post(AGENTS_URL, {"name": "alpha"}, format="json").status_code == 201


def test_rotate_key_endpoint(api_client, owner, new_agent):
    api_client.force_authenticate(owner)
    response = api_client.post(f"{detail_url(new_agent.agent)}rotate-key/", {"grace_seconds": 0}, format="json")
    assert response.status_code == 201
    new_key = response.json()["api_key"]
    assert keys.verify(new_key).agent_id == str(new_agent.agent.pk)
    with pytest.raises(keys.KeyRejected):
        keys.verify(new_agent.key.plaintext)
    assert AuditLog.objects.filter(action="key.rotated", resource_id=str(new_agent.agent.pk)).exists()


def test_revoke_key_endpoint_by_prefix(api_client, owner, new_agent):
    api_client.force_authenticate(owner)
    prefix = new_agent.key.api_key.prefix
    response = api_client.post(f"{detail_url(new_agent.agent)}revoke-key/", {"prefix": prefix}, format="json")
    assert response.status_code == 200
    assert [k["state"] for k in response.json()["keys"]] == ["revoked"]
    row = AuditLog.objects.get(action="key.revoked")
    assert row.details["key_prefixes"] == [prefix]


def test_jwt_obtain_and_use(api_client, owner, new_agent):
    tokens = api_client.post(
        "/api/v1/auth/token/", {"username": "owner", "password": "correct-horse-battery"}, format="json"
    )
    assert tokens.status_code == 200
    access = tokens.json()["access"]
    response = api_client.get(AGENTS_URL, HTTP_AUTHORIZATION=f"Bearer {access}")
    assert response.status_code == 200
    assert response.json()["results"][0]["name"] == "alpha"
    refreshed = api_client.post("/api/v1/auth/token/refresh/", {"refresh": tokens.json()["refresh"]}, format="json")
    assert refreshed.status_code == 200 and refreshed.json()["access"]


def test_bad_jwt_and_bad_password_are_401(api_client, owner):
    response = api_client.get(AGENTS_URL, HTTP_AUTHORIZATION="Bearer not.a.jwt")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert AuditLog.objects.filter(action="auth.failed", details__reason="invalid_token").exists()
    bad = api_client.post("/api/v1/auth/token/", {"username": "owner", "password": "wrong"}, format="json")
    assert bad.status_code == 401
    assert bad.json()["code"] == "unauthorized"


def test_user_with_two_orgs_picks_one_by_header(api_client, owner, new_agent, make_org, make_agent):
    second = make_org("Second")
    Membership.objects.create(user=owner, organization=second, role=Membership.Role.MEMBER)
    make_agent(second, name="beta")
    api_client.force_authenticate(owner)
    default = api_client.get(AGENTS_URL).json()["results"]
    assert [a["name"] for a in default] == ["alpha"]
    chosen = api_client.get(AGENTS_URL, HTTP_X_BRIKK_ORGANIZATION=str(second.pk)).json()["results"]
    assert [a["name"] for a in chosen] == ["beta"]
    # Member in the second organization: read-only there.
    response = api_client.post(AGENTS_URL, {"name": "x"}, format="json", HTTP_X_BRIKK_ORGANIZATION=str(second.pk))
    assert response.status_code == 403


def test_header_naming_a_foreign_org_is_refused(api_client, owner, other_org_agent):
    api_client.force_authenticate(owner)
    response = api_client.get(AGENTS_URL, HTTP_X_BRIKK_ORGANIZATION=str(other_org_agent.agent.organization_id))
    assert response.status_code == 403


def test_user_without_organization_is_forbidden(api_client, make_user):
    api_client.force_authenticate(make_user("loner"))
    assert api_client.get(AGENTS_URL).status_code == 403


def test_unknown_api_path_is_json_404(api_client):
    response = api_client.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
