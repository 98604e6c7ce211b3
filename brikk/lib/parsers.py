"""Layer 1, the request guards, for every API endpoint: JSON only (415), a bounded body (413), well-formed
JSON (400 ``protocol_error``), and nothing this service cannot take (422 ``validation_error``, with details
naming where, like any validation error): no NUL, lone surrogate or non-finite number anywhere in the body
(keys included), no nesting past ``BRIKK_MAX_JSON_DEPTH`` (brikk/lib/values.py), no control character in a
header, no NUL in a query parameter.

``GuardedJSONParser`` is the API's only parser (DEFAULT_PARSER_CLASSES), so simplejwt's token views parse
through it too. The header and query guards run in ``GuardedContentNegotiation``
(DEFAULT_CONTENT_NEGOTIATION_CLASS), the first step of every DRF view's ``initial()``, before
authentication. The echo runs ``enforce`` (all guards) before authentication too (EchoView.initial). The raw
body bytes are kept on the request, which the HMAC layer signs over (``read_body``, on any endpoint), so the
body is read exactly once and never beyond the limit.
"""

import re

from django.conf import settings
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser

from brikk.lib import values
from brikk.lib.errors import PayloadTooLarge, ProtocolError, UnacceptableValue

RAW_BODY_ATTRIBUTE = "brikk_raw_body"
GUARDED_ATTRIBUTE = "brikk_request_guarded"
READ_CHUNK_BYTES = 65536
# RFC 9110 field values: visible characters, space and tab; a control character (NUL first of all) is a
# malformed request, refused rather than passed on to the database or a log.
_HEADER_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
# WSGI names of headers that are not HTTP_*.
_PLAIN_HEADERS = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}


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
            return values.loads(raw.decode("utf-8"))
        except values.UnacceptableJSON as unacceptable:
            problem = unacceptable.problem
            raise UnacceptableValue(problem.field_errors(), problem.reason) from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"The body is not valid JSON: {exc}", details={"reason": "invalid_json"}) from None


def is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def _header_name(meta_name: str) -> str:
    return _PLAIN_HEADERS.get(meta_name) or meta_name.removeprefix("HTTP_").replace("_", "-").title()


def guard_request(request) -> None:
    """422 for a header value with a control character or a query parameter with a NUL. The value itself
    is never repeated (it may be a credential); the header or parameter is named."""
    if getattr(request, GUARDED_ATTRIBUTE, False):
        return
    meta = request.META
    for name, value in meta.items():
        is_header = name.startswith("HTTP_") or name in _PLAIN_HEADERS
        if is_header and isinstance(value, str) and _HEADER_CONTROL.search(value):
            message = "Control characters (such as NUL) are not accepted in a header."
            raise UnacceptableValue({_header_name(name): [message]}, "control_character")
    for name, items in request.GET.lists():
        if values.NUL in name or any(values.NUL in item for item in items):
            problem = values.Problem("nul_character", (name,))
            raise UnacceptableValue(problem.field_errors(), problem.reason)
    setattr(request, GUARDED_ATTRIBUTE, True)


class GuardedContentNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation, after the header and query guards: negotiation is the first thing every
    API view does (``APIView.initial``), before authentication, so no view or third-party view skips them."""

    def select_renderer(self, request, renderers, format_suffix=None):
        guard_request(request)
        return super().select_renderer(request, renderers, format_suffix)


def enforce(request) -> None:
    """Run the guards on a request that carries a body; afterwards ``raw_body(request)`` is set."""
    guard_request(request)
    if not is_json(request.content_type or ""):
        raise exceptions.UnsupportedMediaType(request.content_type or "(none)")
    limit = settings.BRIKK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ProtocolError("Content-Length is not a number.", details={"reason": "invalid_content_length"}) from None
    if declared > limit:
        raise _too_large(limit)  # refused before a single body byte is read
    if declared <= 0:
        raise ProtocolError("The request body is empty; send a JSON envelope.", details={"reason": "empty_body"})
    request.data  # noqa: B018 - parsing now is the guard; GuardedJSONParser stores the raw bytes


def raw_body(request) -> bytes:
    return getattr(request, RAW_BODY_ATTRIBUTE, b"")


def read_body(request) -> bytes:
    """The raw body of a DRF request, as received. If nothing has read it yet, it is read now through
    GuardedJSONParser (so the guards apply: 415, 413, 400); a request without a body gives ``b""``."""
    if not hasattr(request, RAW_BODY_ATTRIBUTE):
        request.data  # noqa: B018 - parsing stores the raw bytes on the request
    return raw_body(request)
