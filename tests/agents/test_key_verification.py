"""Issue 9, security point 2: verifying a key costs an attacker nothing. The work factor suits a 256-bit
random secret, stored hashes are re-hashed on their next successful use, an unknown prefix and a wrong
secret take the same time, and repeated failures per prefix and per client address are refused before any
hashing (429 rate_limited, Retry-After, audited)."""

import secrets
import statistics
import time
from urllib.parse import urlparse

import pytest
from django.conf import settings as live_settings
from django.test import override_settings
from django_redis import get_redis_connection

from agents import failures, keys, services
from agents.models import APIKey
from audit.models import AuditLog
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db

AGENTS_URL = "/api/v1/agents/"


def production_work_factor() -> int:
    """The factor a deployment runs with (the settings module's own value, before any test override)."""
    from brikk import settings as module

    return module.BRIKK_API_KEY_PBKDF2_ITERATIONS


@pytest.fixture
def production_agent(org, owner, settings):
    settings.BRIKK_API_KEY_PBKDF2_ITERATIONS = production_work_factor()
    return services.create_agent(org, name="production", owner=owner)


@pytest.fixture
def no_lockout(settings):
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX = 1_000_000
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS = 1_000_000


def wrong_secret(key: str) -> str:
    prefix, _ = keys.split_key(key)
    return f"brk_{prefix}.{secrets.token_urlsafe(32)}"


def unknown_prefix() -> str:
    return f"brk_{secrets.token_hex(6)}.{secrets.token_urlsafe(32)}"


def get(api_client, key, address="192.0.2.10"):
    return api_client.get(AGENTS_URL, HTTP_X_BRIKK_KEY=key, REMOTE_ADDR=address)


def _refused(presented):
    def call():
        with pytest.raises(keys.KeyRejected):
            keys.verify(presented, "192.0.2.10")

    return call


def test_the_production_work_factor_stays_one_a_random_secret_needs():
    """A 256-bit random secret needs no slow hash, and a slow one hands whoever sends wrong keys our CPU. What a
    refused verification costs is a figure printed by bench/key_verification.py (0.6 ms of CPU when measured), not
    a timed test: a shared machine's load decides timings. Each refusal runs exactly one derivation at this factor
    (test_an_unknown_prefix_runs_the_same_derivation_as_a_wrong_secret)."""
    assert 1 <= production_work_factor() <= 1_000


def test_an_unknown_prefix_and_a_wrong_secret_take_the_same_time(api_client, production_agent, no_lockout):
    """Whole requests, in pairs sent back to back: the median of the pairs' differences, so that the load of a
    shared machine, which drifts, falls on both alike."""

    def answer_ms(presented) -> float:
        started = time.perf_counter()
        assert get(api_client, presented).status_code == 401
        return (time.perf_counter() - started) * 1000

    for _ in range(3):  # warm: connections, prepared statements, the dummy hash
        answer_ms(wrong_secret(production_agent.key.plaintext)), answer_ms(unknown_prefix())
    differences = [
        answer_ms(wrong_secret(production_agent.key.plaintext)) - answer_ms(unknown_prefix()) for _ in range(40)
    ]
    assert abs(statistics.median(differences)) < 3.0, differences


def test_an_unknown_prefix_runs_the_same_derivation_as_a_wrong_secret(production_agent, no_lockout, monkeypatch):
    derived = []
    original = keys._hasher.verify

    def verify(secret, stored):
        derived.append(stored)
        return original(secret, stored)

    monkeypatch.setattr(keys._hasher, "verify", verify)
    _refused(wrong_secret(production_agent.key.plaintext))()
    _refused(unknown_prefix())()
    iterations = [encoded.split("$")[1] for encoded in derived]
    assert iterations == [str(production_work_factor())] * 2


