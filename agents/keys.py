"""API key issuing and verification.

A key is ``brk_<prefix>.<secret>``, the secret 256 random bits. The database holds the prefix and a
salted PBKDF2-SHA256 hash of the secret. The database is the authority on every request: one indexed
query (``APIKey.objects.authentication_row``) reads the key's hash, revocation, expiry, its agent's status
and signing secrets (encrypted) and its organization's limits. Nothing about a key's validity is cached,
so a revocation, expiry or status change applies to the very next request whatever Redis is doing.

The secret is checked against the stored hash:

- without hashing, when this process has verified the same key against the same stored hash before (an
  in-process memo of the SHA-256 digest of the whole key, keyed by the stored hash);
- otherwise with PBKDF2 at ``BRIKK_API_KEY_PBKDF2_ITERATIONS``. A slow hash protects guessable passwords;
  against 256 random bits a single derivation is already out of reach, so the work factor is small and a
  wrong key costs well under a millisecond. An unknown prefix runs the same derivation on a dummy hash, so
  both refusals take the same time. Before any hashing, repeated failures per prefix and per client
  address are refused (agents.failures). A stored hash of another work factor is re-hashed on the key's
  next successful use.
"""

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone

from agents import crypto, failures
from agents.models import Agent, APIKey, KeyRow
from brikk.lib.context import current

KEY_PREFIX = "brk_"
PREFIX_LENGTH = 12
# last_used_at / last_activity_at are written at most this often per key.
TOUCH_INTERVAL = timedelta(seconds=60)
# Verified keys remembered per process (digests only, never a secret).
MEMO_SIZE = 4096


