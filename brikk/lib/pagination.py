import binascii
from base64 import b64decode
from datetime import UTC, datetime
from urllib import parse

from django.core.exceptions import ValidationError
from rest_framework.pagination import Cursor, CursorPagination

from brikk.lib.errors import ProtocolError
from brikk.lib.values import NUL

CURSOR_KEYS = frozenset({"o", "r", "p"})


def invalid_cursor() -> ProtocolError:
    return ProtocolError(
        "The cursor is not valid; follow the next/previous links, or start again without one.",
        details={"reason": "invalid_cursor"},
    )


class NewestFirstPagination(CursorPagination):
    """Cursor pagination on ``created_at``: stable under inserts and fast at any depth.

    A cursor is opaque and made by the server; one that does not decode to what the server makes (bad
    base64, unknown fields, an offset or direction that is not a number, a position that is not a value of
    the ordering field) is a 400 ``protocol_error`` with ``details.reason`` ``invalid_cursor``, never a
    404 or a database error."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        self.position_field = queryset.model._meta.get_field(self.ordering[0].lstrip("-"))
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            querystring = b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
            tokens = parse.parse_qs(querystring, keep_blank_values=True, strict_parsing=True)
            if not set(tokens) <= CURSOR_KEYS or any(len(values) != 1 for values in tokens.values()):
                raise invalid_cursor()
            offset = int(tokens.get("o", ["0"])[0])
            reverse = int(tokens.get("r", ["0"])[0])
            position = tokens.get("p", [None])[0]
        except (TypeError, ValueError, binascii.Error):
            raise invalid_cursor() from None
        if not 0 <= offset <= self.offset_cutoff or reverse not in (0, 1):
            raise invalid_cursor()
        if position is not None:
            self._check_position(position)
        return Cursor(offset=offset, reverse=bool(reverse), position=position)

    def _check_position(self, position: str) -> None:
        """The position is compared with the ordering field in SQL: it must be a value of that field."""
        field = getattr(self, "position_field", None)
        if NUL in position:
            raise invalid_cursor()
        if field is None:
            return
        try:
            value = field.to_python(position)
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    raise invalid_cursor()  # the server's positions are aware datetimes
                value.astimezone(UTC)  # in range once moved to UTC (SQLite stores UTC)
        except (ValidationError, ValueError, OverflowError):
            raise invalid_cursor() from None
        if value is None:
            raise invalid_cursor()
