"""Every 503 of the API carries Retry-After, whatever was unavailable (brikk/lib/errors.py)."""

import pytest
from django.db import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from agents import services as agent_services
from brikk.lib.errors import ServiceUnavailable, render_exception
from coordination import throttling
from coordination.views import MessageListView
from tests.support.coordination import envelope, post_echo

pytestmark = pytest.mark.django_db

RETRY_AFTER_SECONDS = 5  # brikk.lib.errors.RETRY_AFTER_SECONDS, as the README states


def _is_a_503_with_retry_after(response):
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "service_unavailable"
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)


def test_database_unavailable_inside_an_api_view_is_a_503_with_retry_after(api_client, new_agent, monkeypatch):
    def unreachable(self):
        raise OperationalError("connection refused")

    monkeypatch.setattr(MessageListView, "get_queryset", unreachable)
    response = api_client.get("/api/v1/coordination/messages", HTTP_X_BRIKK_KEY=new_agent.key.plaintext)
    _is_a_503_with_retry_after(response)


def test_rate_limiter_unavailable_with_fail_open_off_is_a_503_with_retry_after(
    api_client, new_agent, org, owner, monkeypatch, settings
):
    settings.BRIKK_RATE_LIMIT_FAIL_OPEN = False
    peer = agent_services.create_agent(org, name="beta", owner=owner)

    class Unreachable:
        def hit(self, *args, **kwargs):
            raise RedisConnectionError("connection refused")

    monkeypatch.setattr(throttling, "backend", lambda: Unreachable())
    response = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext)
    _is_a_503_with_retry_after(response)


def test_any_503_rendered_for_the_api_carries_retry_after():
    _, response = render_exception(ServiceUnavailable("Down.", retry_after=30))
    assert response["Retry-After"] == "30"
    _, response = render_exception(ServiceUnavailable())
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
