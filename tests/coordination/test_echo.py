"""The echo through every layer, on the embedded defaults and (make test-services) PostgreSQL + Redis."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import services as agent_services
from agents import signing
from agents.models import Agent, Membership
from audit.models import AuditLog
from coordination.answers import answer_of
from coordination.models import IdempotencyRecord, MessageLog
from tests.support.coordination import ECHO_PATH, encode, envelope, post_echo, signed_headers

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def _error(response, status, code, request_id=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code
    assert set(body) == {"code", "message", "request_id", "details"}
    assert body["request_id"] == response["X-Request-ID"]
    if request_id:
        assert body["request_id"] == request_id
    return body


def test_signed_echo_round_trip_sync(api_client, new_agent, peer):
    body = envelope(new_agent.agent, peer.agent, payload={"n": 1, "nested": {"ok": True}})
    response = post_echo(
        api_client,
        body,
        key=new_agent.key.plaintext,
        secret=new_agent.signing_secret,
        HTTP_X_REQUEST_ID="req-echo-0001",
    )
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["status"] == "delivered"
    assert answer["envelope"] == body
    assert answer["correlation_id"] == "req-echo-0001" == response["X-Request-ID"]
    assert answer["auth"] == {
        "organization_id": str(new_agent.agent.organization_id),
        "agent_id": str(new_agent.agent.pk),
        "auth_method": "hmac",
    }
    assert answer["processing_ms"] >= 0
    assert answer["links"]["self"] == f"/api/v1/coordination/messages/{answer['id']}"
    # Security headers from SecurityMiddleware, and the rate-limit headers on a success.
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-RateLimit-Limit"] == "600"
    assert response["X-RateLimit-Remaining"] == "599"
    assert 1 <= int(response["X-RateLimit-Reset"]) <= 60
    assert response["RateLimit-Policy"] == '"caller";q=600;w=60, "organization";q=6000;w=60'
    assert response["RateLimit"].startswith('"caller";r=599;t=')

    message = MessageLog.objects.get(pk=answer["id"])
    assert message.status == "delivered" and message.http_status == 200 and message.attempts == 1
    assert message.sender_id == new_agent.agent.pk and message.recipient_id == peer.agent.pk
    assert message.request_body == body and message.response_body is None and answer_of(message) == answer
    assert message.correlation_id == "req-echo-0001"
    assert message.idempotency_key == body["message_id"]
    audit = AuditLog.objects.get(action="echo.delivered")
    assert audit.correlation_id == "req-echo-0001" and audit.resource_id == answer["id"]
    assert audit.actor_kind == "agent" and audit.actor_id == str(new_agent.agent.pk)
    record = IdempotencyRecord.objects.get(key=body["message_id"])
    assert record.response_status == 200 and record.message_id == message.pk
    assert record.response_body is None  # the answer is the message's, not stored twice


def test_trailing_slash_and_unix_timestamp(api_client, new_agent, peer):
    raw = encode(envelope(new_agent.agent, peer.agent))
    headers = signed_headers(
        new_agent.key.plaintext,
        new_agent.signing_secret,
        raw,
        path=ECHO_PATH + "/",
        timestamp=str(int(timezone.now().timestamp())),
    )
    response = api_client.generic("POST", ECHO_PATH + "/", raw, content_type="application/json", **headers)
    assert response.status_code == 200, response.content


def test_unsigned_key_request_is_allowed_unless_hmac_required(api_client, new_agent, peer, settings):
    response = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext)
    assert response.status_code == 200
    assert response.json()["auth"]["auth_method"] == "api_key"

    settings.BRIKK_HMAC_REQUIRED = True
    response = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext)
    _error(response, 401, "invalid_signature")
    assert AuditLog.objects.filter(action="auth.failed", details__reason="invalid_signature").count() == 1
    assert not MessageLog.objects.filter(status="rejected").exists()


def test_bad_signatures_are_refused(api_client, new_agent, peer):
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    raw = encode(envelope(new_agent.agent, peer.agent))
    headers = signed_headers(key, secret, raw)
    # A tampered body, a wrong secret, a malformed header: all 401 invalid_signature.
    tampered = raw.replace(b"world", b"w0rld")
    response = api_client.generic("POST", ECHO_PATH, tampered, content_type="application/json", **headers)
    _error(response, 401, "invalid_signature")
    wrong = signed_headers(key, "bss_not-the-secret", raw)
    _error(
        api_client.generic("POST", ECHO_PATH, raw, content_type="application/json", **wrong), 401, "invalid_signature"
    )
    malformed = {**headers, "HTTP_X_BRIKK_SIGNATURE": "sha256=abc"}
    _error(
        api_client.generic("POST", ECHO_PATH, raw, content_type="application/json", **malformed),
        401,
        "invalid_signature",
    )
    # Signed for another path: refused.
    other = signed_headers(key, secret, raw, path="/api/v1/agents/")
    _error(
        api_client.generic("POST", ECHO_PATH, raw, content_type="application/json", **other), 401, "invalid_signature"
    )
    # A signature without its timestamp.
    no_ts = {k: v for k, v in headers.items() if k != "HTTP_X_BRIKK_TIMESTAMP"}
    _error(api_client.generic("POST", ECHO_PATH, raw, content_type="application/json", **no_ts), 401, "timestamp_error")
    # The signature is checked even when the key is also wrong: unknown key wins with 401 unauthorized.
    bad_key = {**headers, "HTTP_X_BRIKK_KEY": "brk_0123456789ab." + "z" * 43}
    _error(api_client.generic("POST", ECHO_PATH, raw, content_type="application/json", **bad_key), 401, "unauthorized")
    reasons = sorted(AuditLog.objects.filter(action="auth.failed").values_list("details__reason", flat=True))
    assert reasons == ["invalid_signature"] * 4 + ["timestamp_error", "unknown"]
    assert secret not in json.dumps(list(AuditLog.objects.values_list("details", flat=True)))
    assert MessageLog.objects.count() == 0


# Two seconds of margin either side of the ±300 s edge, and a fractional timestamp: truncating to whole
# seconds plus a slow machine's request time would otherwise push -299 s past the edge.
@pytest.mark.parametrize("offset, accepted", [(-298, True), (298, True), (-302, False), (302, False)])
def test_timestamp_window(api_client, new_agent, peer, offset, accepted):
    raw = encode(envelope(new_agent.agent, peer.agent))
    stamp = (timezone.now() + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    headers = signed_headers(new_agent.key.plaintext, new_agent.signing_secret, raw, timestamp=stamp)
    response = api_client.generic("POST", ECHO_PATH, raw, content_type="application/json", **headers)
    if accepted:
        assert response.status_code == 200, response.content
    else:
        body = _error(response, 401, "timestamp_error")
        assert body["details"] == {"window_seconds": 300}


def test_malformed_timestamp(api_client, new_agent, peer):
    raw = encode(envelope(new_agent.agent, peer.agent))
    headers = signed_headers(new_agent.key.plaintext, new_agent.signing_secret, raw, timestamp="2025-01-01 00:00:00")
    _error(
        api_client.generic("POST", ECHO_PATH, raw, content_type="application/json", **headers), 401, "timestamp_error"
    )


def test_signing_secret_rotation(api_client, new_agent, peer):
    agent, key, old_secret = new_agent.agent, new_agent.key.plaintext, new_agent.signing_secret
    # Warm the cache with the old secret, then rotate: the new secret works at once, the old one
    # during the grace period, both together (several v1= values), and the old one not after it.
    assert post_echo(api_client, envelope(agent, peer.agent), key=key, secret=old_secret).status_code == 200
    new_secret = agent_services.rotate_signing_secret(agent, grace_seconds=600)
    assert post_echo(api_client, envelope(agent, peer.agent), key=key, secret=new_secret).status_code == 200
    assert post_echo(api_client, envelope(agent, peer.agent), key=key, secret=old_secret).status_code == 200
    raw = encode(envelope(agent, peer.agent))
    stamp = signing.now_timestamp()
    both = signing.signature_header(
        signing.sign("bss_unrelated", "POST", ECHO_PATH, stamp, raw),
        signing.sign(new_secret, "POST", ECHO_PATH, stamp, raw),
    )
    response = api_client.generic(
        "POST", ECHO_PATH, raw, content_type="application/json",
        HTTP_X_BRIKK_KEY=key, HTTP_X_BRIKK_TIMESTAMP=stamp, HTTP_X_BRIKK_SIGNATURE=both,
    )  # fmt: skip
    assert response.status_code == 200, response.content

    Agent.objects.filter(pk=agent.pk).update(previous_signing_secret_expires_at=timezone.now() - timedelta(seconds=1))
    agent.refresh_from_db()
    agent.save()  # any save invalidates the cached signing context
    _error(post_echo(api_client, envelope(agent, peer.agent), key=key, secret=old_secret), 401, "invalid_signature")
    assert post_echo(api_client, envelope(agent, peer.agent), key=key, secret=new_secret).status_code == 200


@pytest.mark.parametrize("case", ["unknown", "revoked", "expired", "maintenance", "missing"])
def test_refused_credentials(api_client, new_agent, peer, case):
    key = new_agent.key.plaintext
    agent = new_agent.agent
    if case == "unknown":
        key = "brk_0123456789ab." + "q" * 43
    elif case == "revoked":
        agent_services.revoke_keys(agent)
    elif case == "expired":
        new_agent.key.api_key.__class__.objects.filter(pk=new_agent.key.api_key.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    elif case == "maintenance":
        agent_services.update_agent(agent, status=Agent.Status.MAINTENANCE)
    body = envelope(agent, peer.agent)
    if case == "missing":
        response = post_echo(api_client, body)
    else:
        response = post_echo(api_client, body, key=key, secret=new_agent.signing_secret)
    _error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == 'Bearer realm="brikk"'
    assert AuditLog.objects.filter(action="auth.failed").count() == 1
    assert MessageLog.objects.count() == 0


def test_request_guards(api_client, new_agent, peer, settings):
    settings.BRIKK_MAX_BODY_BYTES = 2048
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    ok = envelope(new_agent.agent, peer.agent)
    _error(post_echo(api_client, ok, key=key, secret=secret, content_type="text/plain"), 415, "unsupported_media_type")
    _error(
        post_echo(api_client, b"a=1", key=key, content_type="application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    )
    big = envelope(new_agent.agent, peer.agent, payload={"blob": "x" * 4096})
    body = _error(post_echo(api_client, big, key=key, secret=secret), 413, "payload_too_large")
    assert body["details"] == {"max_bytes": 2048}
    _error(post_echo(api_client, b'{"version": "1.0",', key=key, secret=secret), 400, "protocol_error")
    _error(post_echo(api_client, b'{"payload": NaN}', key=key, secret=secret), 400, "protocol_error")
    _error(post_echo(api_client, b"", key=key, secret=secret), 400, "protocol_error")
    # The guards run before authentication: a bad key with a bad body is a 400, not a 401.
    _error(post_echo(api_client, b"{oops", key="brk_0123456789ab." + "z" * 43), 400, "protocol_error")
    rejected = AuditLog.objects.filter(action="request.rejected")
    assert sorted(rejected.values_list("details__code", flat=True)) == sorted(
        ["unsupported_media_type"] * 2 + ["payload_too_large"] + ["protocol_error"] * 4
    )
    assert MessageLog.objects.count() == 0


def test_oversized_body_is_refused_from_content_length_before_reading(new_agent, settings):
    from django.test import RequestFactory
    from rest_framework.request import Request

    from brikk.lib import parsers

    settings.BRIKK_MAX_BODY_BYTES = 1024

    class Exploding:
        def read(self, *args):
            raise AssertionError("the body must not be read")

    django_request = RequestFactory().post(ECHO_PATH, b"{}", content_type="application/json")
    django_request.META["CONTENT_LENGTH"] = "999999"
    django_request._stream = Exploding()
    request = Request(django_request, parsers=[parsers.GuardedJSONParser()])
    with pytest.raises(parsers.PayloadTooLarge):
        parsers.enforce(request)


def test_validation_names_every_bad_field(api_client, new_agent, peer):
    body = envelope(
        new_agent.agent,
        peer.agent,
        version="2.0",
        message_id="not-a-uuid",
        ts="2025-01-01T00:00:00+01:00",
        type="shout",
        ttl_ms=0,
        payload=[1, 2],
        extra="nope",
        recipient={"agent_id": str(peer.agent.pk), "colour": "red"},
    )
    response = post_echo(api_client, body, key=new_agent.key.plaintext, secret=new_agent.signing_secret)
    details = _error(response, 422, "validation_error")["details"]
    assert set(details) == {"version", "message_id", "ts", "type", "ttl_ms", "payload", "extra", "recipient"}
    assert details["recipient"] == {"colour": ["Unknown field."]}
    message = MessageLog.objects.get()
    assert message.status == "rejected" and message.http_status == 422
    assert message.response_body["code"] == "validation_error"
    assert AuditLog.objects.get(action="echo.rejected").correlation_id == response["X-Request-ID"]
    # A non-object envelope, and missing required fields.
    details = _error(post_echo(api_client, [1], key=new_agent.key.plaintext), 422, "validation_error")["details"]
    assert "non_field_errors" in details
    details = _error(post_echo(api_client, {}, key=new_agent.key.plaintext), 422, "validation_error")["details"]
    assert set(details) == {"message_id", "ts", "sender", "recipient", "payload"}


def test_v4_message_ids_are_accepted_but_not_v1(api_client, new_agent, peer):
    import uuid

    key = new_agent.key.plaintext
    assert (
        post_echo(api_client, envelope(new_agent.agent, peer.agent, message_id=str(uuid.uuid4())), key=key).status_code
        == 200
    )
    response = post_echo(api_client, envelope(new_agent.agent, peer.agent, message_id=str(uuid.uuid1())), key=key)
    assert set(_error(response, 422, "validation_error")["details"]) == {"message_id"}


def test_sender_and_recipient_rules(api_client, new_agent, peer, make_org, make_agent):
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    # Sending as another agent of the organization: 403.
    body = _error(
        post_echo(api_client, envelope(peer.agent, new_agent.agent), key=key, secret=secret), 403, "forbidden"
    )
    assert body["details"] == {"sender": {"agent_id": ["Must be the authenticated agent."]}}
    # Naming another organization: 403.
    other_org = make_org("Other")
    stranger = make_agent(other_org, name="stranger")
    cross = envelope(
        new_agent.agent, peer.agent, recipient={"agent_id": str(peer.agent.pk), "org_id": str(other_org.pk)}
    )
    _error(post_echo(api_client, cross, key=key, secret=secret), 403, "forbidden")
    # A recipient of another organization, or inactive, or unknown: 422 on recipient.
    for recipient_id in (stranger.agent.pk, "018f0000-0000-7000-8000-000000000000"):
        bad = envelope(new_agent.agent, peer.agent, recipient={"agent_id": str(recipient_id)})
        details = _error(post_echo(api_client, bad, key=key, secret=secret), 422, "validation_error")["details"]
        assert details == {"recipient": {"agent_id": ["Not an active agent of your organization."]}}
    agent_services.update_agent(peer.agent, status=Agent.Status.MAINTENANCE)
    _error(
        post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, secret=secret), 422, "validation_error"
    )
    assert MessageLog.objects.filter(status="rejected").count() == 5
    assert AuditLog.objects.filter(action="echo.rejected").count() == 5
    assert MessageLog.objects.filter(status="rejected", http_status=403, sender=peer.agent).count() == 1


def _jwt(api_client, username) -> str:
    token = api_client.post(
        "/api/v1/auth/token/", {"username": username, "password": "correct-horse-battery"}, format="json"
    )
    return f"Bearer {token.json()['access']}"


def test_user_with_jwt_sends_as_an_agent_of_their_organization(api_client, owner, new_agent, peer):
    response = post_echo(
        api_client, envelope(new_agent.agent, peer.agent), HTTP_AUTHORIZATION=_jwt(api_client, "owner")
    )
    assert response.status_code == 200, response.content
    assert response.json()["auth"] == {
        "organization_id": str(new_agent.agent.organization_id),
        "agent_id": None,
        "user_id": str(owner.pk),
        "auth_method": "jwt",
    }
    assert MessageLog.objects.get().actor_kind == "user"


def test_members_read_but_never_send(api_client, member, new_agent, peer):
    """Sending as an agent needs the owner or admin role, by JWT or session (the dashboard's echo test)."""
    bearer = _jwt(api_client, "member")
    refused = post_echo(api_client, envelope(new_agent.agent, peer.agent), HTTP_AUTHORIZATION=bearer)
    _error(refused, 403, "forbidden")
    assert "owner or admin" in refused.json()["message"]
    api_client.force_login(member)
    _error(post_echo(api_client, envelope(new_agent.agent, peer.agent)), 403, "forbidden")
    assert not MessageLog.objects.exclude(status="rejected").exists()
    assert MessageLog.objects.filter(status="rejected", http_status=403, actor_kind="user").count() == 2
    assert AuditLog.objects.filter(action="permission.denied", actor_id=str(member.pk)).count() == 2
    # Reading is still theirs.
    assert api_client.get("/api/v1/coordination/messages", HTTP_AUTHORIZATION=bearer).status_code == 200


def test_a_person_sending_as_an_agent_counts_in_that_agents_window(api_client, org, owner, new_agent, peer):
    from coordination import throttling

    throttling.local_window.clear()
    org.rate_limit_agent_per_minute = 2
    org.save()
    key = new_agent.key.plaintext
    assert [post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key).status_code for _ in range(2)] == [
        200,
        200,
    ]
    bearer = _jwt(api_client, "owner")
    as_alpha = post_echo(api_client, envelope(new_agent.agent, peer.agent), HTTP_AUTHORIZATION=bearer)
    _error(as_alpha, 429, "rate_limited")
    assert as_alpha["RateLimit"].startswith('"caller";r=0;')
    # Sending as another agent uses that agent's own window.
    assert post_echo(api_client, envelope(peer.agent, new_agent.agent), HTTP_AUTHORIZATION=bearer).status_code == 200


