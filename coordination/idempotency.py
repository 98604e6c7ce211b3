"""Layer 5, idempotency and replay, durable in PostgreSQL.

The first request for a (scope, key) inserts an ``in_progress`` IdempotencyRecord and wins (the
unique constraint decides under concurrency); the echo transaction then completes it with the
response. A repeat with the same request hash gets that response back (``Idempotent-Replayed``),
with a different hash 422 idempotency_key_reused, and while the first is in flight 409
idempotency_in_progress. A refused or failed first attempt releases its claim.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from coordination.exceptions import IdempotencyInProgress, IdempotencyKeyReused
from coordination.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# An in-progress claim older than this is from a crashed request; a new attempt may take it over.
STALE_CLAIM_SECONDS = 120


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict


def request_hash(data) -> str:
    """A hash of the request's meaning: the JSON with sorted keys, so formatting does not matter."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(*, organization_id, scope: str, key: str, digest: str) -> IdempotencyRecord | Replay:
    """The new in-progress record if this request is first, else the Replay of the completed one."""
    now = timezone.now()
    for _ in range(3):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    organization_id=organization_id,
                    scope=scope,
                    key=key,
                    request_hash=digest,
                    expires_at=now + timedelta(seconds=settings.BRIKK_IDEMPOTENCY_TTL_SECONDS),
                )
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
        if existing is None:
            continue  # released between our insert and our read: try again
        if existing.expires_at <= now or _is_stale(existing, now):
            IdempotencyRecord.objects.filter(
                pk=existing.pk, state=existing.state, created_at=existing.created_at
            ).delete()
            continue
        if existing.request_hash != digest:
            raise IdempotencyKeyReused(details={"idempotency_key": key})
        if existing.state == IdempotencyRecord.State.IN_PROGRESS:
            raise IdempotencyInProgress(details={"idempotency_key": key})
        return Replay(status=existing.response_status, body=existing.response_body)
    raise IdempotencyInProgress(details={"idempotency_key": key})


def _is_stale(record: IdempotencyRecord, now) -> bool:
    return record.state == IdempotencyRecord.State.IN_PROGRESS and record.created_at <= now - timedelta(
        seconds=STALE_CLAIM_SECONDS
    )


def complete(record: IdempotencyRecord, *, status: int, body: dict, message=None) -> None:
    """Store the answer; called inside the echo's transaction."""
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.COMPLETED, response_status=status, response_body=body, message=message
    )


def release(record: IdempotencyRecord) -> None:
    """Forget a claim whose request was refused or failed, so a corrected retry can run."""
    IdempotencyRecord.objects.filter(pk=record.pk, state=IdempotencyRecord.State.IN_PROGRESS).delete()


def purge_expired(now=None) -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
