"""The coordination API against the real PostgreSQL and Redis: concurrency, outages and a real worker."""

import json

import pytest
from django.conf import settings as live_settings
from django.test import override_settings
from django_redis import get_redis_connection

from agents import services as agent_services
from audit.models import AuditLog
from coordination.models import IdempotencyRecord, MessageLog
from tests.support.coordination import ECHO_PATH, encode, envelope, post_echo, signed_headers
from tests.support.live import CeleryWorker, concurrently, http_post, meta_to_http, wait_for
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.pg_redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def test_twenty_concurrent_identical_requests_are_processed_once(live_server, new_agent, peer):
    raw = encode(envelope(new_agent.agent, peer.agent, payload={"charge": 42}))
    # One captured signed request, sent 20 times at once.
    headers = meta_to_http(signed_headers(new_agent.key.plaintext, new_agent.signing_secret, raw))
    results = concurrently(20, lambda i: http_post(live_server.url, ECHO_PATH, raw, headers))

    statuses = sorted(status for status, _, _ in results)
    assert not [status for status in statuses if status >= 500], statuses
    assert set(statuses) <= {200, 409}, statuses
    originals = [r for r in results if r[0] == 200 and "idempotent-replayed" not in r[1]]
    assert len(originals) == 1  # the first answer is the 200 that did the work
    replays = [r for r in results if r[0] == 200 and r[1].get("idempotent-replayed") == "true"]
    assert all(body == originals[0][2] for _, _, body in replays)
    assert all(body["code"] == "idempotency_in_progress" for status, _, body in results if status == 409)
    assert len(originals) + len(replays) + statuses.count(409) == 20

    message_id = json.loads(raw)["message_id"]
    delivered = MessageLog.objects.get(message_id=message_id, status="delivered")
    assert originals[0][2]["id"] == str(delivered.pk) and originals[0][2]["status"] == "delivered"
    assert MessageLog.objects.filter(message_id=message_id, status="rejected").count() == statuses.count(409)
    assert AuditLog.objects.filter(action="echo.delivered").count() == 1
    assert AuditLog.objects.filter(action="idempotency.replayed").count() == len(replays)
    stored = IdempotencyRecord.objects.get(key=message_id)
    assert (stored.response_status, stored.message_id) == (200, delivered.pk)


def test_rate_limit_refuses_exactly_the_requests_past_the_limit(live_server, org, new_agent, peer):
    limit = 10
    org.rate_limit_agent_per_minute = limit
    org.save()
    key, secret = new_agent.key.plaintext, new_agent.signing_secret

    def send(_):
        raw = encode(envelope(new_agent.agent, peer.agent))
        return http_post(live_server.url, ECHO_PATH, raw, meta_to_http(signed_headers(key, secret, raw)))

    results = concurrently(2 * limit, send)
    allowed = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 429]
    assert len(allowed) == limit and len(refused) == limit, sorted(r[0] for r in results)
    # Each admitted request saw a distinct remaining count: the window is atomic.
    assert sorted(int(h["x-ratelimit-remaining"]) for _, h, _ in allowed) == list(range(limit))
    for _, headers, body in refused:
        assert body["code"] == "rate_limited"
        assert 1 <= int(headers["retry-after"]) <= 60
        assert headers["x-ratelimit-limit"] == str(limit) and headers["x-ratelimit-remaining"] == "0"
        assert headers["ratelimit"].startswith('"caller";r=0;t=')
        assert headers["ratelimit-policy"].startswith(f'"caller";q={limit};w=60')
    assert {h["ratelimit-policy"] for _, h, _ in allowed} == {f'"caller";q={limit};w=60, "organization";q=6000;w=60'}
    redis = get_redis_connection("default")
    assert redis.zcard(f"brikk:rl:v1:agent:{new_agent.agent.pk}") == limit
    assert redis.zcard(f"brikk:rl:v1:org:{org.pk}") == limit  # refusals were given back to the org window
    assert MessageLog.objects.filter(status="delivered").count() == limit
    assert AuditLog.objects.filter(action="rate_limit.refused").count() == limit


