"""Issue 9, security point 1: with BRIKK_HMAC_REQUIRED every request authenticated by an agent key, on
every endpoint now and later, carries a valid signature; a sent signature is always checked; the signature
covers the query string. Runs on both passes (the check is the same code on SQLite and PostgreSQL)."""

import hashlib
import hmac
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from agents import signing
from agents.authentication import APIKeyAuthentication, JWTAuthentication, SessionAuthentication
from audit.models import AuditLog
from coordination.models import MessageLog
from tests.support.coordination import envelope, post_echo, signed_get, signed_headers

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"
MESSAGES = "/api/v1/coordination/messages"
BODY_METHODS = {"POST", "PUT", "PATCH"}


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def _concrete(route: str) -> str:
    """A request path for a route: every parameter (``<uuid:pk>``, ``(?P<pk>...)``) an arbitrary UUID.
    Authentication runs before any object is looked up, so the UUID need not exist."""
    import re

    route = re.sub(r"\(\?P<\w+>[^)]*\)", str(uuid.uuid4()), route)
    route = re.sub(r"<(?:\w+:)?\w+>", str(uuid.uuid4()), route)
    return "/" + route.replace("^", "").replace("$", "").replace("\\", "")


def api_endpoints() -> list[tuple[str, str]]:
    """(method, path) of every DRF endpoint of the project that authenticates anyone: new endpoints are
    picked up without touching this test."""
    endpoints = []
    for route, callback in _walk(get_resolver().url_patterns):
        view = getattr(callback, "cls", None)
        if view is None or not view.authentication_classes:
            continue
        actions = getattr(callback, "actions", None)
        if actions:
            methods = [method.upper() for method in actions]
        else:
            methods = [m.upper() for m in view.http_method_names if m not in ("options", "head") and hasattr(view, m)]
        endpoints.extend((method, _concrete(route)) for method in methods)
    return endpoints


def _send(client, method, path, **headers):
    if method in BODY_METHODS:
        return client.generic(method, path, b"{}", content_type="application/json", **headers)
    return client.generic(method, path, **headers)


def _bare_key_headers(key, header):
    return {
        "x-brikk-key": {"HTTP_X_BRIKK_KEY": key},
        "x-api-key": {"HTTP_X_API_KEY": key},
        "bearer": {"HTTP_AUTHORIZATION": f"Bearer {key}"},
    }[header]


def test_the_endpoint_list_covers_the_api():
    endpoints = api_endpoints()
    for expected in [
        ("GET", AGENTS),
        ("POST", AGENTS),
        ("GET", MESSAGES),
        ("POST", "/api/v1/coordination"),
        ("POST", "/api/v1/coordination/"),
    ]:
        assert expected in endpoints
    assert any(method == "GET" and path.startswith(MESSAGES + "/") for method, path in endpoints)
    assert any(method == "POST" and path.endswith("/rotate-key/") for method, path in endpoints)
    assert all("/health" not in path and "/auth/token" not in path for _, path in endpoints)


def test_every_api_view_accepts_agent_keys_only_through_the_one_signing_class():
    """A view that chose other authentication classes would escape the signature rule: none may."""
    allowed = {APIKeyAuthentication, JWTAuthentication, SessionAuthentication}
    for route, callback in _walk(get_resolver().url_patterns):
        view = getattr(callback, "cls", None)
        if view is None:
            continue
        assert set(view.authentication_classes) <= allowed, route
        if view.authentication_classes:
            assert view.authentication_classes[0] is APIKeyAuthentication, route


@pytest.mark.parametrize("header", ["x-brikk-key", "x-api-key", "bearer"])
def test_with_hmac_required_a_bare_key_is_refused_on_every_endpoint(api_client, new_agent, settings, header):
    settings.BRIKK_HMAC_REQUIRED = True
    endpoints = api_endpoints()
    for method, path in endpoints:
        response = _send(api_client, method, path, **_bare_key_headers(new_agent.key.plaintext, header))
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.data["code"] == "invalid_signature", (method, path)
    refused = AuditLog.objects.filter(action="auth.failed", details__reason="invalid_signature")
    assert refused.count() == len(endpoints)
    assert set(refused.values_list("organization_id", flat=True)) == {new_agent.agent.organization_id}
    assert not MessageLog.objects.exists()


def test_a_wrong_signature_is_refused_on_every_endpoint_even_when_not_required(api_client, new_agent, settings):
    settings.BRIKK_HMAC_REQUIRED = False
    for method, path in api_endpoints():
        raw = b"{}" if method in BODY_METHODS else b""
        wrong = signed_headers(new_agent.key.plaintext, "bss_not-the-secret", raw, path=path, method=method)
        response = _send(api_client, method, path, **wrong)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.data["code"] == "invalid_signature", (method, path)
        stale = signed_headers(
            new_agent.key.plaintext, new_agent.signing_secret, raw, path=path, method=method, timestamp="1000000000"
        )
        response = _send(api_client, method, path, **stale)
        assert (response.status_code, response.data["code"]) == (401, "timestamp_error"), (method, path)


