"""Bad input on every endpoint (issue 9): a clear 4xx with the standard body, never a 500, and audited.

The guards live in one place (brikk/lib/parsers.py, rules in brikk/lib/values.py); these tests try each
class of value on several endpoints, before and after authentication. Both passes run them: on
PostgreSQL (make test-services) the same requests used to reach the database and answer 500.
"""

import json

import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from agents.models import Agent
from audit.models import AuditLog
from coordination.models import MessageLog
from tests.support.coordination import ECHO_PATH, envelope, post_echo

pytestmark = pytest.mark.django_db

AGENTS_PATH = "/api/v1/agents/"
MESSAGES_PATH = "/api/v1/coordination/messages"
TOKEN_PATH = "/api/v1/auth/token/"

NUL = "\x00"


@pytest.fixture
def client(client):
    client.raise_request_exception = False  # a 500 must show as a 500, not as the test's exception
    return client


@pytest.fixture
def peer(org, make_agent, owner):
    return make_agent(org, name="peer", owner=owner)


@pytest.fixture
def jwt(owner):
    return f"Bearer {RefreshToken.for_user(owner).access_token}"


def standard_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "request_id", "details"}
    assert body["code"] == code
    assert body["request_id"] == response["X-Request-ID"]
    return body


def substitute(body: dict, marker: str, literal: str) -> bytes:
    """``body`` as JSON with the string "marker" replaced by raw JSON text (what json.dumps cannot write)."""
    return json.dumps(body).replace(json.dumps(marker), literal).encode()


def envelope_with(new_agent, peer, payload) -> dict:
    return envelope(new_agent.agent, peer.agent, payload=payload)


BAD_VALUES = [
    pytest.param({"note": "a\u0000b"}, None, {"payload": {"note": ["NUL characters (\\u0000) are not accepted."]}},
                 id="nul-in-value"),
    pytest.param({"k\u0000": 1}, None, {"payload": {"k\\u0000": ["NUL characters (\\u0000) are not accepted."]}},
                 id="nul-in-key"),
    pytest.param({"note": "@@"}, '"\\ud800"',
                 {"payload": {"note": ["Unpaired surrogates (\\ud800-\\udfff) are not accepted."]}},
                 id="lone-surrogate"),
    pytest.param({"n": "@@"}, "1e999", None, id="non-finite-number"),
    pytest.param({"n": "@@"}, "[" * 40 + "]" * 40, None, id="nesting-past-the-limit"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "literal", "details"), BAD_VALUES)
def test_the_echo_refuses_unacceptable_values_before_authentication(client, new_agent, peer, payload, literal, details):
    body = envelope_with(new_agent, peer, payload)
    raw = substitute(body, "@@", literal) if literal else json.dumps(body).encode()
    # No credentials at all: the guard answers first, so nothing reaches authentication or the database.
    refused = standard_error(post_echo(client, raw), 422, "validation_error")
    if details:
        assert refused["details"] == details
    # With a valid key the same, and the refusal is audited (anonymous: it came before authentication).
    standard_error(post_echo(client, raw, key=new_agent.key.plaintext), 422, "validation_error")
    rows = AuditLog.objects.filter(action="request.rejected")
    assert rows.count() == 2
    assert {row.details["status"] for row in rows} == {422}
    assert {row.actor_kind for row in rows} == {"anonymous"}
    assert MessageLog.objects.count() == 0


@pytest.mark.parametrize("field", ["message_id", "nonce", "reply_to"])
def test_nul_in_an_envelope_field(client, new_agent, peer, field):
    body = envelope_with(new_agent, peer, {"ok": True})
    body[field] = f"x{NUL}y"
    refused = standard_error(post_echo(client, body, key=new_agent.key.plaintext), 422, "validation_error")
    assert refused["details"] == {field: ["NUL characters (\\u0000) are not accepted."]}


def test_deep_nesting_is_refused_on_every_endpoint_without_recursion(client, new_agent, jwt):
    deep = b"[" * 100_000 + b"]" * 100_000  # far past Python's recursion limit
    for path, headers in [
        (ECHO_PATH, {}),  # unauthenticated
        (TOKEN_PATH, {}),  # unauthenticated by design
        (AGENTS_PATH, {"HTTP_AUTHORIZATION": jwt}),
    ]:
        response = client.generic("POST", path, deep, content_type="application/json", **headers)
        body = standard_error(response, 422, "validation_error")
        assert body["details"] == {"non_field_errors": ["Arrays and objects may nest at most 32 levels deep."]}


def test_the_nesting_limit_is_a_setting(client, new_agent, peer, settings):
    settings.BRIKK_MAX_JSON_DEPTH = 3
    shallow = envelope_with(new_agent, peer, {"a": {"b": 1}})  # envelope, payload, a: 3 levels
    assert post_echo(client, shallow, key=new_agent.key.plaintext).status_code == 200
    deeper = envelope_with(new_agent, peer, {"a": {"b": {"c": 1}}})
    standard_error(post_echo(client, deeper, key=new_agent.key.plaintext), 422, "validation_error")