def test_a_stored_hash_of_another_work_factor_is_rehashed_on_its_next_successful_use(org, owner, settings, no_lockout):
    settings.BRIKK_API_KEY_PBKDF2_ITERATIONS = 20_000  # as a key issued before this change (1,000,000) would be
    legacy = services.create_agent(org, name="legacy", owner=owner)
    stored = APIKey.objects.get(pk=legacy.key.api_key.pk)
    assert stored.hashed_secret.startswith("pbkdf2_sha256$20000$")
    settings.BRIKK_API_KEY_PBKDF2_ITERATIONS = production_work_factor()

    _refused(wrong_secret(legacy.key.plaintext))()  # a failure re-hashes nothing
    assert APIKey.objects.get(pk=stored.pk).hashed_secret == stored.hashed_secret

    assert keys.verify(legacy.key.plaintext).agent_id == str(legacy.agent.pk)
    rehashed = APIKey.objects.get(pk=stored.pk).hashed_secret
    assert rehashed.startswith(f"pbkdf2_sha256${production_work_factor()}$") and rehashed != stored.hashed_secret
    keys.verified_keys.clear()  # another process: verifies against the new hash
    assert keys.verify(legacy.key.plaintext).agent_id == str(legacy.agent.pk)
    _refused(wrong_secret(legacy.key.plaintext))()


def test_a_revoked_key_is_not_rehashed(org, owner, settings):
    settings.BRIKK_API_KEY_PBKDF2_ITERATIONS = 2000
    legacy = services.create_agent(org, name="legacy", owner=owner)
    settings.BRIKK_API_KEY_PBKDF2_ITERATIONS = production_work_factor()
    services.revoke_keys(legacy.agent)
    with pytest.raises(keys.KeyRejected):
        keys.verify(legacy.key.plaintext)
    assert APIKey.objects.get(pk=legacy.key.api_key.pk).hashed_secret.startswith("pbkdf2_sha256$2000$")


def _counting_hashes(monkeypatch) -> list:
    calls = []
    original = keys._hasher.verify
    monkeypatch.setattr(keys._hasher, "verify", lambda *args: calls.append(args) or original(*args))
    return calls


def test_repeated_failures_under_a_prefix_are_refused_before_hashing(api_client, new_agent, settings, monkeypatch):
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX = 3
    settings.BRIKK_API_KEY_FAILURE_WINDOW_SECONDS = 120
    hashes = _counting_hashes(monkeypatch)
    prefix = new_agent.key.api_key.prefix
    for attempt in range(3):  # from three addresses: the prefix is what is counted
        assert get(api_client, wrong_secret(new_agent.key.plaintext), f"198.51.100.{attempt}").status_code == 401
    assert len(hashes) == 3

    refused = api_client.get(
        AGENTS_URL, HTTP_X_BRIKK_KEY=wrong_secret(new_agent.key.plaintext), REMOTE_ADDR="198.51.100.9",
        HTTP_X_REQUEST_ID="throttled-prefix-01",
    )  # fmt: skip
    assert refused.status_code == 429, refused.content
    body = refused.json()
    assert body["code"] == "rate_limited" and body["details"]["scope"] == "prefix"
    assert 1 <= int(refused["Retry-After"]) <= 120 and body["details"]["retry_after"] == int(refused["Retry-After"])
    assert len(hashes) == 3  # no hashing for the refused attempt
    row = AuditLog.objects.get(action="auth.throttled", correlation_id="throttled-prefix-01")
    assert row.outcome == "denied" and row.organization_id == new_agent.agent.organization_id
    assert row.details["key_prefix"] == prefix and row.details["scope"] == "prefix"
    assert row.client_ip == "198.51.100.9"
    # Another prefix from the same addresses is not affected.
    assert get(api_client, unknown_prefix(), "198.51.100.9").status_code == 401


def test_repeated_failures_from_an_address_are_refused_before_hashing(api_client, db, settings, monkeypatch):
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS = 4
    hashes = _counting_hashes(monkeypatch)
    for _ in range(4):
        assert get(api_client, unknown_prefix(), "203.0.113.5").status_code == 401
    refused = get(api_client, unknown_prefix(), "203.0.113.5")
    assert refused.status_code == 429 and refused.json()["details"]["scope"] == "address"
    assert int(refused["Retry-After"]) >= 1
    assert len(hashes) == 4
    assert get(api_client, unknown_prefix(), "203.0.113.6").status_code == 401  # another address
    row = AuditLog.objects.get(action="auth.throttled")
    assert row.organization_id is None and row.details["scope"] == "address"


