"""Keyset ("cursor") pagination on (created_at, id), newest first.

Each page is one indexed range scan: ``WHERE (created_at, id) < (cursor)`` ordered by the same
pair and limited to page size + 1. No OFFSET and no COUNT(*), so page 10,000 of a million rows
costs what page 1 does.
"""

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

OLDER = "older"
NEWER = "newer"


def encode_cursor(created_at: datetime, pk) -> str:
    raw = f"{created_at.isoformat()}|{pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    """The (created_at, id) position in a cursor, or None for anything malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, pk = raw.partition("|")
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if created_at.tzinfo is None or not pk:
        return None
    return created_at, pk


@dataclass
class KeysetPage:
    items: list
    older_cursor: str | None
    newer_cursor: str | None

    @property
    def is_first(self) -> bool:
        return self.newer_cursor is None


def _pk_value(queryset, pk: str):
    field = queryset.model._meta.pk
    if field.get_internal_type() == "UUIDField":
        return uuid.UUID(pk)
    return field.to_python(pk)


def paginate(queryset, *, cursor: str | None = None, direction: str = OLDER, size: int = 50) -> KeysetPage:
    """One page of ``queryset`` newest first, after (OLDER) or before (NEWER) ``cursor``."""
    position = decode_cursor(cursor) if cursor else None
    if position is not None:
        try:
            created_at, pk = position[0], _pk_value(queryset, position[1])
        except (ValueError, TypeError):
            position = None
    if position is None:
        rows = list(queryset.order_by("-created_at", "-id")[: size + 1])
        has_older, has_newer = len(rows) > size, False
        rows = rows[:size]
    elif direction == NEWER:
        # The redundant bound gives PostgreSQL an index range; the OR alone would not.
        newer = Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=pk))
        rows = list(queryset.filter(newer).order_by("created_at", "id")[: size + 1])
        has_newer, has_older = len(rows) > size, True
        rows = list(reversed(rows[:size]))
    else:
        older = Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk))
        rows = list(queryset.filter(older).order_by("-created_at", "-id")[: size + 1])
        has_older, has_newer = len(rows) > size, True
        rows = rows[:size]
    if not rows:
        return KeysetPage(items=[], older_cursor=None, newer_cursor=None)
    return KeysetPage(
        items=rows,
        older_cursor=encode_cursor(rows[-1].created_at, rows[-1].pk) if has_older else None,
        newer_cursor=encode_cursor(rows[0].created_at, rows[0].pk) if has_newer else None,
    )