def test_a_users_idempotency_keys_are_per_organization(api_client, make_org, make_user, make_agent):
    """The same key in two organizations is two operations: never a replay of the other's answer."""
    first, second = make_org("First"), make_org("Second")
    user = make_user("both", first, "admin")
    from agents import services as agent_services

    agent_services.add_member(second, user, "admin")
    bearer = _jwt(api_client, "both")
    answers = []
    for organization in (first, second):
        a, b = make_agent(organization), make_agent(organization)
        answers.append(
            post_echo(
                api_client,
                envelope(a.agent, b.agent),
                HTTP_AUTHORIZATION=bearer,
                HTTP_IDEMPOTENCY_KEY="order-42",
                HTTP_X_BRIKK_ORGANIZATION=str(organization.pk),
            )
        )
    assert [answer.status_code for answer in answers] == [200, 200]
    assert "Idempotent-Replayed" not in answers[1]
    assert answers[0].json()["id"] != answers[1].json()["id"]
    assert MessageLog.objects.filter(organization=second, status="delivered").count() == 1
    assert not AuditLog.objects.filter(action="idempotency.replayed").exists()


def test_replay_returns_the_stored_answer_and_processes_nothing_twice(api_client, new_agent, peer):
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    body = envelope(new_agent.agent, peer.agent)
    first = post_echo(api_client, body, key=key, secret=secret)
    again = post_echo(api_client, body, key=key, secret=secret, HTTP_X_REQUEST_ID="req-replay-0001")
    assert first.status_code == again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert again.json() == first.json()
    assert MessageLog.objects.count() == 1
    assert AuditLog.objects.get(action="idempotency.replayed").correlation_id == "req-replay-0001"

    changed = {**body, "payload": {"different": True}}
    response = post_echo(api_client, changed, key=key, secret=secret)
    assert _error(response, 422, "idempotency_key_reused")["details"] == {"idempotency_key": body["message_id"]}
    assert AuditLog.objects.filter(action="idempotency.conflict").count() == 1
    assert MessageLog.objects.filter(status="rejected", http_status=422).count() == 1


