"""HMAC request signing, Brikk envelope v1.0: the one definition both the server and the client use.

signature = hex(HMAC-SHA256(signing_secret, METHOD \\n PATH \\n TIMESTAMP \\n sha256_hex(raw body)))
sent as ``X-Brikk-Signature: v1=<hex>`` (several space-separated ``v1=`` values allowed, for secret
rotation) with ``X-Brikk-Timestamp`` (RFC 3339 UTC with ``Z``, or Unix seconds).

PATH is the request's path, plus ``?`` and the raw query string exactly as sent when there is one
(``request_target``); a request without a query signs its bare path, as before the query was covered.
Every request an agent authenticates with its key is checked against this (agents.authentication).

Standard library only: the Python client (coordination/client.py) imports it without Django.
"""

import hashlib
import hmac
import re
from datetime import UTC, datetime

TIMESTAMP_HEADER = "X-Brikk-Timestamp"
SIGNATURE_HEADER = "X-Brikk-Signature"
SCHEME = "v1"
_SIGNATURE_VALUE = re.compile(r"^v1=([0-9a-f]{64})$")
_RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_target(path: str, query: str = "") -> str:
    """The PATH line of the canonical string: ``path?query`` when there is a query, else ``path``.

    ``query`` is the raw query string as sent (percent-encoding and parameter order untouched). A path
    that already carries its query (``/x?a=1``) is kept as it is; a bare trailing ``?`` signs nothing.
    """
    if query:
        return f"{path}?{query}"
    return path.removesuffix("?")


def canonical_string(method: str, path: str, timestamp: str, body: bytes) -> bytes:
    """``path`` is the request target: the path, plus ``?`` and the raw query string if there is one."""
    return f"{method.upper()}\n{request_target(path)}\n{timestamp}\n{body_digest(body)}".encode()


def sign(secret: str, method: str, path: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), canonical_string(method, path, timestamp, body), hashlib.sha256).hexdigest()


def signature_header(*signatures: str) -> str:
    return " ".join(f"{SCHEME}={signature}" for signature in signatures)


def parse_signature_header(value: str) -> list[str]:
    """The hex signatures in an ``X-Brikk-Signature`` value; ValueError if any part is malformed."""
    parts = value.split()
    if not parts:
        raise ValueError("empty signature header")
    signatures = []
    for part in parts:
        match = _SIGNATURE_VALUE.match(part)
        if match is None:
            raise ValueError("signature values must look like v1=<64 lowercase hex digits>")
        signatures.append(match.group(1))
    return signatures


def parse_timestamp(value: str) -> datetime:
    """An aware UTC datetime from RFC 3339 UTC (``...Z``) or Unix seconds; ValueError otherwise."""
    value = value.strip()
    if value.isdigit():
        return datetime.fromtimestamp(int(value), tz=UTC)
    if not _RFC3339_UTC.match(value):
        raise ValueError("timestamp must be RFC 3339 UTC ending in Z, or Unix seconds")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def now_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches(secret: str, signatures: list[str], method: str, path: str, timestamp: str, body: bytes) -> bool:
    """True if any presented signature is right; each comparison is constant-time."""
    expected = sign(secret, method, path, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
