"""API keys: shown once, stored hashed, refused when wrong/expired/revoked/rotated out, cached safely."""

import base64
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import keys, services
from agents.models import Agent, APIKey
from audit.models import AuditLog

pytestmark = pytest.mark.django_db

AGENTS_URL = "/api/v1/agents/"


def auth(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_key_is_returned_once_and_only_its_hash_is_stored(api_client, owner):
    api_client.force_authenticate(owner)
    response = api_client.post(AGENTS_URL, {"name": "bot"}, format="json")
    assert response.status_code == 201
    plaintext = response.json()["api_key"]
    prefix, secret = keys.split_key(plaintext)

    stored = APIKey.objects.get(prefix=prefix)
    assert secret not in stored.hashed_secret
    assert stored.hashed_secret.startswith("pbkdf2_sha256$")
    # A second hash of the same secret differs: the hash is salted.
    assert keys._hasher.encode(secret, keys._hasher.salt()) != stored.hashed_secret

    detail = api_client.get(f"{AGENTS_URL}{response.json()['agent']['id']}/")
    assert plaintext not in detail.content.decode()
    assert secret not in detail.content.decode()
    assert "hashed_secret" not in detail.content.decode()


def test_production_work_factor_is_chosen_for_a_256_bit_random_secret():
    """Issue 9: not Django's password factor (a million, ~0.6 s here); the secret is 256 random bits."""
    from brikk import settings as module

    assert module.BRIKK_API_KEY_PBKDF2_ITERATIONS == 100
    _, _, secret = keys.generate()[0].partition(".")
    assert len(base64.urlsafe_b64decode(secret + "=")) * 8 == 256


@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_X_API_KEY"])
def test_agent_authenticates_with_bearer_or_x_api_key(api_client, new_agent, header):
    value = new_agent.key.plaintext
    if header == "HTTP_AUTHORIZATION":
        value = f"Bearer {value}"
    response = api_client.get(AGENTS_URL, **{header: value})
    assert response.status_code == 200
    assert [a["name"] for a in response.json()["results"]] == ["alpha"]


def _assert_refused(api_client, key, reason):
    response = api_client.get(AGENTS_URL, **auth(key), HTTP_X_REQUEST_ID="req-refused-0001")
    assert response.status_code == 401, response.content
    body = response.json()
    assert body["code"] == "unauthorized"
    assert body["request_id"] == "req-refused-0001"
    row = AuditLog.objects.get(action="auth.failed", correlation_id="req-refused-0001")
    assert row.outcome == "failure"
    assert row.details["reason"] == reason
    assert key not in str(row.details)
    return body


def test_wrong_key_is_refused_and_audited(api_client, new_agent):
    prefix, _ = keys.split_key(new_agent.key.plaintext)
    _assert_refused(api_client, f"brk_{prefix}.{'x' * 43}", "unknown")


def test_unknown_prefix_is_refused(api_client, db):
    _assert_refused(api_client, "brk_0123456789ab." + "y" * 43, "unknown")


def test_malformed_key_is_refused(api_client, db):
    _assert_refused(api_client, "brk_nonsense", "malformed")


def test_expired_key_is_refused(api_client, new_agent):
    APIKey.objects.filter(pk=new_agent.key.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _assert_refused(api_client, new_agent.key.plaintext, "expired")


def test_revoked_key_is_refused(api_client, new_agent):
    services.revoke_keys(new_agent.agent)
    _assert_refused(api_client, new_agent.key.plaintext, "revoked")


def test_revocation_applies_to_the_very_next_request(api_client, new_agent):
    assert api_client.get(AGENTS_URL, **auth(new_agent.key.plaintext)).status_code == 200
    # The second request is answered without hashing (the process remembers the verified key).
    assert api_client.get(AGENTS_URL, **auth(new_agent.key.plaintext)).status_code == 200
    services.revoke_keys(new_agent.agent)
    _assert_refused(api_client, new_agent.key.plaintext, "revoked")


def test_a_verified_key_costs_no_pbkdf2_the_second_time(new_agent, monkeypatch):
    keys.verify(new_agent.key.plaintext)
    calls = []
    monkeypatch.setattr(keys._hasher, "verify", lambda *a: calls.append(a) or True)
    identity = keys.verify(new_agent.key.plaintext)
    assert identity.agent_id == str(new_agent.agent.pk)
    assert calls == []


def test_the_memo_does_not_accept_a_different_secret_with_the_same_prefix(new_agent):
    keys.verify(new_agent.key.plaintext)
    prefix, _ = keys.split_key(new_agent.key.plaintext)
    with pytest.raises(keys.KeyRejected) as rejected:
        keys.verify(f"brk_{prefix}.{'z' * 43}")
    assert rejected.value.reason == "unknown"


def test_agent_status_change_applies_at_once(api_client, new_agent):
    assert api_client.get(AGENTS_URL, **auth(new_agent.key.plaintext)).status_code == 200
    services.update_agent(new_agent.agent, status=Agent.Status.MAINTENANCE)
    _assert_refused(api_client, new_agent.key.plaintext, "agent_inactive")


def test_soft_deleted_agent_key_is_refused(api_client, new_agent):
    assert api_client.get(AGENTS_URL, **auth(new_agent.key.plaintext)).status_code == 200
    services.soft_delete_agent(new_agent.agent)
    _assert_refused(api_client, new_agent.key.plaintext, "revoked")


def test_rotation_keeps_old_key_for_grace_then_refuses_it(api_client, new_agent):
    old = new_agent.key.plaintext
    assert api_client.get(AGENTS_URL, **auth(old)).status_code == 200
    issued = services.rotate_key(new_agent.agent, grace_seconds=600)
    assert api_client.get(AGENTS_URL, **auth(old)).status_code == 200
    assert api_client.get(AGENTS_URL, **auth(issued.plaintext)).status_code == 200
    # The grace period ends: the old key is rotated out.
    APIKey.objects.filter(prefix=keys.split_key(old)[0]).update(expires_at=timezone.now() - timedelta(seconds=1))
    _assert_refused(api_client, old, "expired")
    assert api_client.get(AGENTS_URL, **auth(issued.plaintext)).status_code == 200


def test_rotation_without_grace_refuses_the_old_key_immediately(api_client, new_agent):
    old = new_agent.key.plaintext
    assert api_client.get(AGENTS_URL, **auth(old)).status_code == 200
    services.rotate_key(new_agent.agent, grace_seconds=0)
    _assert_refused(api_client, old, "revoked")


def test_a_verified_key_is_refused_once_it_expires(new_agent):
    soon = timezone.now() + timedelta(seconds=30)
    APIKey.objects.filter(pk=new_agent.key.api_key.pk).update(expires_at=soon)
    identity = keys.verify(new_agent.key.plaintext)
    assert identity.is_expired(soon + timedelta(seconds=1))
    APIKey.objects.filter(pk=new_agent.key.api_key.pk).update(expires_at=timezone.now())
    with pytest.raises(keys.KeyRejected) as rejected:
        keys.verify(new_agent.key.plaintext)  # remembered as verified, and still refused
    assert rejected.value.reason == "expired"


def test_last_used_and_last_activity_are_recorded(api_client, new_agent):
    assert api_client.get(AGENTS_URL, **auth(new_agent.key.plaintext)).status_code == 200
    new_agent.key.api_key.refresh_from_db()
    new_agent.agent.refresh_from_db()
    assert new_agent.key.api_key.last_used_at is not None
    assert new_agent.agent.last_activity_at is not None


def test_signing_secret_is_stored_encrypted(new_agent):
    from agents import crypto

    stored = Agent.objects.get(pk=new_agent.agent.pk).signing_secret_encrypted
    assert new_agent.signing_secret not in stored
    assert crypto.decrypt(stored) == new_agent.signing_secret
