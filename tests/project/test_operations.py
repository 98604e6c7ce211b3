"""/healthz, /readyz and /metrics in-process; the database-outage JSON 503 on every path."""

import pytest
from django.db import OperationalError
from django.test import Client

from audit.services import record, record_many

pytestmark = pytest.mark.django_db


def test_readyz_reports_each_check_with_latency(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "broker"}
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["database"]["latency_ms"] >= 0
    for name in ("redis", "broker"):
        assert body["checks"][name]["status"] in ("ok", "skipped")


def test_readyz_is_503_when_the_database_is_down_and_degraded_when_redis_is(client, monkeypatch, settings):
    from brikk import health

    def broken(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(health.connection, "cursor", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["database"] == {
        "status": "down",
        "latency_ms": response.json()["checks"]["database"]["latency_ms"],
        "error": "OperationalError",
    }


def test_readiness_logic_for_an_optional_redis(settings):
    from brikk.health import DOWN, OK, Check, Readiness

    report = Readiness({"database": Check(OK, 1), "redis": Check(DOWN, 1, "ConnectionError"), "broker": Check(OK, 1)})
    settings.BRIKK_RATE_LIMIT_ENABLED, settings.BRIKK_RATE_LIMIT_FAIL_OPEN = True, True
    assert (report.status, report.ready) == ("degraded", True)
    settings.BRIKK_RATE_LIMIT_FAIL_OPEN = False  # rate limiting must fail closed: Redis is required
    assert (report.status, report.ready) == ("unavailable", False)
    settings.BRIKK_RATE_LIMIT_ENABLED = False
    assert report.status == "degraded"


def test_metrics_are_refused_outside_the_allowlist_without_the_token(settings):
    settings.BRIKK_METRICS_TOKEN = "scrape-token-123"
    settings.BRIKK_METRICS_ALLOWED_IPS = ["10.1.0.0/16"]
    outsider = Client(REMOTE_ADDR="192.0.2.7")
    refused = outsider.get("/metrics")
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 403
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-123").status_code == 200
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    # X-Forwarded-For is not trusted: a client cannot claim an allowed address.
    assert outsider.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 403


def test_metrics_default_allows_loopback_only(settings):
    assert settings.BRIKK_METRICS_TOKEN is None
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 403


def test_metrics_behind_the_proxy_do_not_trust_loopback(settings):
    """A proxy on the same host connects from loopback for every visitor (DJANGO_BEHIND_PROXY)."""
    settings.BEHIND_PROXY = True
    settings.BRIKK_METRICS_TOKEN = "scrape-token-123"
    settings.BRIKK_METRICS_ALLOWED_IPS = ["127.0.0.1/32", "::1/128", "10.1.0.0/16"]
    for loopback in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "127.0.0.2"):
        visitor = Client(REMOTE_ADDR=loopback)
        assert visitor.get("/metrics").status_code == 403, loopback
        # The forwarded address does not count either, whatever it says.
        assert visitor.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 403, loopback
        assert visitor.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-123").status_code == 200, loopback
    # A scraper that reaches the server directly, from an allowed network, still may.
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200


def test_behind_the_proxy_audit_and_login_throttle_see_the_client_not_the_proxy(settings, rf):
    from brikk.lib.context import client_ip

    request = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.5")
    assert client_ip(request) == "127.0.0.1"  # without the flag the header is a client's claim
    settings.BEHIND_PROXY = True
    assert client_ip(request) == "203.0.113.5"  # the last entry is what the proxy saw
    assert client_ip(rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="junk")) == "127.0.0.1"
    from agents.login_guard import client_address

    assert client_address(request) == "203.0.113.5"  # the login throttle counts per client, not per proxy


def _sample(text, name, **labels):
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_requests_per_route_and_derive_product_counters_from_audit(client):
    before = client.get("/metrics").content.decode()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    record("echo.delivered")
    record("echo.rejected", outcome="failure")
    record("auth.failed", outcome="failure", details={"reason": "invalid_signature"})
    record("rate_limit.refused", outcome="denied")
    record("idempotency.replayed")
    record("idempotency.conflict", outcome="failure")
    after = client.get("/metrics").content.decode()

    def grew(name, **labels):
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert (
        grew("django_http_responses_total_by_status_view_method_total", view="healthz", status="200", method="GET") == 3
    )
    assert (
        _sample(after, "django_http_requests_latency_seconds_by_view_method_count", view="healthz", method="GET") >= 3
    )
    assert grew("brikk_echo_total", outcome="delivered") == 1
    assert grew("brikk_echo_total", outcome="rejected") == 1
    assert grew("brikk_auth_failures_total", reason="invalid_signature") == 1
    assert grew("brikk_rate_limit_refusals_total") == 1
    assert grew("brikk_idempotency_total", result="replayed") == 1
    assert grew("brikk_idempotency_total", result="conflict") == 1
    assert grew("brikk_audit_events_total", action="echo.delivered", outcome="success") == 1
    assert _sample(after, "brikk_feature_flag", flag="idempotency_enabled") in (0.0, 1.0)
    assert 'brikk_feature_flag{flag="hmac_required"}' in after


def test_rows_written_together_count_once_each_in_the_metrics(client):
    """record_many sends one signal per action, outcome and reason, carrying how many rows it stands for."""
    before = client.get("/metrics").content.decode()
    record_many(
        [
            *({"action": "echo.delivered", "resource_id": f"m{n}"} for n in range(5)),
            {"action": "echo.rejected", "outcome": "failure"},
            *({"action": "auth.failed", "outcome": "failure", "details": {"reason": "expired_key"}} for _ in range(2)),
            {"action": "auth.failed", "outcome": "failure", "details": {"reason": "invalid_signature"}},
            {"action": "auth.failed", "outcome": "failure", "details": {"reason": ["not", "hashable"]}},
        ]
    )
    after = client.get("/metrics").content.decode()

    def grew(name, **labels):
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert grew("brikk_echo_total", outcome="delivered") == 5
    assert grew("brikk_echo_total", outcome="rejected") == 1
    assert grew("brikk_audit_events_total", action="echo.delivered", outcome="success") == 5
    assert grew("brikk_audit_events_total", action="auth.failed", outcome="failure") == 4
    assert grew("brikk_auth_failures_total", reason="expired_key") == 2
    assert grew("brikk_auth_failures_total", reason="invalid_signature") == 1
    assert grew("brikk_auth_failures_total", reason="['not', 'hashable']") == 1


def test_a_database_error_outside_drf_is_a_json_503_not_an_html_500(client, monkeypatch):
    from django.contrib.sessions.backends import db as session_db

    def broken(self, *args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    # The database read of both session engines (db, and cached_db with Redis on a cache miss).
    monkeypatch.setattr(session_db.SessionStore, "_get_session_from_db", broken)
    client.cookies["sessionid"] = "x" * 32
    client.raise_request_exception = False
    response = client.get("/admin/", HTTP_X_REQUEST_ID="db-down-000001")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "code": "service_unavailable",
        "message": "The database is unavailable; retry later.",
        "request_id": "db-down-000001",
        "details": None,
    }


def test_favicon_ico_leads_to_the_dashboards_icon(client, settings):
    # Tests run with DEBUG off but without collectstatic: no manifest to look names up in.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")
