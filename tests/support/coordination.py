"""Helpers for coordination tests: envelopes, signatures and raw requests through the full stack."""

import json
import uuid
from datetime import UTC, datetime

from uuid6 import uuid7

from agents import signing

ECHO_PATH = "/api/v1/coordination"


def envelope(from_agent, to_agent, **overrides) -> dict:
    body = {
        "version": "1.0",
        "message_id": str(uuid7()),
        "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "type": "message",
        "sender": {"agent_id": str(from_agent.pk)},
        "recipient": {"agent_id": str(to_agent.pk)},
        "payload": {"hello": "world"},
    }
    body.update(overrides)
    return body


def encode(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def signed_headers(key: str, secret: str, raw: bytes, *, path=ECHO_PATH, timestamp=None, method="POST") -> dict:
    """HTTP headers (as Django test-client META names) for an API key + HMAC-signed request.
    ``path`` is the request target: the path, plus ``?query`` as sent when there is one."""
    timestamp = timestamp or signing.now_timestamp()
    return {
        "HTTP_X_BRIKK_KEY": key,
        "HTTP_X_BRIKK_TIMESTAMP": timestamp,
        "HTTP_X_BRIKK_SIGNATURE": signing.signature_header(signing.sign(secret, method, path, timestamp, raw)),
    }


def post_echo(client, body, *, key=None, secret=None, path=ECHO_PATH, content_type="application/json", **headers):
    """POST raw bytes; signed when ``secret`` is given, else authenticated by key alone (if given)."""
    raw = encode(body)
    meta = dict(headers)
    if key and secret:
        meta = {**signed_headers(key, secret, raw, path=path), **meta}
    elif key:
        meta.setdefault("HTTP_X_BRIKK_KEY", key)
    return client.generic("POST", path, raw, content_type=content_type, **meta)


def new_request_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def signed_get(client, key: str, secret: str, path: str, query: str = "", **headers):
    """GET ``path?query`` (``query`` raw, as sent), signed over exactly that target."""
    target = f"{path}?{query}" if query else path
    meta = {**signed_headers(key, secret, b"", path=target, method="GET"), **headers}
    return client.generic("GET", target, **meta)