def test_idempotency_key_header_scopes_operations(api_client, new_agent, peer):
    key = new_agent.key.plaintext
    first = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, HTTP_IDEMPOTENCY_KEY="op-1")
    second = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, HTTP_IDEMPOTENCY_KEY="op-2")
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] != second.json()["id"]
    # The fingerprint is what is asked, not when: a new message_id, ts and nonce are the same operation...
    again = post_echo(
        api_client, envelope(new_agent.agent, peer.agent, nonce="n-2"), key=key, HTTP_IDEMPOTENCY_KEY="op-1"
    )
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    # ...another payload, type or recipient is not.
    for change in ({"payload": {"other": 1}}, {"type": "event"}, {"ttl_ms": 5000}):
        _error(post_echo(api_client, envelope(new_agent.agent, peer.agent, **change), key=key,
                         HTTP_IDEMPOTENCY_KEY="op-1"), 422, "idempotency_key_reused")  # fmt: skip
    _error(post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key, HTTP_IDEMPOTENCY_KEY="x" * 256), 422,
           "validation_error")  # fmt: skip


def test_a_refused_request_leaves_no_key_behind(api_client, new_agent, peer):
    body = envelope(new_agent.agent, peer.agent)
    bad = {**body, "ttl_ms": 0}
    _error(post_echo(api_client, bad, key=new_agent.key.plaintext), 422, "validation_error")
    assert not IdempotencyRecord.objects.exists()
    assert MessageLog.objects.get().status == "rejected"
    # The corrected retry, with the same key (message_id), goes through.
    assert post_echo(api_client, body, key=new_agent.key.plaintext).status_code == 200
    assert IdempotencyRecord.objects.get().key == body["message_id"]