def test_signed_reads_are_accepted_with_hmac_required(api_client, new_agent, make_agent, settings):
    settings.BRIKK_HMAC_REQUIRED = True
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    peer = make_agent(new_agent.agent.organization, name="peer").agent
    sent = post_echo(api_client, envelope(new_agent.agent, peer), key=key, secret=secret)
    assert sent.status_code == 200, sent.content

    listed = signed_get(api_client, key, secret, AGENTS)
    assert listed.status_code == 200, listed.content
    assert {a["name"] for a in listed.json()["results"]} == {"alpha", "peer"}
    detail = signed_get(api_client, key, secret, f"{AGENTS}{new_agent.agent.pk}/")
    assert detail.status_code == 200
    message = signed_get(api_client, key, secret, f"{MESSAGES}/{sent.json()['id']}")
    assert message.status_code == 200 and message.json()["status"] == "delivered"
    without_key = api_client.get(AGENTS, HTTP_X_BRIKK_TIMESTAMP=signing.now_timestamp())
    assert without_key.status_code == 401


def test_the_signature_covers_the_query_string(api_client, new_agent, make_agent, settings):
    settings.BRIKK_HMAC_REQUIRED = True
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    peer = make_agent(new_agent.agent.organization, name="peer").agent
    assert post_echo(api_client, envelope(new_agent.agent, peer), key=key, secret=secret).status_code == 200
    assert post_echo(api_client, envelope(new_agent.agent, peer, ttl_ms=0), key=key, secret=secret).status_code == 422

    query = "status=rejected&page_size=5"
    signed = signed_get(api_client, key, secret, MESSAGES, query)
    assert signed.status_code == 200, signed.content
    assert [m["status"] for m in signed.json()["results"]] == ["rejected"]

    # The same signature with another query, the parameters reordered, or over the bare path: refused.
    headers = signed_headers(key, secret, b"", path=f"{MESSAGES}?{query}", method="GET")
    for tampered in ("status=delivered&page_size=5", "page_size=5&status=rejected", "status=rejected&page_size=6"):
        response = api_client.generic("GET", f"{MESSAGES}?{tampered}", **headers)
        assert (response.status_code, response.json()["code"]) == (401, "invalid_signature"), tampered
    bare_path = signed_headers(key, secret, b"", path=MESSAGES, method="GET")
    response = api_client.generic("GET", f"{MESSAGES}?{query}", **bare_path)
    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")
    # Percent-encoding is signed as sent (the raw query string).
    since = "since=2000-01-01T00%3A00%3A00Z"
    assert signed_get(api_client, key, secret, MESSAGES, since).status_code == 200


def test_without_a_query_the_canonical_string_is_unchanged():
    secret, timestamp, body = "bss_secret", "2025-01-01T00:00:00Z", b'{"a":1}'
    before = f"POST\n/api/v1/coordination\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    expected = hmac.new(secret.encode(), before, hashlib.sha256).hexdigest()
    assert signing.sign(secret, "POST", "/api/v1/coordination", timestamp, body) == expected
    with_query = f"GET\n/x?b=2&a=%20\n{timestamp}\n{hashlib.sha256(b'').hexdigest()}".encode()
    assert (
        signing.sign(secret, "GET", "/x?b=2&a=%20", timestamp, b"")
        == hmac.new(secret.encode(), with_query, hashlib.sha256).hexdigest()
    )
    assert signing.request_target("/x", "a=1") == "/x?a=1"
    assert signing.request_target("/x", "") == signing.request_target("/x?") == "/x"


def test_a_signed_write_covers_its_body_on_any_endpoint(api_client, new_agent):
    """The agents API reads the body for the signature too (an agent may not write there: 403 once authenticated)."""
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    path = f"{AGENTS}{new_agent.agent.pk}/rotate-key/"
    raw = b'{"grace_seconds": 0}'
    headers = signed_headers(key, secret, raw, path=path)
    authenticated = api_client.generic("POST", path, raw, content_type="application/json", **headers)
    assert authenticated.status_code == 403, authenticated.content
    tampered = api_client.generic("POST", path, b'{"grace_seconds": 9}', content_type="application/json", **headers)
    assert (tampered.status_code, tampered.json()["code"]) == (401, "invalid_signature")
    assert new_agent.agent.api_keys.count() == 1


def test_unsigned_key_requests_still_work_when_not_required(api_client, new_agent, settings):
    settings.BRIKK_HMAC_REQUIRED = False
    response = api_client.get(MESSAGES, {"status": "delivered"}, HTTP_X_BRIKK_KEY=new_agent.key.plaintext)
    assert response.status_code == 200


def test_users_do_not_sign(api_client, owner, settings):
    settings.BRIKK_HMAC_REQUIRED = True
    api_client.force_login(owner)
    assert api_client.get(AGENTS).status_code == 200
    assert api_client.get(MESSAGES).status_code == 200
