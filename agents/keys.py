"""API key issuing and verification.

A key is ``brk_<prefix>.<secret>``. The database holds the prefix and a salted PBKDF2 hash of
the secret. Verifying costs one PBKDF2 derivation; after that a short-lived cache entry, keyed by
the prefix and holding a SHA-256 digest of the whole presented key, answers until it expires or is
invalidated. The entry also carries what the layers after authentication need about the agent (its
*encrypted* signing secrets, its organization's rate limits), so a signed, rate-limited request reads
the cache once. Rotation, revocation, expiry and any save of an API key, its agent or the agent's
organization invalidate it (services and the signals connected in agents.apps).
"""

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from agents import crypto
from agents.models import Agent, APIKey

KEY_PREFIX = "brk_"
PREFIX_LENGTH = 12
CACHE_NAMESPACE = "apikey:v2:"
# last_used_at / last_activity_at are written at most this often per key.
TOUCH_INTERVAL_SECONDS = 60


class KeyRejected(Exception):
    """The presented key does not authenticate. ``reason`` is safe to log and audit."""

    def __init__(self, reason: str, prefix: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.prefix = prefix


@dataclass(frozen=True)
class KeyIdentity:
    """What a verified key proves (which key, agent and organization) and what signing and rate
    limiting need about that agent. Cached; holds no plaintext secret (signing secrets stay encrypted)."""

    api_key_id: str
    prefix: str
    agent_id: str
    agent_name: str
    organization_id: str
    expires_at: str | None
    digest: str
    touched_at: float
    signing_secret_encrypted: str
    previous_signing_secret_encrypted: str
    previous_signing_secret_expires_at: str | None
    rate_limit_agent_per_minute: int | None
    rate_limit_org_per_minute: int | None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and datetime.fromisoformat(self.expires_at) <= now

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets a signature may use: the current one, and the previous one until it expires."""
        secrets = [crypto.decrypt(self.signing_secret_encrypted)]
        if self.previous_signing_secret_encrypted and self.previous_signing_secret_expires_at:
            expires_at = datetime.fromisoformat(self.previous_signing_secret_expires_at)
            if (now or timezone.now()) < expires_at:
                secrets.append(crypto.decrypt(self.previous_signing_secret_encrypted))
        return secrets


class _Hasher(PBKDF2PasswordHasher):
    """Django's PBKDF2-SHA256 with the work factor from settings (the hash records its own)."""

    @property
    def iterations(self):
        return settings.BRIKK_API_KEY_PBKDF2_ITERATIONS


_hasher = _Hasher()


def digest(presented: str) -> str:
    return hashlib.sha256(presented.encode()).hexdigest()


def split_key(presented: str) -> tuple[str, str]:
    """(prefix, secret) of a well-formed key, or KeyRejected('malformed')."""
    if not presented.startswith(KEY_PREFIX) or "." not in presented:
        raise KeyRejected("malformed")
    prefix, _, secret = presented[len(KEY_PREFIX) :].partition(".")
    if len(prefix) != PREFIX_LENGTH or not prefix.isalnum() or len(secret) < 20:
        raise KeyRejected("malformed")
    return prefix, secret


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


def generate() -> tuple[str, str, str]:
    """A new (full key, prefix, hashed secret)."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}{prefix}.{secret}", prefix, _hasher.encode(secret, _hasher.salt())


def _cache_key(prefix: str) -> str:
    return CACHE_NAMESPACE + prefix


def invalidate(*prefixes: str) -> None:
    """Drop the entries now and, inside a transaction, again after commit, so that a concurrent
    reader cannot re-cache the rows as they were before the change."""
    if not prefixes:
        return
    cache_keys = [_cache_key(prefix) for prefix in prefixes]
    cache.delete_many(cache_keys)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: cache.delete_many(cache_keys))


def invalidate_agent(agent: Agent) -> None:
    invalidate(*agent.api_keys.values_list("prefix", flat=True))


def invalidate_organization(organization_id) -> None:
    invalidate(*APIKey.objects.filter(agent__organization_id=organization_id).values_list("prefix", flat=True))


def _cache_timeout(expires_at: datetime | None, now: datetime) -> int:
    timeout = settings.BRIKK_API_KEY_CACHE_SECONDS
    if expires_at is not None:
        timeout = min(timeout, int((expires_at - now).total_seconds()))
    return max(timeout, 0)


def verify(presented: str) -> KeyIdentity:
    """The identity a key proves, or KeyRejected with reason malformed/unknown/expired/revoked/agent_inactive."""
    prefix, secret = split_key(presented)
    now = timezone.now()
    presented_digest = digest(presented)

    cached = cache.get(_cache_key(prefix))
    if cached is not None:
        identity = KeyIdentity(**cached)
        if hmac.compare_digest(identity.digest, presented_digest) and not identity.is_expired(now):
            return _touch(identity, now)

    key = APIKey.objects.select_related("agent__organization").filter(prefix=prefix).first()
    if key is None or not _hasher.verify(secret, key.hashed_secret):
        raise KeyRejected("unknown", prefix)
    if key.is_revoked:
        raise KeyRejected("revoked", prefix)
    if key.is_expired(now):
        raise KeyRejected("expired", prefix)
    if not key.agent.can_authenticate:
        raise KeyRejected("agent_inactive", prefix)

    agent, organization = key.agent, key.agent.organization
    previous_expires = agent.previous_signing_secret_expires_at
    identity = KeyIdentity(
        api_key_id=str(key.id),
        prefix=prefix,
        agent_id=str(key.agent_id),
        agent_name=agent.name,
        organization_id=str(agent.organization_id),
        expires_at=key.expires_at.isoformat() if key.expires_at else None,
        digest=presented_digest,
        touched_at=0.0,
        signing_secret_encrypted=agent.signing_secret_encrypted,
        previous_signing_secret_encrypted=agent.previous_signing_secret_encrypted,
        previous_signing_secret_expires_at=previous_expires.isoformat() if previous_expires else None,
        rate_limit_agent_per_minute=organization.rate_limit_agent_per_minute,
        rate_limit_org_per_minute=organization.rate_limit_org_per_minute,
    )
    identity = _touch(identity, now)
    timeout = _cache_timeout(key.expires_at, now)
    if timeout:
        cache.set(_cache_key(prefix), asdict(identity), timeout)
    return identity


def _touch(identity: KeyIdentity, now: datetime) -> KeyIdentity:
    """Record use on the key and activity on the agent, at most once a minute per key."""
    if now.timestamp() - identity.touched_at < TOUCH_INTERVAL_SECONDS:
        return identity
    APIKey.objects.filter(pk=identity.api_key_id).update(last_used_at=now)
    Agent.objects.filter(pk=identity.agent_id).update(last_activity_at=now)
    touched = KeyIdentity(**{**asdict(identity), "touched_at": now.timestamp()})
    if identity.touched_at:  # refresh the cached copy; a first verification caches it itself
        expires_at = datetime.fromisoformat(identity.expires_at) if identity.expires_at else None
        timeout = _cache_timeout(expires_at, now)
        if timeout:
            cache.set(_cache_key(identity.prefix), asdict(touched), timeout)
    return touched


# Signal receivers (connected in agents.apps): any saved or deleted row an identity was built from.


def on_api_key_changed(sender, instance, **kwargs):
    invalidate(instance.prefix)


def on_agent_saved(sender, instance, **kwargs):
    invalidate_agent(instance)


def on_organization_saved(sender, instance, **kwargs):
    invalidate_organization(instance.pk)