def test_failures_do_not_lock_out_a_key_already_verified(api_client, new_agent, settings):
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX = 2
    assert get(api_client, new_agent.key.plaintext, "192.0.2.1").status_code == 200
    for _ in range(2):
        assert get(api_client, wrong_secret(new_agent.key.plaintext), "192.0.2.66").status_code == 401
    assert get(api_client, wrong_secret(new_agent.key.plaintext), "192.0.2.66").status_code == 429
    assert get(api_client, new_agent.key.plaintext, "192.0.2.1").status_code == 200


def test_the_window_ends_and_the_prefix_is_checked_again(api_client, new_agent, settings):
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX = 1
    settings.BRIKK_API_KEY_FAILURE_WINDOW_SECONDS = 1
    assert get(api_client, wrong_secret(new_agent.key.plaintext)).status_code == 401
    assert get(api_client, wrong_secret(new_agent.key.plaintext)).status_code == 429
    time.sleep(1.1)
    assert get(api_client, new_agent.key.plaintext).status_code == 200


def test_the_right_secret_of_a_revoked_key_is_not_a_failure(api_client, new_agent, settings):
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX = 1
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS = 1
    services.revoke_keys(new_agent.agent)
    for _ in range(3):
        response = get(api_client, new_agent.key.plaintext)
        assert (response.status_code, response.json()["message"]) == (401, "The API key has been revoked.")


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX", "0", "below the minimum of 1"),
        ("BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS", "many", "is not an integer"),
        ("BRIKK_API_KEY_FAILURE_WINDOW_SECONDS", "100000", "above the maximum of 86400"),
        ("BRIKK_API_KEY_PBKDF2_ITERATIONS", "0", "below the minimum of 1"),
    ],
)
def test_the_limits_are_validated_settings(name, value, message):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DJANGO_DEBUG": "true", name: value}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**env, "DJANGO_SETTINGS_MODULE": "brikk.settings"},
        capture_output=True,
        text=True,
        cwd=live_settings.BASE_DIR,
    )
    assert result.returncode != 0
    assert name in result.stderr and message in result.stderr


# --- against the real Redis: the counts are shared by every worker, and outlive a Redis outage --------


@pytest.mark.pg_redis
def test_failure_counts_are_shared_by_every_worker_through_redis(api_client, new_agent, settings):
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX = 3
    prefix = new_agent.key.api_key.prefix
    for attempt in range(3):
        assert get(api_client, wrong_secret(new_agent.key.plaintext), f"198.51.100.{attempt}").status_code == 401
    redis = get_redis_connection("default")
    counter = f"{failures.NAMESPACE}prefix:{prefix}"
    assert int(redis.get(counter)) == 3
    assert 0 < redis.ttl(counter) <= settings.BRIKK_API_KEY_FAILURE_WINDOW_SECONDS
    failures.local_counters.clear()  # what another worker process knows locally: nothing
    assert get(api_client, wrong_secret(new_agent.key.plaintext), "198.51.100.77").status_code == 429


def _cache_through(proxy):
    cache = {**live_settings.CACHES["default"]}
    db = live_settings.REDIS_URL.rsplit("/", 1)[-1]
    cache["LOCATION"] = f"redis://127.0.0.1:{proxy.port}/{db}"
    return {"default": cache}


@pytest.mark.pg_redis
def test_failures_are_still_refused_while_redis_is_unreachable(api_client, new_agent, settings):
    settings.BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS = 3
    redis = urlparse(live_settings.REDIS_URL)
    with TcpProxy(redis.hostname, redis.port or 6379) as proxy, override_settings(CACHES=_cache_through(proxy)):
        proxy.cut()
        statuses = [get(api_client, unknown_prefix(), "203.0.113.50").status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        assert get(api_client, new_agent.key.plaintext, "203.0.113.51").status_code == 200