def test_the_token_endpoint_goes_through_the_same_parser(client, owner):
    for raw in (
        json.dumps({"username": f"owner{NUL}", "password": "x"}).encode(),
        b'{"username": "owner", "password": "\\ud800"}',
        b'{"username": "owner", "password": 1e999}',
    ):
        standard_error(client.post(TOKEN_PATH, raw, content_type="application/json"), 422, "validation_error")
    not_json = client.post(TOKEN_PATH, b'{"username": NaN}', content_type="application/json")
    standard_error(not_json, 400, "protocol_error")
    refresh = client.post(TOKEN_PATH, {"refresh": f"a{NUL}"}, content_type="application/json")
    standard_error(refresh, 422, "validation_error")


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": {"team": f"a{NUL}"}},
        {"metadata": {f"k{NUL}": 1}},
        {"name": f"n{NUL}"},
        {"description": f"d{NUL}"},
    ],
)
def test_agents_api_refuses_nul_with_422(client, jwt, new_agent, change):
    created = client.post(
        AGENTS_PATH, {"name": "fresh", **change}, content_type="application/json", HTTP_AUTHORIZATION=jwt
    )
    field = next(iter(change))
    assert field in standard_error(created, 422, "validation_error")["details"]
    patched = client.patch(
        f"{AGENTS_PATH}{new_agent.agent.pk}/", change, content_type="application/json", HTTP_AUTHORIZATION=jwt
    )
    standard_error(patched, 422, "validation_error")
    assert not Agent.objects.filter(name="fresh").exists()
    new_agent.agent.refresh_from_db()
    assert NUL not in json.dumps(new_agent.agent.metadata) + new_agent.agent.name + new_agent.agent.description
    # After authentication: audited with the caller as the actor.
    row = AuditLog.objects.filter(action="request.rejected").latest("created_at")
    assert row.actor_kind == "user"
    assert row.details["reason"] == "nul_character"


@pytest.mark.parametrize(
    ("header", "meta"),
    [
        ("X-Brikk-Key", "HTTP_X_BRIKK_KEY"),
        ("X-Api-Key", "HTTP_X_API_KEY"),
        ("Authorization", "HTTP_AUTHORIZATION"),
        ("Idempotency-Key", "HTTP_IDEMPOTENCY_KEY"),
        ("X-Request-Id", "HTTP_X_REQUEST_ID"),
        ("X-Brikk-Organization", "HTTP_X_BRIKK_ORGANIZATION"),
        ("User-Agent", "HTTP_USER_AGENT"),
    ],
)
def test_a_header_with_a_control_character_is_refused_by_name(client, new_agent, peer, header, meta):
    key = new_agent.key.plaintext
    value = f"{key}{NUL}" if header in ("X-Brikk-Key", "X-Api-Key") else f"Bearer {key}{NUL}"
    if header not in ("X-Brikk-Key", "X-Api-Key", "Authorization"):
        value = f"value{NUL}more"
    headers = {"HTTP_X_BRIKK_KEY": key, meta: value}
    for response in (
        post_echo(client, envelope_with(new_agent, peer, {}), **headers),
        client.get(MESSAGES_PATH, **headers),
        client.get("/api/v1/coordination/health", **{meta: value}),
    ):
        body = standard_error(response, 422, "validation_error")
        assert body["details"] == {header: ["Control characters (such as NUL) are not accepted in a header."]}
        assert NUL not in response.content.decode()  # the value (maybe a credential) is never repeated
    # Trailing NULs once verified as the key itself (PBKDF2/HMAC pad keys with zero bytes): not any more.
    assert MessageLog.objects.count() == 0


@pytest.mark.parametrize(
    "query",
    ["correlation_id=%00", "sender=%00", "status=%00", "since=%00", "page_size=%00", "cursor=%00", "x%00=1"],
)
def test_a_query_parameter_with_nul_is_refused(client, new_agent, query):
    for path in (MESSAGES_PATH, AGENTS_PATH):
        response = client.get(f"{path}?{query}", HTTP_X_BRIKK_KEY=new_agent.key.plaintext)
        body = standard_error(response, 422, "validation_error")
        (name,) = body["details"]
        assert body["details"][name] == ["NUL characters (\\u0000) are not accepted."]


def test_what_is_fine_still_goes_through(client, new_agent, peer):
    payload = {"emoji": "😀", "text": "tab\tand newline\n", "backslash": "\\u0000 as text", "n": 2.5}
    response = post_echo(client, envelope_with(new_agent, peer, payload), key=new_agent.key.plaintext)
    assert response.status_code == 200, response.content
    assert response.json()["envelope"]["payload"] == payload
    assert MessageLog.objects.get().request_body["payload"] == payload


@pytest.mark.pg_redis
def test_postgresql_stores_nothing_it_cannot_take(client, new_agent, peer, jwt):
    """On PostgreSQL these reached text and jsonb columns and answered 500 (a DataError), leaving no row."""
    key = new_agent.key.plaintext
    assert post_echo(client, envelope_with(new_agent, peer, {"x": NUL}), key=key).status_code == 422
    assert post_echo(client, envelope_with(new_agent, peer, {}) | {"message_id": NUL}, key=key).status_code == 422
    assert post_echo(client, envelope_with(new_agent, peer, {}), key=key, HTTP_IDEMPOTENCY_KEY=NUL).status_code == 422
    created = client.post(
        AGENTS_PATH, {"name": "m", "metadata": {"x": NUL}}, content_type="application/json", HTTP_AUTHORIZATION=jwt
    )
    assert created.status_code == 422
    assert client.get(f"{MESSAGES_PATH}?correlation_id=%00", HTTP_X_BRIKK_KEY=key).status_code == 422
    assert AuditLog.objects.filter(action="request.rejected").count() == 5


@pytest.mark.parametrize("query", ["since=0001-01-01T00:00:00%2B23:00", "until=9999-12-31T23:59:59-23:00"])
def test_a_date_time_filter_that_python_cannot_move_to_utc_is_a_422(client, new_agent, query):
    """SQLite's adapter converts to UTC and overflowed (500); PostgreSQL took it. Refused the same on both."""
    response = client.get(f"{MESSAGES_PATH}?{query}", HTTP_X_BRIKK_KEY=new_agent.key.plaintext)
    body = standard_error(response, 422, "validation_error")
    assert body["details"] == {query.split("=")[0]: ["Enter a date/time between years 1 and 9999 in UTC."]}
