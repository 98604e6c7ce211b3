"""Login, logout, throttling of failed logins, organization switching."""

import pytest
from django.test import Client
from django.urls import reverse

from agents.models import Membership
from agents.scoping import SESSION_KEY
from audit.models import AuditLog

PASSWORD = "correct-horse-battery"
LOGIN = reverse("dashboard:login")


def post_login(client, username, password, next_url="", ip="10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password, "next": next_url}, REMOTE_ADDR=ip)


def test_anonymous_visitor_is_sent_to_login_and_back(owner):
    client = Client()
    response = client.get("/agents/")
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=/agents/"

    page = client.get(response["Location"])
    assert page.status_code == 200
    assert 'name="next" value="/agents/"' in page.content.decode()

    response = post_login(client, "owner", PASSWORD, next_url="/agents/")
    assert response.status_code == 302
    assert response["Location"] == "/agents/"
    assert client.get("/agents/").status_code == 200


def test_login_refuses_an_offsite_next(owner):
    response = post_login(Client(), "owner", PASSWORD, next_url="https://evil.example/")
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_login_page_is_csrf_protected(owner):
    client = Client(enforce_csrf_checks=True)
    response = post_login(client, "owner", PASSWORD)
    assert response.status_code == 403


def test_failed_login_keeps_the_username_and_says_why(owner):
    response = post_login(Client(), "owner", "wrong")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'value="owner"' in body
    assert "Please enter a correct username and password" in body


def test_dashboard_logins_failed_logins_and_logouts_are_audited(owner):
    client = Client()
    client.post(
        LOGIN, {"username": "owner", "password": "wrong"}, REMOTE_ADDR="10.0.0.7", HTTP_X_REQUEST_ID="dash-bad-login-1"
    )
    failed = AuditLog.objects.get(action="user.login_failed", correlation_id="dash-bad-login-1")
    assert (failed.outcome, failed.client_ip) == ("failure", "10.0.0.7")
    assert "wrong" not in str(failed.details)

    post_login(client, "owner", PASSWORD)
    login = AuditLog.objects.get(action="user.login")
    assert (login.actor_kind, login.actor_id, login.outcome) == ("user", str(owner.pk), "success")

    client.post(reverse("dashboard:logout"), HTTP_X_REQUEST_ID="dash-logout-0001")
    logout = AuditLog.objects.get(action="user.logout", correlation_id="dash-logout-0001")
    assert logout.actor_id == str(owner.pk)


def test_failed_logins_are_throttled_per_username_at_an_address(owner, settings):
    settings.BRIKK_LOGIN_MAX_FAILURES = 3
    client = Client()
    for _ in range(3):
        assert post_login(client, "owner", "wrong").status_code == 200
    response = post_login(client, "owner", PASSWORD)  # even the right password waits
    assert response.status_code == 429
    assert response["Retry-After"] == str(settings.BRIKK_LOGIN_FAILURE_WINDOW_SECONDS)
    assert "Too many failed logins" in response.content.decode()
    assert "Try again in 5 minutes." in response.content.decode()
    assert "_auth_user_id" not in client.session
    row = AuditLog.objects.get(action="auth.login_throttled")
    assert row.outcome == AuditLog.Outcome.DENIED
    assert row.client_ip == "10.0.0.1"
    assert AuditLog.objects.filter(action="user.login_failed").count() == 3  # the refusal is not a 4th failure
    # The same user from another address is not affected.
    assert post_login(Client(), "owner", PASSWORD, ip="10.0.0.2").status_code == 302


def test_an_intruder_never_locks_another_user_out_at_the_same_address(owner, settings):
    """Five failures for `intruder` once locked the real user out of the dashboard from the same address."""
    for _ in range(settings.BRIKK_LOGIN_MAX_FAILURES + 2):
        post_login(Client(), "intruder", "guess")
    assert post_login(Client(), "intruder", "guess").status_code == 429
    assert post_login(Client(), "owner", PASSWORD).status_code == 302


def test_password_spraying_from_one_address_is_throttled(owner, settings):
    settings.BRIKK_LOGIN_MAX_FAILURES_PER_ADDRESS = 4
    for attempt in range(4):
        assert post_login(Client(), f"nobody{attempt}", "wrong").status_code == 200
    assert post_login(Client(), "owner", PASSWORD).status_code == 429
    assert post_login(Client(), "owner", PASSWORD, ip="10.0.0.9").status_code == 302


def test_failed_logins_are_throttled_per_username_across_addresses(owner, settings):
    settings.BRIKK_LOGIN_MAX_FAILURES_PER_USERNAME = 3
    for attempt in range(3):
        post_login(Client(), "Owner", "wrong", ip=f"10.0.1.{attempt}")
    assert post_login(Client(), "owner", PASSWORD, ip="10.0.2.1").status_code == 429
    assert post_login(Client(), "member-x", "wrong", ip="10.0.2.1").status_code == 200


def test_the_admin_login_follows_the_same_policy(owner, settings):
    settings.BRIKK_LOGIN_MAX_FAILURES = 2
    owner.is_staff = True
    owner.save()
    client = Client()
    for _ in range(2):
        page = client.post("/admin/login/", {"username": "owner", "password": "wrong"}, REMOTE_ADDR="10.0.3.1")
        assert page.status_code == 200
    refused = client.post("/admin/login/", {"username": "owner", "password": PASSWORD}, REMOTE_ADDR="10.0.3.1")
    assert refused.status_code == 429 and refused["Retry-After"] == str(settings.BRIKK_LOGIN_FAILURE_WINDOW_SECONDS)
    assert AuditLog.objects.filter(action="auth.login_throttled", details__path="/admin/login/").count() == 1


def test_the_token_endpoint_follows_the_same_policy(owner, settings):
    from rest_framework.test import APIClient

    settings.BRIKK_LOGIN_MAX_FAILURES = 2
    api = APIClient(REMOTE_ADDR="10.0.4.1")
    for _ in range(2):
        assert api.post("/api/v1/auth/token/", {"username": "owner", "password": "x"}, format="json").status_code == 401
    refused = api.post("/api/v1/auth/token/", {"username": "owner", "password": PASSWORD}, format="json")
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert refused["Retry-After"] == str(settings.BRIKK_LOGIN_FAILURE_WINDOW_SECONDS)
    row = AuditLog.objects.get(action="auth.login_throttled")
    assert (row.outcome, row.client_ip, row.details["path"]) == ("denied", "10.0.4.1", "/api/v1/auth/token/")
    # The dashboard door counts the same failures (one policy): the pair is refused there too.
    assert post_login(Client(), "owner", PASSWORD, ip="10.0.4.1").status_code == 429
    assert (
        APIClient(REMOTE_ADDR="10.0.4.2")
        .post("/api/v1/auth/token/", {"username": "owner", "password": PASSWORD}, format="json")
        .status_code
        == 200
    )


def test_successful_logins_do_not_count(owner, settings):
    settings.BRIKK_LOGIN_MAX_FAILURES = 2
    for _ in range(5):
        assert post_login(Client(), "owner", PASSWORD).status_code == 302


def test_logout_needs_a_post(owner_client):
    assert owner_client.get(reverse("dashboard:logout")).status_code == 405
    assert owner_client.get("/").status_code == 200
    response = owner_client.post(reverse("dashboard:logout"))
    assert response.status_code == 302
    assert response["Location"] == LOGIN
    assert owner_client.get("/").status_code == 302


def test_user_without_an_organization_gets_a_clear_page(make_user, login):
    client = login(make_user("loner"))
    response = client.get("/")
    assert response.status_code == 403
    assert "No organization yet" in response.content.decode()


@pytest.fixture
def two_org_user(org, make_org, make_user, make_agent):
    user = make_user("multi", org, Membership.Role.MEMBER)
    second = make_org("Initech")
    Membership.objects.create(user=user, organization=second, role=Membership.Role.ADMIN)
    make_agent(org, name="acme-agent")
    make_agent(second, name="initech-agent")
    return user, second


def test_organization_switcher_scopes_the_dashboard_and_the_api(two_org_user, login):
    user, second = two_org_user
    client = login(user)
    page = client.get("/agents/").content.decode()
    assert 'id="org-select"' in page
    assert "acme-agent" in page and "initech-agent" not in page

    response = client.post(reverse("dashboard:switch-organization"), {"organization": second.pk, "next": "/agents/"})
    assert response.status_code == 302 and response["Location"] == "/agents/"
    assert client.session[SESSION_KEY] == str(second.pk)
    page = client.get("/agents/").content.decode()
    assert "initech-agent" in page and "acme-agent" not in page
    assert "Switched to Initech." in page
    # The API's session authentication reads the same session key.
    names = [agent["name"] for agent in client.get("/api/v1/agents/").json()["results"]]
    assert names == ["initech-agent"]


def test_switching_to_a_foreign_organization_is_refused(two_org_user, login, other_org):
    user, _ = two_org_user
    client = login(user)
    response = client.post(reverse("dashboard:switch-organization"), {"organization": other_org.pk}, follow=True)
    assert SESSION_KEY not in client.session
    assert "You are not a member of that organization." in response.content.decode()


def test_switch_ignores_an_offsite_next(two_org_user, login):
    user, second = two_org_user
    response = login(user).post(
        reverse("dashboard:switch-organization"), {"organization": second.pk, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


def test_dashboard_pages_send_a_same_origin_referrer_policy_and_the_api_keeps_no_referrer(owner_client):
    # With no-referrer, browsers post forms with "Origin: null" and Django's CSRF check refuses them.
    assert owner_client.get("/").headers["Referrer-Policy"] == "same-origin"
    assert Client().get(LOGIN).headers["Referrer-Policy"] == "same-origin"
    assert owner_client.get("/api/v1/agents/").headers["Referrer-Policy"] == "no-referrer"
