"""Layer 1, the request guards: JSON only (415), a bounded body (413), well-formed JSON (400).

``GuardedJSONParser`` is the API's only parser (DEFAULT_PARSER_CLASSES). The echo runs ``enforce`` before
authentication (EchoView.initial). The raw body bytes are kept on the request, which the HMAC layer signs
over (``read_body``, on any endpoint), so the body is read exactly once and never beyond the limit.
"""

import json

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from brikk.lib.errors import PayloadTooLarge, ProtocolError

RAW_BODY_ATTRIBUTE = "brikk_raw_body"
READ_CHUNK_BYTES = 65536


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body exceeds {limit} bytes.", details={"max_bytes": limit})


def read_bounded(stream, limit: int) -> bytes:
    """At most ``limit`` bytes from ``stream``; 413 as soon as one more byte arrives."""
    chunks, size = [], 0
    while True:
        chunk = stream.read(min(READ_CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)


class GuardedJSONParser(JSONParser):
    """DRF's JSON parser with a size bound, strict JSON and the raw bytes kept on the request."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        raw = read_bounded(stream, settings.BRIKK_MAX_BODY_BYTES) if stream is not None else b""
        if request is not None:
            setattr(request, RAW_BODY_ATTRIBUTE, raw)
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"The body is not valid JSON: {exc}") from None


def is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def enforce(request) -> None:
    """Run the guards on a request that carries a body; afterwards ``raw_body(request)`` is set."""
    if not is_json(request.content_type or ""):
        raise exceptions.UnsupportedMediaType(request.content_type or "(none)")
    limit = settings.BRIKK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ProtocolError("Content-Length is not a number.") from None
    if declared > limit:
        raise _too_large(limit)  # refused before a single body byte is read
    if declared <= 0:
        raise ProtocolError("The request body is empty; send a JSON envelope.")
    request.data  # noqa: B018 - parsing now is the guard; GuardedJSONParser stores the raw bytes


def raw_body(request) -> bytes:
    return getattr(request, RAW_BODY_ATTRIBUTE, b"")


def read_body(request) -> bytes:
    """The raw body of a DRF request, as received. If nothing has read it yet, it is read now through
    GuardedJSONParser (so the guards apply: 415, 413, 400); a request without a body gives ``b""``."""
    if not hasattr(request, RAW_BODY_ATTRIBUTE):
        request.data  # noqa: B018 - parsing stores the raw bytes on the request
    return raw_body(request)