def _cache_through(proxy):
    cache = {**live_settings.CACHES["default"]}
    db = live_settings.REDIS_URL.rsplit("/", 1)[-1]
    cache["LOCATION"] = f"redis://127.0.0.1:{proxy.port}/{db}"
    return {"default": cache}


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_unreachable_never_gives_a_500(api_client, new_agent, peer, settings, fail_open):
    settings.BRIKK_RATE_LIMIT_FAIL_OPEN = fail_open
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    with TcpProxy("127.0.0.1", 6379) as proxy, override_settings(CACHES=_cache_through(proxy)):
        assert post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, secret=secret).status_code == 200
        proxy.cut()
        response = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, secret=secret)
        listed = api_client.get("/api/v1/coordination/messages", HTTP_X_BRIKK_KEY=key)
        assert listed.status_code == 200  # keys are checked on PostgreSQL alone
        if fail_open:
            assert response.status_code == 200, response.content
            assert "X-RateLimit-Limit" not in response
            degraded = AuditLog.objects.get(action="rate_limit.degraded")
            assert degraded.correlation_id == response["X-Request-ID"] and degraded.outcome == "error"
        else:
            assert response.status_code == 503, response.content
            assert response.json()["code"] == "service_unavailable"
            assert MessageLog.objects.filter(status="rejected", http_status=503).count() == 1
        proxy.restore()
        assert post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, secret=secret).status_code == 200


@pytest.fixture
def worker(transactional_db, settings):
    """A real Celery worker consuming a private queue from Redis, with test-only fault injection on."""
    started = CeleryWorker(
        BRIKK_ECHO_FAULT_INJECTION="true", BRIKK_ASYNC_RETRY_BASE_SECONDS=1, BRIKK_ASYNC_MAX_RETRIES=2
    ).start()
    settings.BRIKK_ASYNC_QUEUE = started.queue
    yield started
    started.stop()


def _send_async(api_client, new_agent, peer, payload):
    body = envelope(new_agent.agent, peer.agent, payload=payload)
    response = post_echo(
        api_client, body, key=new_agent.key.plaintext, secret=new_agent.signing_secret, HTTP_PREFER="respond-async"
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"
    return response


def _final_status(api_client, response, key):
    def finished():
        status = api_client.get(response["Location"], HTTP_X_BRIKK_KEY=key).json()
        return status if status["status"] in ("delivered", "failed") else None

    return wait_for(finished, timeout=45)


def test_async_round_trip_on_a_real_worker(api_client, worker, new_agent, peer):
    from brikk.celery import app

    assert not app.conf.task_always_eager
    response = _send_async(api_client, new_agent, peer, {"job": "real"})
    status = _final_status(api_client, response, new_agent.key.plaintext)
    assert status["status"] == "delivered" and status["attempts"] == 1
    assert status["response_body"]["envelope"]["payload"] == {"job": "real"}
    assert status["correlation_id"] == response["X-Request-ID"]
    assert AuditLog.objects.filter(action="echo.delivered", correlation_id=response["X-Request-ID"]).count() == 1


def test_async_fails_once_then_succeeds_on_a_real_worker(api_client, worker, new_agent, peer):
    response = _send_async(api_client, new_agent, peer, {"_brikk_fault": {"fail_attempts": 1}})
    status = _final_status(api_client, response, new_agent.key.plaintext)
    assert status["status"] == "delivered" and status["attempts"] == 2 and status["error"] == ""
    assert "retry" in "".join(worker.output).lower()


def test_async_ends_failed_with_the_reason_on_a_real_worker(api_client, worker, new_agent, peer):
    response = _send_async(api_client, new_agent, peer, {"_brikk_fault": {"fail_attempts": 99}})
    status = _final_status(api_client, response, new_agent.key.plaintext)
    assert status["status"] == "failed" and status["attempts"] == 3  # first try + 2 retries
    assert status["error"] == "injected fault on attempt 3"
    assert AuditLog.objects.filter(action="echo.failed", correlation_id=response["X-Request-ID"]).count() == 1
