"""The key identity also carries signing secrets (encrypted) and plan limits, read with the key from the
database on every request: every change to what it is built from takes effect on the very next request.
Runs on both passes."""

import pytest

from agents import keys
from agents import services as agent_services
from coordination import throttling
from tests.support.coordination import envelope, post_echo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


@pytest.fixture(autouse=True)
def fresh_windows():
    throttling.local_window.clear()


def _echo(api_client, new_agent, peer, secret=None):
    return post_echo(
        api_client,
        envelope(new_agent.agent, peer.agent),
        key=new_agent.key.plaintext,
        secret=secret or new_agent.signing_secret,
    )


def test_the_identity_and_the_memo_hold_no_plaintext_secret(api_client, new_agent, peer):
    assert _echo(api_client, new_agent, peer).status_code == 200
    identity = keys.verify(new_agent.key.plaintext)  # the key remembered as verified: no hashing
    assert identity.signing_secrets() == [new_agent.signing_secret]
    held = repr(vars(identity)) + repr(keys.verified_keys._entries)
    secret = new_agent.key.plaintext.split(".", 1)[1]
    assert new_agent.signing_secret not in held and secret not in held


def test_signing_secret_rotation_without_grace_refuses_the_old_secret_at_once(api_client, new_agent, peer):
    assert _echo(api_client, new_agent, peer).status_code == 200
    new_secret = agent_services.rotate_signing_secret(new_agent.agent, grace_seconds=0)
    refused = _echo(api_client, new_agent, peer)
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_signature"
    assert _echo(api_client, new_agent, peer, secret=new_secret).status_code == 200


def test_a_plan_limit_change_takes_effect_on_the_next_request(api_client, org, new_agent, peer, settings):
    default = str(settings.BRIKK_RATE_LIMIT_AGENT_PER_MINUTE)
    assert _echo(api_client, new_agent, peer)["X-RateLimit-Limit"] == default  # now cached with the identity
    org.rate_limit_agent_per_minute = 2
    org.save()
    admitted = _echo(api_client, new_agent, peer)
    assert admitted.status_code == 200 and admitted["X-RateLimit-Limit"] == "2"
    refused = _echo(api_client, new_agent, peer)
    assert refused.status_code == 429 and refused["RateLimit"].startswith('"caller";r=0;t=')


def test_a_refusal_spends_neither_window(api_client, org, new_agent, peer):
    org.rate_limit_agent_per_minute = 3
    org.rate_limit_org_per_minute = 2
    org.save()
    statuses = [_echo(api_client, new_agent, peer) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[-1]["RateLimit"].startswith('"organization";r=0;t=')
    assert statuses[-1]["RateLimit-Policy"] == '"caller";q=3;w=60, "organization";q=2;w=60'
    org.rate_limit_org_per_minute = 100
    org.save()
    # The organization's refusal was not counted against the caller: exactly one more is admitted.
    assert [_echo(api_client, new_agent, peer).status_code for _ in range(2)] == [200, 429]


def test_a_deleted_key_is_refused_at_once(api_client, new_agent, peer):
    assert _echo(api_client, new_agent, peer).status_code == 200
    new_agent.key.api_key.delete()
    refused = _echo(api_client, new_agent, peer)
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
