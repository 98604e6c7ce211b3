"""Issue 9, security point 3: revocation never waits for a cache. The database decides a key's validity on
every request, whatever Redis does; and with Redis down, signed echoes keep at least half their throughput.
Also: failed authentications with a known key prefix are audited in that key's organization."""

import contextlib
import socket
import threading
import time
from datetime import timedelta
from io import StringIO
from urllib.parse import urlparse

import pytest
from django.conf import settings as live_settings
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from agents import services
from agents.models import Agent, APIKey, Organization
from audit.models import AuditLog
from brikk.lib import outage
from coordination import throttling
from tests.support.coordination import envelope, post_echo
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db

AGENTS_URL = "/api/v1/agents/"


def get(api_client, key, **headers):
    return api_client.get(AGENTS_URL, HTTP_X_BRIKK_KEY=key, **headers)


def _refused_as(response, message):
    assert response.status_code == 401, response.content
    assert response.json()["message"] == message


# --- changes made behind the application's back (no signal, nothing to invalidate) -------------------


def test_a_key_revoked_behind_the_application_is_refused_on_the_next_request(api_client, new_agent):
    assert get(api_client, new_agent.key.plaintext).status_code == 200
    assert get(api_client, new_agent.key.plaintext).status_code == 200  # verified before: no hashing
    APIKey.objects.filter(pk=new_agent.key.api_key.pk).update(revoked_at=timezone.now())
    _refused_as(get(api_client, new_agent.key.plaintext), "The API key has been revoked.")


