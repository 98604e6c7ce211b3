"""A real gunicorn (2 workers) in front of PostgreSQL and Redis through cuttable TCP proxies:
metrics aggregated across workers, Redis and PostgreSQL outages and recovery while it runs."""

import socket
import threading
import time
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from tests.support.live_server import LiveServer
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.pg_redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxies():
    redis = urlparse(settings.REDIS_URL)
    db_proxy = TcpProxy(
        settings.DATABASES["default"]["HOST"] or "127.0.0.1", int(settings.DATABASES["default"]["PORT"] or 5432)
    ).start()
    redis_proxy = TcpProxy(redis.hostname, redis.port or 6379).start()
    yield db_proxy, redis_proxy
    db_proxy.stop()
    redis_proxy.stop()


@pytest.fixture
def server(proxies, tmp_path):
    db_proxy, redis_proxy = proxies
    redis = urlparse(settings.REDIS_URL)
    name = connection.settings_dict["NAME"]  # the test database, where this test's rows are committed
    live = LiveServer(
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{db_proxy.port}/{name}",
            "REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}{redis.path or '/0'}",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            "BRIKK_DB_POOL_MIN": "1",
            "BRIKK_DB_POOL_TIMEOUT": "1",
            "BRIKK_DB_CONNECT_TIMEOUT": "1",
            "BRIKK_LOG_LEVEL": "WARNING",
            "BRIKK_MANIFEST_STATIC": "false",  # no collectstatic in tests
        },
        workers=2,
        log_path=tmp_path / "gunicorn.log",
    ).start()
    yield live
    live.stop()


def sample(text, name, **labels):
    total = 0.0
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                total += item.value
    return total


def test_metrics_are_summed_over_gunicorn_workers(server, new_agent, tmp_path):
    # A sync worker that has accepted a connection serves nothing else until its request arrives:
    # holding one connection open sends the other requests to the other worker, so both count.
    held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    time.sleep(0.5)

    def hammer(count):
        for _ in range(count):
            assert server.get("/healthz").status == 200

    threads = [threading.Thread(target=hammer, args=(20,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    reply = b""
    while chunk := held.recv(65536):
        reply += chunk
    held.close()
    assert reply.split(b"\r\n", 1)[0].endswith(b" 200 OK"), reply[:200]
    bad_key = new_agent.key.plaintext.split(".")[0] + "." + "x" * 43
    for _ in range(4):
        assert server.get("/api/v1/agents/", headers={"X-API-Key": bad_key}).status == 401

    # Both workers served requests and wrote their own files ...
    pids = {path.name.rsplit("_", 1)[-1] for path in (tmp_path / "prometheus").glob("counter_*.db")}
    assert len(pids) == 2, pids
    # ... and one scrape, answered by either worker, reports the sum.
    for _ in range(2):
        scrape = server.get("/metrics")
        assert scrape.status == 200
        assert scrape.headers["Content-Type"].startswith("text/plain")
        text = scrape.text
        assert (
            sample(text, "django_http_responses_total_by_status_view_method_total", view="healthz", status="200") >= 61
        )
        assert sample(text, "brikk_auth_failures_total", reason="unknown") == 4
        assert sample(text, "brikk_audit_events_total", action="auth.failed", outcome="failure") == 4
        assert sample(text, "brikk_redis_up") == 1
        assert 'brikk_feature_flag{flag="rate_limit_enabled"}' in text


def test_redis_outage_degrades_without_errors_and_recovers(server, proxies, new_agent):
    _, redis_proxy = proxies
    key = {"X-API-Key": new_agent.key.plaintext}
    assert server.get("/api/v1/agents/", headers=key).status == 200
    assert server.get("/readyz").json()["status"] == "ok"

    redis_proxy.cut()
    try:
        for _ in range(6):
            response = server.get("/api/v1/agents/", headers=key)
            assert response.status == 200, response.text
        ready = server.get("/readyz")
        assert ready.status == 200
        body = ready.json()
        assert body["status"] == "degraded"
        assert body["checks"]["redis"]["status"] == "down"
        assert body["checks"]["database"]["status"] == "ok"
        assert sample(server.get("/metrics").text, "brikk_redis_up") == 0
    finally:
        redis_proxy.restore()

    recovered = server.wait_for(lambda: server.get("/readyz").json()["status"] == "ok")
    assert recovered, server.get("/readyz").text
    assert server.get("/api/v1/agents/", headers=key).status == 200


def test_postgresql_outage_is_a_json_503_everywhere_and_recovers(server, proxies, new_agent):
    db_proxy, _ = proxies
    key = {"X-API-Key": new_agent.key.plaintext}
    assert server.get("/api/v1/agents/", headers=key).status == 200

    db_proxy.cut()
    try:
        for path, headers in [
            ("/api/v1/agents/", key),
            ("/api/v1/agents/", {"X-API-Key": new_agent.key.plaintext.split(".")[0] + "." + "y" * 43}),
            ("/admin/", {"Cookie": "sessionid=" + "z" * 32}),
            ("/admin/login/", {"Cookie": "sessionid=" + "z" * 32}),
        ]:
            for _ in range(2):  # both workers (and their pooled connections) get their turn
                response = server.get(path, headers={**headers, "X-Request-ID": "pg-down-000001"})
                assert response.status == 503, (path, response.status, response.text[:300])
                assert response.headers["Content-Type"] == "application/json"
                body = response.json()
                assert body["code"] == "service_unavailable"
                assert body["request_id"] == "pg-down-000001"
        ready = server.get("/readyz")
        assert ready.status == 503
        assert ready.json()["checks"]["database"]["status"] == "down"
        assert server.get("/healthz").status == 200  # liveness never touches the database
    finally:
        db_proxy.restore()

    def healthy():
        return all(server.get("/api/v1/agents/", headers=key).status == 200 for _ in range(4))

    assert server.wait_for(healthy, timeout=30)
    assert server.get("/readyz").status == 200