class KeyRejected(Exception):
    """The presented key does not authenticate. ``reason`` is safe to log and audit; ``organization_id``
    is the organization of a known prefix (its owner sees the failure), else None."""

    def __init__(self, reason: str, prefix: str = "", organization_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.prefix = prefix
        self.organization_id = organization_id


class KeyThrottled(Exception):
    """Refused before hashing: too many failed attempts for the prefix or from the client address."""

    def __init__(self, refusal: failures.Refused, prefix: str = "", organization_id: str | None = None):
        super().__init__(refusal.scope)
        self.scope = refusal.scope
        self.retry_after = refusal.retry_after
        self.prefix = prefix
        self.organization_id = organization_id


@dataclass(frozen=True)
class KeyIdentity:
    """What a verified key proves (which key, agent and organization) and what signing and rate
    limiting need about that agent, all from this request's read of the database. Holds no plaintext
    secret (signing secrets stay encrypted until a signature is checked)."""

    api_key_id: str
    prefix: str
    agent_id: str
    agent_name: str
    organization_id: str
    expires_at: datetime | None
    signing_secret_encrypted: str
    previous_signing_secret_encrypted: str
    previous_signing_secret_expires_at: datetime | None
    rate_limit_agent_per_minute: int | None
    rate_limit_org_per_minute: int | None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets a signature may use: the current one, and the previous one until it expires."""
        secrets = [crypto.decrypt(self.signing_secret_encrypted)]
        expires_at = self.previous_signing_secret_expires_at
        if self.previous_signing_secret_encrypted and expires_at and (now or timezone.now()) < expires_at:
            secrets.append(crypto.decrypt(self.previous_signing_secret_encrypted))
        return secrets


class _Hasher(PBKDF2PasswordHasher):
    """Django's PBKDF2-SHA256 with the work factor from settings (each hash records its own)."""

    @property
    def iterations(self):
        return settings.BRIKK_API_KEY_PBKDF2_ITERATIONS


_hasher = _Hasher()


@lru_cache(maxsize=8)
def _dummy_hash(iterations: int) -> str:
    """A hash no secret matches, verified for an unknown prefix so that it costs what a wrong secret does."""
    return _hasher.encode(secrets.token_urlsafe(32), _hasher.salt(), iterations)


class _VerifiedKeys:
    """Which presented key (by SHA-256 digest) matched which stored hash, in this process.

    Keyed by the stored hash, so an entry can never outlive a change of it (rotation issues a new row,
    a re-hash writes a new hash). It says only that the secret is right: the key's validity is read from
    the database on every request all the same."""

    def __init__(self, size: int):
        self._size = size
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def holds(self, hashed_secret: str, presented_digest: str) -> bool:
        known = self._entries.get(hashed_secret)
        return known is not None and hmac.compare_digest(known, presented_digest)

    def add(self, hashed_secret: str, presented_digest: str) -> None:
        with self._lock:
            self._entries[hashed_secret] = presented_digest
            self._entries.move_to_end(hashed_secret)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_keys = _VerifiedKeys(MEMO_SIZE)


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


def hash_secret(secret: str) -> str:
    return _hasher.encode(secret, _hasher.salt())


def generate() -> tuple[str, str, str]:
    """A new (full key, prefix, hashed secret)."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}{prefix}.{secret}", prefix, hash_secret(secret)


def verify(presented: str, client_ip: str | None = None) -> KeyIdentity:
    """The identity a key proves, or KeyRejected (malformed, unknown, revoked, expired, agent_inactive), or
    KeyThrottled. ``client_ip`` defaults to the request context's (brikk.lib.context.client_ip)."""
    prefix, secret = split_key(presented)
    address = client_ip if client_ip is not None else current().client_ip
    row = APIKey.objects.authentication_row(prefix)
    organization_id = str(row.organization_id) if row is not None else None
    presented_digest = digest(presented)

    if row is None or not verified_keys.holds(row.hashed_secret, presented_digest):
        counted = failures.attempt(prefix if row is not None else None, address)
        if counted.refused is not None:
            raise KeyThrottled(counted.refused, prefix, organization_id)
        stored = row.hashed_secret if row is not None else _dummy_hash(_hasher.iterations)
        if not _hasher.verify(secret, stored) or row is None:
            raise KeyRejected("unknown", prefix, organization_id)  # the attempt stays counted: a failure
        failures.succeeded(counted)
        verified_keys.add(row.hashed_secret, presented_digest)
        rehash = _hasher.must_update(row.hashed_secret)
    else:
        rehash = False

    now = timezone.now()
    if row.revoked_at is not None:
        raise KeyRejected("revoked", prefix, organization_id)
    if row.expires_at is not None and row.expires_at <= now:
        raise KeyRejected("expired", prefix, organization_id)
    if row.agent_status not in Agent.AUTHENTICATING_STATUSES:
        raise KeyRejected("agent_inactive", prefix, organization_id)
    if rehash:
        _rehash(row, secret, presented_digest)
    _touch(row, now)
    return _identity(row, prefix)


def still_valid(identity: KeyIdentity, now: datetime | None = None) -> bool:
    """For a long-lived request (an inbox stream), checked again while it lasts: the key it was opened with
    is neither revoked nor expired, and its agent still authenticates."""
    row = APIKey.objects.authentication_row(identity.prefix)
    now = now or timezone.now()
    return (
        row is not None
        and str(row.id) == identity.api_key_id
        and row.revoked_at is None
        and (row.expires_at is None or row.expires_at > now)
        and row.agent_status in Agent.AUTHENTICATING_STATUSES
    )


def _rehash(row: KeyRow, secret: str, presented_digest: str) -> None:
    """Store the secret's hash at the current work factor (only if nobody changed it meanwhile)."""
    rehashed = hash_secret(secret)
    if APIKey.objects.filter(pk=row.id, hashed_secret=row.hashed_secret).update(hashed_secret=rehashed):
        verified_keys.add(rehashed, presented_digest)


def _touch(row: KeyRow, now: datetime) -> None:
    """Record use on the key and activity on the agent, at most once a minute per key."""
    if row.last_used_at is not None and now - row.last_used_at < TOUCH_INTERVAL:
        return
    APIKey.objects.filter(pk=row.id).update(last_used_at=now)
    Agent.objects.filter(pk=row.agent_id).update(last_activity_at=now)


def _identity(row: KeyRow, prefix: str) -> KeyIdentity:
    return KeyIdentity(
        api_key_id=str(row.id),
        prefix=prefix,
        agent_id=str(row.agent_id),
        agent_name=row.agent_name,
        organization_id=str(row.organization_id),
        expires_at=row.expires_at,
        signing_secret_encrypted=row.signing_secret_encrypted,
        previous_signing_secret_encrypted=row.previous_signing_secret_encrypted,
        previous_signing_secret_expires_at=row.previous_signing_secret_expires_at,
        rate_limit_agent_per_minute=row.rate_limit_agent_per_minute,
        rate_limit_org_per_minute=row.rate_limit_org_per_minute,
    )
