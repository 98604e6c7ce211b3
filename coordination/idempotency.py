"""Layer 5, idempotency and replay, inside the echo's one database transaction.

On PostgreSQL the transaction first takes a transaction-scoped advisory lock named by (scope, key):
if another transaction holds it, a request with this key is in flight → 409 idempotency_in_progress.
Holding it, the completed record for the key is looked up: the same request hash gets the stored
answer back (``Idempotent-Replayed``), a different hash 422 idempotency_key_reused. Otherwise the
echo runs and its completed record is inserted together with the message and audit rows; the commit
releases the lock. SQLite serializes writing transactions (``BEGIN IMMEDIATE``), so no lock is needed.

A delivered echo's record keeps no copy of the answer: its message's row holds it (answers.answer_of, from
columns never changed after delivery), and a replay answers from there. An accepted (async) echo's record
keeps its 202 answer, since processing gives the message another.

On both, the unique constraint on (scope, key) is the durable backstop: an insert that loses a race
rolls the whole echo back, and ``answer_conflict`` answers from the record that won. A refused
request rolls back too, so it never leaves a key behind that would block a corrected retry.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
from django.conf import settings
from django.db import connection
from django.utils import timezone

from brikk.lib import bulk
from coordination.answers import answer_of
from coordination.exceptions import IdempotencyInProgress, IdempotencyKeyReused
from coordination.models import IdempotencyRecord, MessageLog

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict


@dataclass(frozen=True)
class Operation:
    """One request's claim on a key: who (scope), which key, and the hash of what was asked (``request_hash`` of
    ``data``, the request's body)."""

    organization_id: str
    scope: str
    key: str
    digest: str
    data: object = field(default=None, compare=False, repr=False)

    @classmethod
    def asking(cls, organization_id: str, scope: str, key: str, data) -> "Operation":
        """The claim of a request whose body is ``data``: its fingerprint made here, the body kept for ``matches``."""
        return cls(organization_id, scope, key, request_hash(data), data)

    def matches(self, stored_hash: str) -> bool:
        """Whether a record's hash is of the same request: the current fingerprint, or, for a record written before
        it (no version prefix, within its window), the one it was written with."""
        if stored_hash == self.digest:
            return True
        return not stored_hash.startswith(FINGERPRINT_VERSION) and stored_hash == legacy_request_hash(self.data)


# Envelope fields that say when and how one attempt was sent, not what is asked: a client that sends
# the same operation again (a retry, a rerun of the same command) makes them anew.
PER_SEND_FIELDS = frozenset({"ts", "message_id", "nonce"})


# The fingerprint's version, the start of every hash it makes: a record written with another (none, before it) is
# compared with the hash that version makes (Operation.matches).
FINGERPRINT_VERSION = "2:"


def request_hash(data) -> str:
    """A hash of what the request asks for: the envelope without its per-send fields (``PER_SEND_FIELDS``),
    as JSON with sorted keys, so neither formatting nor the moment of sending matters. The same key with
    another sender, recipient, type, payload, ttl_ms or reply_to is a different operation (422).

    The JSON is orjson's, in C (the json module took a tenth of the batch send's CPU); the same request always
    gives the same text, and so the same hash. What orjson does not take (an integer past 64 bits) goes through
    the json module, as always for that request. BLAKE2b of 240 bits, in hex after the version: 62 characters."""
    data = _asked(data)
    try:
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return FINGERPRINT_VERSION + hashlib.blake2b(canonical, digest_size=30).hexdigest()


def legacy_request_hash(data) -> str:
    """The fingerprint before versions (SHA-256 of the json module's text): records written with it replay until
    their window ends (BRIKK_IDEMPOTENCY_TTL_SECONDS, a day by default); then this can go."""
    canonical = json.dumps(_asked(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _asked(data):
    if isinstance(data, dict):
        return {name: value for name, value in data.items() if name not in PER_SEND_FIELDS}
    return data


def lock_id(scope: str, key: str) -> int:
    """A signed 64-bit name for the (scope, key) advisory lock (PostgreSQL's bigint)."""
    digest = hashlib.blake2b(f"{scope}\0{key}".encode(), digest_size=8, person=b"brikk-idem").digest()
    return int.from_bytes(digest, "big", signed=True)


def begin(operation: Operation) -> Replay | None:
    """Inside the echo's transaction: the Replay of a completed earlier request, or None to go ahead.

    Raises 409 while another request with the key is in flight, 422 if the key was used with another body.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id(operation.scope, operation.key)])
            if not cursor.fetchone()[0]:
                raise IdempotencyInProgress(details={"idempotency_key": operation.key})
    existing = IdempotencyRecord.objects.for_key(operation.scope, operation.key)
    if existing is None:
        return None
    replay = None if existing.expires_at <= timezone.now() else _stored_answer(existing, operation)
    if replay is None:
        # Past its window (or with its answer gone, see _stored_answer) the key is free again: the new operation
        # replaces the record (the lock, or SQLite's write lock, makes this safe). Expired records of keys not
        # reused are archived and purged by retention (coordination/retention.py).
        IdempotencyRecord.objects.filter(pk=existing.pk).delete()
    return replay


def complete(operation: Operation, *, status: int, message, body: dict | None = None) -> None:
    """Store the answer, in the echo's transaction (a lost race raises IntegrityError here)."""
    completed_record(operation, status=status, message=message, body=body).save(force_insert=True)


def completed_record(operation: Operation, *, status: int, message=None, body: dict | None = None) -> IdempotencyRecord:
    """The record of the answer, unsaved (``complete`` saves it; the echo's one statement and the batch send
    insert it, linking ``message`` themselves). ``body``: the answer, only when ``message`` does not keep it
    (the async 202); otherwise the message's answer (answers.answer_of) is the record's, not stored twice (a
    third of the batch send's PostgreSQL work on idempotency records went to parsing that copy)."""
    now = timezone.now()
    return bulk.instance(
        IdempotencyRecord,
        organization_id=operation.organization_id,
        scope=operation.scope,
        key=operation.key,
        request_hash=operation.digest,
        response_status=status,
        response_body=body,
        message_id=message.pk if message is not None else None,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.BRIKK_IDEMPOTENCY_TTL_SECONDS),
    )


def answer_conflict(operation: Operation) -> Replay | None:
    """After an echo was rolled back by a unique violation: the answer of the record that holds the key
    (replay or 422), or None if no live record holds it (the violation was not on this key)."""
    existing = IdempotencyRecord.objects.filter(
        scope=operation.scope, key=operation.key, expires_at__gt=timezone.now()
    ).first()
    return None if existing is None else _stored_answer(existing, operation)


def answered_id(record: IdempotencyRecord) -> str | None:
    """The message id the record's answer gave, without reading the answer (the batch send's replays): the stored
    answer's, else its message's; None when neither is left (the key is then free again, as in _stored_answer)."""
    if isinstance(record.response_body, dict):
        return record.response_body.get("id")
    return str(record.message_id) if record.message_id is not None else None


def _stored_answer(record: IdempotencyRecord, operation: Operation) -> Replay | None:
    """The record's answer (422 if the key was used with another request), or None if it is no longer kept:
    its message is gone, which retention never does while the record lives (coordination/retention.py)."""
    if not operation.matches(record.request_hash):
        raise IdempotencyKeyReused(details={"idempotency_key": operation.key})
    body = record.response_body
    if body is None and record.message_id is not None:
        message = MessageLog.objects.filter(pk=record.message_id).first()
        body = answer_of(message) if message is not None else None
    return None if body is None else Replay(status=record.response_status, body=body)