def test_a_key_expired_or_an_agent_disabled_behind_the_application_is_refused_at_once(api_client, new_agent):
    assert get(api_client, new_agent.key.plaintext).status_code == 200
    Agent.objects.filter(pk=new_agent.agent.pk).update(status=Agent.Status.MAINTENANCE)
    _refused_as(get(api_client, new_agent.key.plaintext), "The agent is not active.")
    Agent.objects.filter(pk=new_agent.agent.pk).update(status=Agent.Status.ACTIVE)
    APIKey.objects.filter(pk=new_agent.key.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _refused_as(get(api_client, new_agent.key.plaintext), "The API key has expired.")


def test_a_plan_change_behind_the_application_applies_at_once(api_client, org, new_agent, make_agent):
    throttling.local_window.clear()
    peer = make_agent(org, name="peer").agent
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    assert post_echo(api_client, envelope(new_agent.agent, peer), key=key, secret=secret).status_code == 200
    Organization.objects.filter(pk=org.pk).update(rate_limit_agent_per_minute=1)
    refused = post_echo(api_client, envelope(new_agent.agent, peer), key=key, secret=secret)
    assert refused.status_code == 429 and refused["X-RateLimit-Limit"] == "1"


# --- the organization of a known prefix sees its failed authentications ------------------------------


def _wrong_secret(key):
    prefix = key.split(".", 1)[0]
    return f"{prefix}.{'x' * 43}"


@pytest.mark.parametrize(
    "reason, prepare",
    [
        ("revoked", lambda agent: services.revoke_keys(agent.agent)),
        (
            "expired",
            lambda agent: agent.key.api_key.__class__.objects.filter(pk=agent.key.api_key.pk).update(
                expires_at=timezone.now() - timedelta(seconds=1)
            ),
        ),  # fmt: skip
        ("agent_inactive", lambda agent: services.update_agent(agent.agent, status=Agent.Status.MAINTENANCE)),
        ("unknown", None),  # a wrong secret under the key's prefix
    ],
)
def test_a_failed_authentication_with_a_known_prefix_is_audited_in_the_keys_organization(
    api_client, new_agent, reason, prepare
):
    presented = new_agent.key.plaintext
    if prepare is None:
        presented = _wrong_secret(presented)
    else:
        prepare(new_agent)
    assert get(api_client, presented, HTTP_X_REQUEST_ID=f"known-prefix-{reason}").status_code == 401
    row = AuditLog.objects.get(action="auth.failed", correlation_id=f"known-prefix-{reason}")
    assert row.details["reason"] == reason
    assert row.details["key_prefix"] == new_agent.key.api_key.prefix
    assert row.organization_id == new_agent.agent.organization_id


def test_a_failure_with_an_unknown_prefix_belongs_to_no_organization(api_client, db):
    assert get(api_client, "brk_0123456789ab." + "y" * 43, HTTP_X_REQUEST_ID="unknown-prefix-1").status_code == 401
    assert AuditLog.objects.get(correlation_id="unknown-prefix-1").organization_id is None


def test_the_owner_sees_failed_authentications_of_a_revoked_key_in_the_dashboard(
    api_client, client, new_agent, owner, settings
):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    services.revoke_keys(new_agent.agent)
    assert get(api_client, new_agent.key.plaintext, HTTP_X_REQUEST_ID="revoked-key-use-1").status_code == 401
    client.force_login(owner)
    response = client.get(reverse("dashboard:audit"), {"action": "auth."})
    assert response.status_code == 200
    shown = [entry for entry in response.context["page"].items if entry.action == "auth.failed"]
    assert [entry.correlation_id for entry in shown] == ["revoked-key-use-1"]
    assert shown[0].details["reason"] == "revoked"


# --- against the real PostgreSQL and Redis ----------------------------------------------------------


def _redis_proxy() -> TcpProxy:
    redis = urlparse(live_settings.REDIS_URL)
    return TcpProxy(redis.hostname, redis.port or 6379)


def _cache_through(proxy):
    cache = {**live_settings.CACHES["default"]}
    db = live_settings.REDIS_URL.rsplit("/", 1)[-1]
    cache["LOCATION"] = f"redis://127.0.0.1:{proxy.port}/{db}"
    return {"default": cache}


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_revoke_key_while_redis_is_unreachable_takes_effect_on_the_next_request(api_client, org, new_agent):
    key = new_agent.key.plaintext
    with _redis_proxy() as proxy, override_settings(CACHES=_cache_through(proxy)):
        assert get(api_client, key).status_code == 200
        assert get(api_client, key).status_code == 200
        proxy.cut()
        out = StringIO()
        call_command("revoke_key", new_agent.agent.name, "--org", org.slug, stdout=out)
        assert "Revoked 1 key of" in out.getvalue()
        _refused_as(get(api_client, key), "The API key has been revoked.")  # Redis still down
        proxy.restore()
        _refused_as(get(api_client, key), "The API key has been revoked.")  # and after it is back
    assert APIKey.objects.get(pk=new_agent.key.api_key.pk).revoked_at is not None


class Blackhole:
    """A Redis that is unreachable the slow way (a dead route, a hung server): connections are accepted and
    nothing ever answers, so every call waits out its socket timeout."""

    def __init__(self):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self._held.append(self._listener.accept()[0])
            except OSError:
                return

    def close(self):
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for held in self._held:
            held.close()


def _cache_at(port):
    cache = {**live_settings.CACHES["default"]}
    cache["LOCATION"] = f"redis://127.0.0.1:{port}/{live_settings.REDIS_URL.rsplit('/', 1)[-1]}"
    return {"default": cache}


@contextlib.contextmanager
def redis_down(how):
    if how == "refused":  # stopped: the port refuses connections at once
        proxy = _redis_proxy().start()
        proxy.cut()
        try:
            with override_settings(CACHES=_cache_through(proxy)):
                yield
        finally:
            proxy.stop()
    else:  # hung: every call waits out the socket timeout
        hole = Blackhole()
        try:
            with override_settings(CACHES=_cache_at(hole.port)):
                yield
        finally:
            hole.close()


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["refused", "hung"])
def test_signed_echo_throughput_with_redis_down_stays_at_least_half(api_client, org, owner, settings, how):
    from brikk import settings as production

    settings.BRIKK_API_KEY_PBKDF2_ITERATIONS = production.BRIKK_API_KEY_PBKDF2_ITERATIONS
    sender = services.create_agent(org, name="sender", owner=owner)
    peer = services.create_agent(org, name="peer", owner=owner).agent
    key, secret = sender.key.plaintext, sender.signing_secret

    def echoes_per_second(count=30) -> float:
        started = time.perf_counter()
        for _ in range(count):
            response = post_echo(api_client, envelope(sender.agent, peer), key=key, secret=secret)
            assert response.status_code == 200, response.content
        return count / (time.perf_counter() - started)

    normal, degraded = [], []
    echoes_per_second(3)  # warm up
    for _ in range(2):  # alternated, so that a neighbour's burst of load falls on both alike
        normal.append(echoes_per_second())
        with redis_down(how):
            echoes_per_second(3)  # the first call finds Redis down (and, hung, waits out its timeout once)
            degraded.append(echoes_per_second())
        outage.redis.reset()  # Redis is back: as after brikk.lib.outage.PAUSE_SECONDS
    assert sum(degraded) >= sum(normal) / 2, (normal, degraded)
    assert AuditLog.objects.filter(action="rate_limit.degraded").count() >= 60
