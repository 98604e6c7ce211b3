"""The dashboard's push endpoint panel on an agent's page, and push attempts and resend on a message's page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditLog
from coordination import push_endpoints
from coordination.models import DeliveryAttempt, MessageLog, PushEndpoint

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://8.8.8.8/hook"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.BRIKK_WEBHOOK_ALLOW_HTTP = False
    settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = []
    settings.BRIKK_WEBHOOK_SECRET_GRACE_HOURS = 24


@pytest.fixture
def agent(new_agent):
    return new_agent.agent


@pytest.fixture
def endpoint(agent, owner):
    return push_endpoints.create(agent, PUBLIC_URL, "billing hook", actor_id=owner.pk).endpoint


def page_of(agent):
    return f"/agents/{agent.pk}/"


def test_an_owner_adds_an_endpoint_and_sees_its_secret_once(owner_client, agent):
    assert 'data-testid="endpoint-add"' in owner_client.get(page_of(agent)).content.decode()
    response = owner_client.post(f"/agents/{agent.pk}/endpoints/new/", {"url": PUBLIC_URL, "description": "billing"})
    assert response.status_code == 200
    endpoint = PushEndpoint.objects.get()
    html = response.content.decode()
    assert 'data-testid="endpoint-secret"' in html and "shown only once" in html
    assert "no-store" in response["Cache-Control"]
    secret = push_endpoints.signing_secrets(endpoint)[0]
    assert f'value="{secret}"' in html
    detail = owner_client.get(page_of(agent)).content.decode()
    assert PUBLIC_URL in detail and secret not in detail
    assert 'data-testid="endpoint-add"' not in detail  # one enabled endpoint at most: disable it to add another
    assert AuditLog.objects.filter(action="push_endpoint.created", actor_id=str(agent.owner.pk)).exists()


def test_a_refused_url_keeps_the_form_with_the_reason(owner_client, agent):
    response = owner_client.post(f"/agents/{agent.pk}/endpoints/new/", {"url": "https://169.254.169.254/x"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "169.254.169.254 is a link-local address" in html
    assert 'value="https://169.254.169.254/x"' in html
    assert not PushEndpoint.objects.exists()


def test_a_second_enabled_endpoint_is_refused_in_words(owner_client, agent, endpoint):
    response = owner_client.post(f"/agents/{agent.pk}/endpoints/new/", {"url": "https://1.1.1.1/hook"})
    assert "already has an enabled push endpoint" in response.content.decode()
    assert PushEndpoint.objects.count() == 1


def test_disable_enable_rotate_and_delete(owner_client, agent, endpoint):
    base = f"/agents/{agent.pk}/endpoints/{endpoint.pk}"
    response = owner_client.post(f"{base}/disable/", follow=True)
    html = response.content.decode()
    assert "Disabled by a person." in html and 'data-testid="endpoint-enable"' in html
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "manual")
    owner_client.post(f"{base}/enable/")
    endpoint.refresh_from_db()
    assert endpoint.enabled

    assert "Rotate secret" in owner_client.get(f"{base}/rotate/").content.decode()
    before = push_endpoints.signing_secrets(endpoint)[0]
    rotated = owner_client.post(f"{base}/rotate/")
    endpoint.refresh_from_db()
    new, old = push_endpoints.signing_secrets(endpoint)
    assert old == before and new != before
    assert f'value="{new}"' in rotated.content.decode() and before not in rotated.content.decode()
    assert "keeps signing too" in rotated.content.decode()
    assert "still signs until" in owner_client.get(page_of(agent)).content.decode()

    assert "Delete push endpoint" in owner_client.get(f"{base}/delete/").content.decode()
    assert PushEndpoint.objects.exists()  # the GET only asks
    owner_client.post(f"{base}/delete/")
    assert not PushEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("reason", "words"),
    [("gone", "answered 410 Gone"), ("failing", "failing for 5 days without a successful delivery")],
)
def test_the_reason_brikk_disabled_an_endpoint_is_said(owner_client, agent, endpoint, reason, words):
    now = timezone.now()
    PushEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, disabled_reason=reason, disabled_at=now, failing_since=now - timedelta(days=5)
    )
    assert words in owner_client.get(page_of(agent)).content.decode()


def test_members_see_the_panel_read_only_and_cannot_change_it(member_client, agent, endpoint):
    html = member_client.get(page_of(agent)).content.decode()
    assert PUBLIC_URL in html and 'data-testid="endpoint-state"' in html
    for testid in ("endpoint-add", "endpoint-disable", "endpoint-rotate", "endpoint-delete"):
        assert f'data-testid="{testid}"' not in html
    base = f"/agents/{agent.pk}/endpoints/{endpoint.pk}"
    for url in (f"{base}/disable/", f"{base}/rotate/", f"{base}/delete/", f"/agents/{agent.pk}/endpoints/new/"):
        assert member_client.post(url, {"url": PUBLIC_URL}).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_another_organizations_endpoint_is_404(login, other_agent, endpoint, agent):
    stranger = other_agent.owner
    client = login(stranger)
    assert client.post(f"/agents/{agent.pk}/endpoints/{endpoint.pk}/disable/").status_code == 404
    assert client.post(f"/agents/{other_agent.pk}/endpoints/{endpoint.pk}/disable/").status_code == 404
    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_the_message_page_shows_push_attempts_escaped_and_resends(
    owner_client, member_client, org, agent, endpoint, make_message
):
    now = timezone.now()
    message = make_message(org, recipient=agent, delivery_state="dead", dead_reason="push_exhausted", dead_at=now)
    DeliveryAttempt.objects.create(
        message=message,
        kind="push",
        started_at=now - timedelta(seconds=3),
        endpoint=endpoint,
        status_code=503,
        latency_ms=41.7,
        error="HTTP 503",
        response_excerpt="<script>alert(1)</script>" + "x" * 2000,
        outcome="failed",
    )
    html = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert "HTTP 503" in html and "in 42 ms" in html and PUBLIC_URL in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "x" * 400 not in html  # truncated
    assert 'data-testid="message-resend"' in html
    assert 'data-testid="message-resend"' not in member_client.get(f"/messages/{message.pk}/").content.decode()
    assert member_client.post(f"/messages/{message.pk}/resend/").status_code == 403

    response = owner_client.post(f"/messages/{message.pk}/resend/", follow=True)
    assert "Sent the message again" in response.content.decode()
    message.refresh_from_db()
    assert (message.delivery_state, message.delivery_count) == ("queued", 0)
    assert AuditLog.objects.filter(action="message.resent", resource_id=str(message.pk)).count() == 1

    MessageLog.objects.filter(pk=message.pk).update(delivery_state="leased", leased_until=now + timedelta(minutes=1))
    response = owner_client.post(f"/messages/{message.pk}/resend/", follow=True)
    assert "leased to a consumer right now" in response.content.decode()