def test_idempotency_can_be_switched_off(api_client, new_agent, peer, settings):
    settings.BRIKK_IDEMPOTENCY_ENABLED = False
    for _ in range(2):
        assert (
            post_echo(api_client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext).status_code == 200
        )
    assert MessageLog.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()
    # Without replay a repeat is not answered from storage, but message_id stays unique per sender.
    repeat = MessageLog.objects.first().request_body
    _error(post_echo(api_client, repeat, key=new_agent.key.plaintext), 422, "message_id_reused")
    assert MessageLog.objects.filter(status="delivered").count() == 2


def test_rate_limit_per_agent_with_headers(api_client, org, owner, new_agent, peer, make_user):
    from coordination import throttling

    throttling.local_window.clear()
    org.rate_limit_agent_per_minute = 3
    org.save()
    key = new_agent.key.plaintext
    statuses = [post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert [r["X-RateLimit-Remaining"] for r in statuses] == ["2", "1", "0", "0"]
    refused = statuses[-1]
    _error(refused, 429, "rate_limited")
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["X-RateLimit-Limit"] == "3"
    assert refused["RateLimit"].startswith('"caller";r=0;t=')
    assert AuditLog.objects.filter(action="rate_limit.refused").count() == 1
    assert MessageLog.objects.filter(status="rejected", http_status=429).count() == 1


def test_rate_limit_per_organization_and_switch(api_client, org, new_agent, peer, settings):
    from coordination import throttling

    throttling.local_window.clear()
    org.rate_limit_org_per_minute = 2
    org.save()
    key = new_agent.key.plaintext
    codes = [post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    settings.BRIKK_RATE_LIMIT_ENABLED = False
    response = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=key)
    assert response.status_code == 200 and "X-RateLimit-Limit" not in response


def test_messages_list_filters_pagination_and_detail(api_client, new_agent, peer, make_org, make_agent, member):
    key = new_agent.key.plaintext
    for kind in ("message", "event", "event"):
        post_echo(api_client, envelope(new_agent.agent, peer.agent, type=kind), key=key)
    post_echo(api_client, envelope(new_agent.agent, peer.agent, ttl_ms=0), key=key)  # rejected
    other = make_agent(make_org("Elsewhere"), name="x")
    post_echo(api_client, envelope(other.agent, other.agent), key=other.key.plaintext)

    url = "/api/v1/coordination/messages"
    listed = api_client.get(url, HTTP_X_BRIKK_KEY=key).json()
    assert len(listed["results"]) == 4
    assert {m["organization_id"] for m in listed["results"]} == {str(new_agent.agent.organization_id)}
    assert len(api_client.get(url, {"type": "event"}, HTTP_X_BRIKK_KEY=key).json()["results"]) == 2
    assert len(api_client.get(url, {"status": "rejected"}, HTTP_X_BRIKK_KEY=key).json()["results"]) == 1
    assert len(api_client.get(url, {"agent": str(peer.agent.pk)}, HTTP_X_BRIKK_KEY=key).json()["results"]) == 4
    since = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert api_client.get(url, {"since": since}, HTTP_X_BRIKK_KEY=key).json()["results"] == []
    _error(api_client.get(url, {"status": "lost"}, HTTP_X_BRIKK_KEY=key), 422, "validation_error")
    page = api_client.get(url, {"page_size": 3}, HTTP_X_BRIKK_KEY=key).json()
    rest = api_client.get(page["next"], HTTP_X_BRIKK_KEY=key).json()
    assert len(page["results"]) == 3 and len(rest["results"]) == 1 and rest["next"] is None
    assert {m["id"] for m in page["results"] + rest["results"]} == {m["id"] for m in listed["results"]}

    mine = listed["results"][0]["id"]
    api_client.force_login(member)  # a member of the organization reads too
    detail = api_client.get(f"{url}/{mine}")
    assert detail.status_code == 200
    assert detail.json()["status"] == "rejected" and detail.json()["request_body"]["ttl_ms"] == 0
    assert detail.json()["response_body"]["code"] == "validation_error"
    foreign = MessageLog.objects.get(organization=other.agent.organization).pk
    _error(api_client.get(f"{url}/{foreign}"), 404, "not_found")
    api_client.logout()
    _error(api_client.get(url), 401, "unauthorized")


def test_health_reports_version_and_flags(api_client, settings):
    settings.BRIKK_HMAC_REQUIRED = True
    response = api_client.get("/api/v1/coordination/health")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == settings.BRIKK_VERSION
    assert body["flags"] == {
        "hmac_required": True,
        "rate_limit_enabled": True,
        "rate_limit_fail_open": True,
        "idempotency_enabled": True,
        "async_default": False,
    }
    assert "secret" not in response.content.decode().lower()


def test_a_user_outside_any_organization_is_forbidden(api_client, make_user, new_agent, peer):
    stranger = make_user("stranger")
    api_client.force_login(stranger)
    response = post_echo(api_client, envelope(new_agent.agent, peer.agent))
    _error(response, 403, "forbidden")
    assert AuditLog.objects.filter(action="permission.denied").count() == 1
    assert MessageLog.objects.count() == 0
    assert Membership.objects.filter(user=stranger).count() == 0
