"""A small Python client for the Brikk coordination API (envelope v1.0), and its command line.

    from coordination.client import BrikkClient

    with BrikkClient("http://127.0.0.1:8000", api_key="brk_...", signing_secret="...") as brikk:
        reply = brikk.echo(sender="<agent id>", recipient="<agent id>", payload={"hello": "world"})
        print(reply.body)

The body is serialized once and exactly those bytes are signed (``agents.signing``) and sent, with the
path and its query string as sent.
A retry re-sends the same bytes — same ``message_id``, same ``Idempotency-Key`` — with a fresh
signature timestamp, so the server processes the operation at most once whatever the network does.

The inbox: ``receive``, ``ack``, ``nack``, ``extend``, ``inbox_stats``, ``dead_letters``, ``redrive``, ``reply``;
``listen(handler)`` consumes the inbox stream (Server-Sent Events, ``SSEParser``), acking each message its handler
returns from, nacking one it raises on, and reconnecting with ``Last-Event-ID``.

Command line: ``python -m coordination.client echo --help`` (also ``batch``, ``receive``, ``ack``, ``nack``,
``stats``, ``listen``). ``send_batch`` sends many envelopes, a hundred per request. Depends only on httpx and
uuid6 (and the standard library); it does not import Django.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import uuid6

from agents import signing

__all__ = [
    "COORDINATION_PATH",
    "BrikkAPIError",
    "BrikkClient",
    "BrikkConnectionError",
    "BrikkError",
    "BrikkResponse",
    "BrikkTimeoutError",
    "Party",
    "RetryPolicy",
    "SSEEvent",
    "SSEParser",
    "build_envelope",
    "encode_body",
    "main",
    "message_id_of",
    "parse_retry_after",
    "receipts_of",
    "send_headers",
]

logger = logging.getLogger("brikk.client")

PROTOCOL_VERSION = "1.0"
COORDINATION_PATH = "/api/v1/coordination"
MESSAGES_PATH = "/api/v1/coordination/messages"
BATCH_PATH = "/api/v1/coordination/batch"
MAX_BATCH = 100  # envelopes per batch request: send_batch splits longer lists
HEALTH_PATH = "/api/v1/coordination/health"
INBOX_PATH = "/api/v1/inbox"
STREAM_PATH = "/api/v1/inbox/stream"
DEAD_LETTERS_PATH = "/api/v1/dead-letters"
MAX_RECEIPTS = 100  # per ack, nack or extend call: longer lists are sent in batches of this size
HEARTBEAT_SECONDS = 15.0  # the stream's comment line interval
MESSAGE_TYPES = ("message", "event", "command", "result", "error")
FINAL_STATUSES = frozenset({"delivered", "failed", "rejected"})
RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
USER_AGENT = "brikk-python-client/1.0"


# --- Envelopes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """A sender or recipient: an agent id and, optionally, its organization id."""

    agent_id: str
    org_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        party = {"agent_id": str(self.agent_id)}
        if self.org_id:
            party["org_id"] = str(self.org_id)
        return party


def _party(value: Party | Mapping[str, Any] | str) -> dict[str, str]:
    if isinstance(value, Party):
        return value.as_dict()
    if isinstance(value, Mapping):
        return Party(value["agent_id"], value.get("org_id")).as_dict()
    return Party(str(value)).as_dict()


def rfc3339_now() -> str:
    """Now as RFC 3339 UTC with millisecond precision and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_message_id() -> str:
    """A UUID v7: unique, and sortable by creation time."""
    return str(uuid6.uuid7())


def build_envelope(
    sender: Party | Mapping[str, Any] | str,
    recipient: Party | Mapping[str, Any] | str,
    payload: Mapping[str, Any],
    *,
    type: str = "message",
    message_id: str | None = None,
    ts: str | None = None,
    ttl_ms: int | None = None,
    reply_to: str | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """A Brikk envelope v1.0 as a dict; optional fields left unset are omitted (the server defaults them)."""
    if not isinstance(payload, Mapping):
        raise TypeError("payload must be a JSON object (a mapping)")
    if type not in MESSAGE_TYPES:
        raise ValueError(f"type must be one of {', '.join(MESSAGE_TYPES)}")
    envelope: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "message_id": message_id or new_message_id(),
        "ts": ts or rfc3339_now(),
        "type": type,
        "sender": _party(sender),
        "recipient": _party(recipient),
        "payload": dict(payload),
    }
    if ttl_ms is not None:
        envelope["ttl_ms"] = ttl_ms
    if reply_to is not None:
        envelope["reply_to"] = reply_to
    if nonce is not None:
        envelope["nonce"] = nonce
    return envelope


def encode_body(document: Mapping[str, Any]) -> bytes:
    """The one serialization of a request body: compact UTF-8 JSON. Sign and send these bytes."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


# --- Results and errors ---------------------------------------------------------------------


@dataclass(frozen=True)
class BrikkResponse:
    """A successful answer: status, decoded JSON body, headers, and how many attempts it took."""

    status_code: int
    body: Any
    headers: Mapping[str, str] = field(repr=False)
    attempts: int = 1

    @property
    def request_id(self) -> str | None:
        return self.headers.get("X-Request-ID")

    @property
    def replayed(self) -> bool:
        """True when the server answered from its idempotency store (``Idempotent-Replayed: true``)."""
        return self.headers.get("Idempotent-Replayed", "").lower() == "true"


class BrikkError(Exception):
    """Base of every error this client raises."""


class BrikkAPIError(BrikkError):
    """The server refused the request (after any retries); carries the server's error body."""

    def __init__(self, status_code: int, body: Any, headers: Mapping[str, str] | None = None, attempts: int = 1):
        self.status_code = status_code
        self.body = body
        self.headers = httpx.Headers(headers or {})  # case-insensitive, like HTTP
        self.attempts = attempts
        error = body if isinstance(body, dict) else {}
        self.code: str = error.get("code") or f"http_{status_code}"
        self.error_message: str = error.get("message") or (body if isinstance(body, str) else "") or "request failed"
        self.request_id: str | None = error.get("request_id") or self.headers.get("X-Request-ID")
        self.details = error.get("details")
        super().__init__(f"{status_code} {self.code}: {self.error_message} (request_id={self.request_id})")

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


class BrikkConnectionError(BrikkError):
    """The server could not be reached (or the connection broke) on every attempt."""

    def __init__(self, message: str, attempts: int = 1):
        super().__init__(message)
        self.attempts = attempts


class BrikkTimeoutError(BrikkError):
    """An asynchronous message did not reach a final status in the time allowed."""

    def __init__(self, message: str, last: Any = None):
        super().__init__(message)
        self.last = last


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- Retries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``Retry-After`` from the server takes precedence.

    ``max_attempts`` counts the first try. A ``Retry-After`` longer than ``max_retry_after`` ends the
    retries at once (raising the 429/503) instead of waiting less than the server asked.
    """

    max_attempts: int = 5
    backoff_base: float = 0.2
    backoff_max: float = 10.0
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Delay before retry ``retry_number`` (1 for the first retry): uniform in [0, base * 2^(n-1)], capped."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (retry_number - 1)))
        return rng.uniform(0, ceiling)


# --- Server-Sent Events ---------------------------------------------------------------------


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its type (``message`` unless named), data (lines joined by ``\\n``) and the
    last event id in effect when it was dispatched (ids carry over to later events, as in the standard)."""

    event: str = "message"
    data: str = ""
    id: str | None = None


class SSEParser:
    """An incremental ``text/event-stream`` parser, as the HTML standard's "interpreting an event stream".

    ``feed(bytes)`` takes the stream in chunks cut anywhere (inside a line, a CRLF or a UTF-8 character) and
    returns the events completed by that chunk. Lines end with CRLF, LF or CR; a line starting with ``:``
    is a comment (``comments`` counts them: the stream's heartbeats); ``data`` lines accumulate, an empty line
    dispatches; an event without data is not dispatched; ``retry`` (milliseconds) is kept in ``retry_ms``.
    An event cut off by the end of the stream is never dispatched.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._after_cr = False  # the last chunk ended with CR: a LF starting the next one belongs to it
        self._first_line = True
        self._data: list[str] = []
        self._event = ""
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        self._buffer += chunk
        events = []
        lines = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buffer = lines.pop()  # the unfinished line ("" when the chunk ended a line)
        for raw in lines:
            event = self._line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent(event or "message", "\n".join(data), self.last_event_id)


# --- Client ---------------------------------------------------------------------------------


class BrikkClient:
    """Sends signed requests to one Brikk server as one agent. Thread-safe; reuse it (keeps connections open).

    ``api_key`` goes in ``X-Brikk-Key`` (or ``Authorization: Bearer`` with ``auth_header="bearer"``);
    ``signing_secret``, when given, signs every request. Neither ever appears in a repr, log or error.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        signing_secret: str | None = None,
        auth_header: str = "x-brikk-key",
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        if auth_header not in ("x-brikk-key", "bearer"):
            raise ValueError("auth_header must be 'x-brikk-key' or 'bearer'")
        self.base_url = base_url.rstrip("/")
        self._base_path = httpx.URL(self.base_url).path.rstrip("/")
        self._api_key = api_key
        self._signing_secret = signing_secret
        self.auth_header = auth_header
        self.retry = retry or RetryPolicy()
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT})
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        secret = "set" if self._signing_secret else "none"
        return f"BrikkClient(base_url={self.base_url!r}, api_key=<{key}>, signing_secret=<{secret}>)"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> BrikkClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the one way a request is made --------------------------------------------------------

    def signed_headers(self, method: str, path: str, body: bytes, *, timestamp: str | None = None) -> dict[str, str]:
        """Authentication and signature headers for exactly these body bytes (a fresh timestamp by default);
        ``path`` is the path as sent, with its query string if it has one."""
        headers: dict[str, str] = {}
        if self._api_key:
            if self.auth_header == "bearer":
                headers["Authorization"] = f"Bearer {self._api_key}"
            else:
                headers["X-Brikk-Key"] = self._api_key
        if self._signing_secret:
            timestamp = timestamp or signing.now_timestamp()
            signature = signing.sign(self._signing_secret, method, path, timestamp, body)
            headers[signing.TIMESTAMP_HEADER] = timestamp
            headers[signing.SIGNATURE_HEADER] = signing.signature_header(signature)
        return headers

    def request_headers(
        self, method: str, path: str, body: bytes, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Every header of one attempt: ``extra`` (e.g. Idempotency-Key), content type, auth and a fresh signature.

        ``path`` is the full URL path the server sees, with its query string if any. The benchmark sends these
        through its own connections.
        """
        headers = {"Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        headers.update(self.signed_headers(method, path, body))
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> BrikkResponse:
        """Send ``body`` (already serialized) to ``path``, signing each attempt; retry per the policy.

        ``path`` may carry a query string (``/x?a=1``); ``params`` are URL-encoded and appended to it. The
        signature covers the path and the query exactly as sent. The same bytes and the same extra headers
        (so the same Idempotency-Key) go out on every attempt; only the signature timestamp changes.
        ``timeout`` replaces the client's for this request (a long poll needs a longer read timeout).
        Raises BrikkAPIError or BrikkConnectionError at the end.
        """
        method = method.upper()
        path, url = self._target(path, params)
        body = body if body is not None else b""
        options = {} if timeout is None else {"timeout": timeout}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    method, url, content=body, headers=self.request_headers(method, path, body, headers), **options
                )
            except httpx.TransportError as exc:
                if attempt >= self.retry.max_attempts:
                    raise BrikkConnectionError(
                        f"{method} {path}: {exc.__class__.__name__} after {attempt} attempt(s): {exc}", attempt
                    ) from None
                delay = self.retry.backoff(attempt, self._rng)
                logger.warning(
                    "brikk %s %s: %s, retry %d in %.2fs", method, path, exc.__class__.__name__, attempt, delay
                )
                self._sleep(delay)
                continue

            decoded = _decode(response)
            if response.is_success:
                return BrikkResponse(response.status_code, decoded, response.headers, attempt)
            error = BrikkAPIError(response.status_code, decoded, response.headers, attempt)
            delay = self._retry_delay(error, attempt)
            if delay is None:
                raise error
            logger.warning(
                "brikk %s %s: %d %s (request_id=%s), retry %d in %.2fs",
                method,
                path,
                error.status_code,
                error.code,
                error.request_id,
                attempt,
                delay,
            )
            self._sleep(delay)

    def _target(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[str, httpx.URL]:
        """The path as sent (base path, path, query) — what is signed — and the URL that carries it."""
        path = self._base_path + path
        if params:
            path = f"{path}{'&' if '?' in path else '?'}{urlencode(params, doseq=True)}"
        path = signing.request_target(path)  # a bare trailing "?" is not sent
        return path, httpx.URL(self.base_url).copy_with(raw_path=path.encode())

    def _retry_delay(self, error: BrikkAPIError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when this error is final."""
        if error.status_code not in self.retry.retry_statuses or attempt >= self.retry.max_attempts:
            return None
        retry_after = error.retry_after
        if retry_after is None:
            return self.retry.backoff(attempt, self._rng)
        if retry_after > self.retry.max_retry_after:
            return None
        return retry_after

    # -- coordination API ----------------------------------------------------------------------

    def send(
        self,
        envelope: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        respond_async: bool = False,
    ) -> BrikkResponse:
        """POST an envelope. The Idempotency-Key defaults to the envelope's message_id."""
        return self.request(
            "POST",
            COORDINATION_PATH,
            body=encode_body(envelope),
            headers=send_headers(envelope, idempotency_key=idempotency_key, respond_async=respond_async),
        )

    def echo(
        self,
        sender: Party | Mapping[str, Any] | str,
        recipient: Party | Mapping[str, Any] | str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        respond_async: bool = False,
        **envelope_fields: Any,
    ) -> BrikkResponse:
        """Build an envelope (type, message_id, ts, ttl_ms, reply_to, nonce may be given) and send it."""
        envelope = build_envelope(sender, recipient, payload, **envelope_fields)
        return self.send(envelope, idempotency_key=idempotency_key, respond_async=respond_async)

    def send_batch(self, envelopes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """POST envelopes in batches of up to 100 (one request per hundred) and merge the answers:
        ``{"results": [...], "delivered": n, "replayed": n, "refused": n}``, one result per envelope in order
        (``index`` counts across the whole list). Each envelope is idempotent by its message_id, so a retried
        request delivers nothing twice: items already delivered come back ``replayed``. A refused envelope is a
        result (``status: "refused"`` with its ``error``), not an exception; BrikkAPIError is raised only for a
        request refused as a whole (401, 413, 429 after the retries...), after the earlier batches were sent."""
        envelopes = list(envelopes)
        merged: dict[str, Any] = {"results": [], "delivered": 0, "replayed": 0, "refused": 0}
        for start in range(0, len(envelopes), MAX_BATCH):
            body = encode_body({"messages": envelopes[start : start + MAX_BATCH]})
            answer = self.request("POST", BATCH_PATH, body=body).body
            for result in answer["results"]:
                merged["results"].append({**result, "index": start + result["index"]})
            for count in ("delivered", "replayed", "refused"):
                merged[count] += answer[count]
        return merged

    def list_messages(self, **filters: Any) -> dict[str, Any]:
        """One page of the organization's messages, newest first; ``filters`` are the API's query
        parameters (``status``, ``type``, ``agent``, ``since``, ``page_size``, ``cursor``...)."""
        return self.request("GET", MESSAGES_PATH, params=filters).body

    def get_message(self, message_id: str) -> dict[str, Any]:
        """The server's record of one message: status, attempts, error, and the response once delivered."""
        return self.request("GET", f"{MESSAGES_PATH}/{message_id}").body

    def wait_for_message(
        self, message_id: str, *, timeout: float = 30.0, interval: float = 0.2, max_interval: float = 2.0
    ) -> dict[str, Any]:
        """Poll a message until its status is final (delivered, failed, rejected); BrikkTimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            last = self.get_message(message_id)
            if last.get("status") in FINAL_STATUSES:
                return last
            if time.monotonic() + interval > deadline:
                raise BrikkTimeoutError(
                    f"message {message_id} still {last.get('status')!r} after {timeout:g}s", last=last
                )
            self._sleep(interval)
            interval = min(max_interval, interval * 1.5)

    def health(self) -> dict[str, Any]:
        return self.request("GET", HEALTH_PATH).body

    # -- the inbox -----------------------------------------------------------------------------

    def receive(self, max_messages: int = 10, wait_seconds: int = 0, lease_seconds: int = 30) -> list[dict[str, Any]]:
        """Lease up to ``max_messages`` of this agent's oldest available messages, each the envelope as sent plus
        ``id``, ``receipt``, ``delivery_count``, ``leased_until`` and ``accepted_at``; ``[]`` when none is there.

        ``wait_seconds`` > 0 is a long poll: the server answers as soon as a message arrives, or with ``[]``
        after that many seconds; the read timeout is the client's plus ``wait_seconds``. Delivery is at least
        once: deduplicate by ``message_id``, and ack each message within ``lease_seconds``.
        """
        body = {"max_messages": max_messages, "wait_seconds": wait_seconds, "lease_seconds": lease_seconds}
        timeout = None
        if wait_seconds > 0:
            current = self._http.timeout
            timeout = httpx.Timeout(
                connect=current.connect,
                read=(current.read or 0) + wait_seconds,
                write=current.write,
                pool=current.pool,
            )
        response = self.request("POST", f"{INBOX_PATH}/receive", body=encode_body(body), timeout=timeout)
        return response.body["messages"]

    def ack(self, receipts: Receipts) -> list[dict[str, str]]:
        """Done with these messages (receipts, or the received messages themselves). One result per receipt, in
        order: ``ok``, ``stale`` (the lease ran out, or it was acked already) or ``unknown``."""
        return self._settle("ack", receipts, {})

    def nack(self, receipts: Receipts, delay_seconds: int = 0) -> list[dict[str, str]]:
        """Give these messages back: receivable again (``delivery_count`` + 1) after ``delay_seconds``."""
        return self._settle("nack", receipts, {"delay_seconds": delay_seconds})

    def extend(self, receipts: Receipts, lease_seconds: int = 30) -> list[dict[str, str]]:
        """Keep these leases for ``lease_seconds`` from now (a handler that needs longer than its lease)."""
        return self._settle("extend", receipts, {"lease_seconds": lease_seconds})

    def _settle(self, action: str, receipts: Receipts, fields: dict[str, Any]) -> list[dict[str, str]]:
        receipts = receipts_of(receipts)
        results: list[dict[str, str]] = []
        for start in range(0, len(receipts), MAX_RECEIPTS):
            body = {"receipts": receipts[start : start + MAX_RECEIPTS], **fields}
            results += self.request("POST", f"{INBOX_PATH}/{action}", body=encode_body(body)).body["results"]
        return results

    def inbox_stats(self) -> dict[str, Any]:
        """``{"counts": {"queued", "leased", "acked", "dead"}, "oldest_available_age_seconds"}``."""
        return self.request("GET", f"{INBOX_PATH}/stats").body

    def dead_letters(self, **filters: Any) -> dict[str, Any]:
        """One page of dead letters, newest first: an agent's own (a person's: the organization's). ``filters``
        are the API's query parameters: ``recipient``, ``sender``, ``reason``, ``page_size``, ``cursor``."""
        return self.request("GET", DEAD_LETTERS_PATH, params=filters).body

    def redrive(self, ids: list[str]) -> dict[str, list[str]]:
        """Put dead letters (their server ``id``) back in their inbox. Owners and admins only (a person's
        token with ``auth_header="bearer"``; an agent key gets 403). ``{"redriven": [...], "not_found": [...]}``."""
        body = encode_body({"ids": [str(value) for value in ids]})
        return self.request("POST", f"{DEAD_LETTERS_PATH}/redrive", body=body).body

    def reply(
        self,
        message: Mapping[str, Any],
        payload: Mapping[str, Any],
        *,
        type: str = "result",
        idempotency_key: str | None = None,
        **envelope_fields: Any,
    ) -> BrikkResponse:
        """Answer a received message: an envelope from its recipient (this agent) to its sender, with
        ``reply_to`` = its ``message_id``. ``idempotency_key=f"reply-{message['message_id']}"`` makes the reply
        to a message delivered twice (at least once) be sent once."""
        envelope = build_envelope(
            message["recipient"],
            message["sender"],
            payload,
            type=type,
            reply_to=str(message["message_id"]),
            **envelope_fields,
        )
        return self.send(envelope, idempotency_key=idempotency_key)

    # -- the stream ----------------------------------------------------------------------------

    def listen(
        self,
        handler: Callable[[dict[str, Any]], Any],
        *,
        lease_seconds: int = 30,
        ack: bool = True,
        nack_delay_seconds: int = 0,
        stop: threading.Event | None = None,
        last_event_id: str | None = None,
        heartbeat_timeout: float = 2 * HEARTBEAT_SECONDS + 5,
        max_failures: int | None = None,
    ) -> str | None:
        """Consume ``GET /api/v1/inbox/stream`` (Server-Sent Events) and run ``handler(message)`` on each message
        (the same dict ``receive`` returns), in order, until ``stop`` is set or KeyboardInterrupt.

        A handler that returns acks its message; one that raises nacks it (receivable again after
        ``nack_delay_seconds``). Acks and nacks go in one call per batch of messages that arrived together.
        ``ack=False`` settles nothing (the leases run out and the messages come back). A disconnect, a
        5xx/409/429 answer (waiting as long as its ``Retry-After`` asks) or a connection silent for longer
        than ``heartbeat_timeout`` (the server sends a heartbeat every 15 s) reconnects with backoff, sending
        ``Last-Event-ID``; any other refusal (401, 403, 404, 422...) raises BrikkAPIError. ``max_failures``
        consecutive failed connections (default: no limit) raise the last error. ``stop`` is checked after
        each message and heartbeat, and during waits. Returns the last event id seen (to resume from).
        """
        stop = stop or threading.Event()
        state = _StreamState(last_event_id)
        failures = 0
        try:
            while not stop.is_set():
                state.progressed = False
                try:
                    self._listen_once(handler, stop, state, lease_seconds, ack, nack_delay_seconds, heartbeat_timeout)
                    reconnect = _Reconnect("the server ended the stream", BrikkConnectionError("stream ended"))
                except _Reconnect as broken:
                    reconnect = broken
                if stop.is_set():
                    break
                failures = 1 if state.progressed else failures + 1
                if max_failures is not None and failures >= max_failures:
                    raise reconnect.error
                delay = reconnect.retry_after
                if delay is None:
                    delay = max(self.retry.backoff(failures, self._rng), (state.retry_ms or 0) / 1000)
                logger.warning(
                    "brikk stream: %s; reconnecting in %.2fs (Last-Event-ID %s)",
                    reconnect.reason,
                    delay,
                    state.last_event_id,
                )
                self._pause(delay, stop)
        except KeyboardInterrupt:
            logger.info("brikk stream: interrupted; stopping")
        return state.last_event_id

    def _listen_once(
        self,
        handler: Callable[[dict[str, Any]], Any],
        stop: threading.Event,
        state: _StreamState,
        lease_seconds: int,
        ack: bool,
        nack_delay_seconds: int,
        heartbeat_timeout: float,
    ) -> None:
        """One connection to the stream, until the server ends it or ``stop``; _Reconnect when it broke."""
        path, url = self._target(STREAM_PATH, {"lease_seconds": lease_seconds})
        extra = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if state.last_event_id:
            extra["Last-Event-ID"] = state.last_event_id
        current = self._http.timeout
        timeout = httpx.Timeout(connect=current.connect, read=heartbeat_timeout, write=current.write, pool=current.pool)
        try:
            with self._http.stream(
                "GET", url, headers=self.request_headers("GET", path, b"", extra), timeout=timeout
            ) as response:
                if response.status_code != 200:
                    response.read()
                    error = BrikkAPIError(response.status_code, _decode(response), response.headers)
                    if error.status_code in self.retry.retry_statuses:
                        raise _Reconnect(f"{error.status_code} {error.code}", error, error.retry_after)
                    raise error
                content_type = response.headers.get("Content-Type", "")
                if not content_type.startswith("text/event-stream"):
                    raise BrikkError(f"GET {path} answered {content_type or 'no content type'}, not an event stream")
                parser = SSEParser()
                for chunk in response.iter_bytes():
                    state.progressed = True
                    events = parser.feed(chunk)
                    if parser.retry_ms is not None:
                        state.retry_ms = parser.retry_ms
                    if events:
                        self._handle_events(events, handler, stop, state, ack, nack_delay_seconds)
                    if stop.is_set():
                        return
        except httpx.ReadTimeout:
            raise _Reconnect(
                f"nothing received for {heartbeat_timeout:g}s (a dead connection)",
                BrikkConnectionError(f"GET {path}: no heartbeat for {heartbeat_timeout:g}s"),
            ) from None
        except httpx.TransportError as exc:
            raise _Reconnect(
                f"{exc.__class__.__name__}: {exc}", BrikkConnectionError(f"GET {path}: {exc.__class__.__name__}: {exc}")
            ) from None

    def _handle_events(
        self,
        events: list[SSEEvent],
        handler: Callable[[dict[str, Any]], Any],
        stop: threading.Event,
        state: _StreamState,
        ack: bool,
        nack_delay_seconds: int,
    ) -> None:
        """Run the handler on each message event, then ack the handled ones and nack the failed ones in one
        call each. Messages not run (stop, or KeyboardInterrupt) are nacked without delay: another consumer
        may take them at once."""
        messages = []
        for event in events:
            if event.id is not None:
                state.last_event_id = event.id
            if event.event != "message":
                continue
            try:
                message = json.loads(event.data)
                messages.append((message, str(message["receipt"])))
            except (ValueError, TypeError, KeyError):
                logger.warning("brikk stream: event %s is not a received message; skipped", event.id)
        done: list[str] = []
        failed: list[str] = []
        not_run: list[str] = []
        try:
            for index, (message, receipt) in enumerate(messages):
                if stop.is_set():
                    not_run += [receipt for _, receipt in messages[index:]]
                    break
                try:
                    handler(message)
                except KeyboardInterrupt:
                    not_run += [receipt for _, receipt in messages[index:]]
                    stop.set()
                    raise
                except Exception:
                    logger.exception("brikk stream: the handler raised on message %s; nacking it", message.get("id"))
                    failed.append(receipt)
                else:
                    done.append(receipt)
        finally:
            if ack:
                self._settle_quietly("ack", done, {})
                self._settle_quietly("nack", failed, {"delay_seconds": nack_delay_seconds})
                self._settle_quietly("nack", not_run, {"delay_seconds": 0})

    def _settle_quietly(self, action: str, receipts: list[str], fields: dict[str, Any]) -> None:
        """Ack or nack for the listener: a failure is logged, not raised (the lease runs out and the message
        comes back: at least once)."""
        if not receipts:
            return
        try:
            results = self._settle(action, receipts, fields)
        except BrikkError as exc:
            logger.warning("brikk stream: %s of %d message(s) failed: %s", action, len(receipts), exc)
            return
        for item in results:
            if item.get("result") != "ok":
                logger.warning("brikk stream: %s %s: %s", action, item.get("receipt"), item.get("result"))

    def _pause(self, seconds: float, stop: threading.Event) -> None:
        """Wait before reconnecting; a stop ends the wait at once (an injected ``sleep`` stands in, in tests)."""
        if self._sleep is time.sleep:
            stop.wait(seconds)
        else:
            self._sleep(seconds)


def send_headers(
    envelope: Mapping[str, Any], *, idempotency_key: str | None = None, respond_async: bool = False
) -> dict[str, str]:
    """The protocol headers of a POSTed envelope (before auth and signature)."""
    headers = {"Idempotency-Key": idempotency_key or str(envelope["message_id"])}
    if respond_async:
        headers["Prefer"] = "respond-async"
    return headers


def message_id_of(response: BrikkResponse) -> str:
    """The server's id of an accepted message: what ``get_message`` and ``wait_for_message`` take."""
    body = response.body if isinstance(response.body, dict) else {}
    if body.get("id"):
        return str(body["id"])
    location = response.headers.get("Location") or (body.get("links") or {}).get("self") or ""
    if location:
        return location.rstrip("/").rsplit("/", 1)[-1]
    raise BrikkError("the response names no message id")


Receipts = str | Mapping[str, Any] | Iterable[str | Mapping[str, Any]]


def receipts_of(items: Receipts) -> list[str]:
    """Receipts from receipt strings or received messages (their ``receipt``), one or many."""
    if isinstance(items, str | Mapping):
        items = [items]
    return [item["receipt"] if isinstance(item, Mapping) else str(item) for item in items]


@dataclass
class _StreamState:
    """What a listener keeps across connections."""

    last_event_id: str | None = None
    retry_ms: int | None = None
    progressed: bool = False  # this connection received something: its failure starts the backoff again


class _Reconnect(Exception):  # noqa: N818 - control flow, never leaves listen()
    def __init__(self, reason: str, error: BrikkError, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.error, self.retry_after = reason, error, retry_after


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


# --- Command line ---------------------------------------------------------------------------

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m coordination.client",
        description="Talk to a Brikk server as an agent. Secrets may come from BRIKK_API_KEY and "
        "BRIKK_SIGNING_SECRET instead of the command line (which other users can see in the process list).",
    )
    parser.add_argument("--url", default=os.environ.get("BRIKK_URL", "http://127.0.0.1:8000"), help="env BRIKK_URL")
    parser.add_argument("--key", default=os.environ.get("BRIKK_API_KEY"), help="agent API key; env BRIKK_API_KEY")
    parser.add_argument(
        "--signing-secret", default=os.environ.get("BRIKK_SIGNING_SECRET"), help="env BRIKK_SIGNING_SECRET"
    )
    parser.add_argument("--bearer", action="store_true", help="send the key as Authorization: Bearer")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP attempt")
    parser.add_argument("--attempts", type=int, default=5, help="attempts in all, retries included")
    commands = parser.add_subparsers(dest="command", required=True)

    echo = commands.add_parser("echo", help="send an envelope to the echo workflow and print the answer")
    echo.add_argument("--sender", required=True, help="sending agent id (the key's agent)")
    echo.add_argument("--recipient", required=True, help="recipient agent id")
    echo.add_argument("--sender-org", help="sender org_id (optional)")
    echo.add_argument("--recipient-org", help="recipient org_id (optional)")
    echo.add_argument("--payload", default="{}", help="JSON object (default {})")
    echo.add_argument("--type", default="message", choices=MESSAGE_TYPES)
    echo.add_argument("--message-id", help="default: a new UUID v7")
    echo.add_argument("--ttl-ms", type=int)
    echo.add_argument("--reply-to")
    echo.add_argument("--nonce")
    echo.add_argument("--idempotency-key", help="default: the message id")
    echo.add_argument("--async", dest="respond_async", action="store_true", help="send Prefer: respond-async")
    echo.add_argument("--wait", action="store_true", help="with --async: poll until the message is final")

    show = commands.add_parser("message", help="print the status of a message")
    show.add_argument("message_id")
    show.add_argument("--wait", action="store_true", help="poll until the status is final")

    commands.add_parser("health", help="print the coordination health document")

    batch = commands.add_parser(
        "batch",
        help="send many envelopes (batches of 100) from a file of JSON lines and print the results",
        description="Each line of FILE ('-': standard input) is one JSON object: a full envelope, or some of its "
        "fields (recipient and payload at least); what a line leaves out is filled in: sender (--sender), a new "
        "message_id, ts, version. Exit code 0 when every envelope was delivered or replayed, 1 if any was refused.",
    )
    batch.add_argument("file", help="JSON lines, one envelope each; '-' for standard input")
    batch.add_argument("--sender", help="sending agent id, for lines that name no sender (the key's agent)")

    receive = commands.add_parser("receive", help="lease messages from the agent's inbox and print them")
    receive.add_argument("--max", dest="max_messages", type=int, default=10, help="1-100 (default 10)")
    receive.add_argument("--wait", dest="wait_seconds", type=int, default=0, help="long poll seconds (default 0)")
    receive.add_argument("--lease", dest="lease_seconds", type=int, default=30, help="seconds (default 30)")
    receive.add_argument("--ack", action="store_true", help="ack what was printed")

    ack = commands.add_parser("ack", help="acknowledge received messages by receipt")
    ack.add_argument("receipts", nargs="+", metavar="RECEIPT")

    nack = commands.add_parser("nack", help="give received messages back by receipt")
    nack.add_argument("receipts", nargs="+", metavar="RECEIPT")
    nack.add_argument("--delay", dest="delay_seconds", type=int, default=0, help="seconds before redelivery")

    commands.add_parser("stats", help="print the inbox's counts per state")

    listen = commands.add_parser(
        "listen", help="stream the inbox: print each message as one JSON line and ack it; Ctrl-C stops"
    )
    listen.add_argument("--lease", dest="lease_seconds", type=int, default=30, help="seconds (default 30)")
    listen.add_argument("--no-ack", dest="ack", action="store_false", help="print only (leases run out)")
    listen.add_argument("--count", type=int, help="stop after this many messages")
    return parser


INBOX_COMMANDS = frozenset({"receive", "ack", "nack", "stats", "listen"})


def _print_json(document: Any, stream=None) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False), file=stream or sys.stdout)


def _listen(client: BrikkClient, args: argparse.Namespace) -> None:
    """Print each message as a JSON line (flushed) and ack it; a closed stdout nacks it and stops."""
    stop = threading.Event()
    seen = 0

    def handle(message: dict[str, Any]) -> None:
        nonlocal seen
        try:
            print(json.dumps(message, separators=(",", ":"), ensure_ascii=False), flush=True)
        except (BrokenPipeError, ValueError):  # stdout closed (`| head -1`): not delivered, stop
            stop.set()
            raise
        seen += 1
        if args.count is not None and seen >= args.count:
            stop.set()

    client.listen(handle, lease_seconds=args.lease_seconds, ack=args.ack, stop=stop)


def _batch_envelopes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The envelopes of ``batch``'s JSON lines, completed (sender, message_id, ts, version)."""
    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        parser.error(f"cannot read {args.file}: {exc.strerror}")
    envelopes = []
    try:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except ValueError as exc:
                parser.error(f"line {number} is not JSON: {exc}")
            if not isinstance(fields, dict) or "recipient" not in fields or "payload" not in fields:
                parser.error(f"line {number} must be a JSON object with recipient and payload")
            sender = fields.get("sender", args.sender)
            if sender is None:
                parser.error(f"line {number} names no sender: give --sender")
            envelopes.append(
                {
                    "version": PROTOCOL_VERSION,
                    "message_id": new_message_id(),
                    "ts": rfc3339_now(),
                    **fields,
                    "sender": _party(sender),
                    "recipient": _party(fields["recipient"]),
                }
            )
    finally:
        if stream is not sys.stdin:
            stream.close()
    if not envelopes:
        parser.error("no envelopes: the file has no lines")
    return envelopes


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.command in ("echo", "batch") or args.command in INBOX_COMMANDS) and not args.key:
        parser.error("an API key is required: --key or BRIKK_API_KEY")
    if args.command == "echo":
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            parser.error(f"--payload is not JSON: {exc}")
        if not isinstance(payload, dict):
            parser.error("--payload must be a JSON object")
    if args.command == "batch":
        envelopes = _batch_envelopes(parser, args)
    policy = RetryPolicy(max_attempts=max(1, args.attempts))
    client = BrikkClient(
        args.url,
        api_key=args.key,
        signing_secret=args.signing_secret,
        auth_header="bearer" if args.bearer else "x-brikk-key",
        timeout=args.timeout,
        retry=policy,
    )
    try:
        with client:
            if args.command == "echo":
                response = client.echo(
                    Party(args.sender, args.sender_org),
                    Party(args.recipient, args.recipient_org),
                    payload,
                    type=args.type,
                    message_id=args.message_id,
                    ttl_ms=args.ttl_ms,
                    reply_to=args.reply_to,
                    nonce=args.nonce,
                    idempotency_key=args.idempotency_key,
                    respond_async=args.respond_async,
                )
                document = response.body
                if args.wait and response.status_code == 202:
                    document = client.wait_for_message(message_id_of(response))
            elif args.command == "batch":
                document = client.send_batch(envelopes)
                _print_json(document)
                return EXIT_OK if not document["refused"] else EXIT_API_ERROR
            elif args.command == "receive":
                messages = client.receive(args.max_messages, args.wait_seconds, args.lease_seconds)
                document = {"messages": messages}
                if args.ack and messages:
                    document["acked"] = client.ack(messages)
            elif args.command in ("ack", "nack"):
                if args.command == "ack":
                    document = {"results": client.ack(args.receipts)}
                else:
                    document = {"results": client.nack(args.receipts, args.delay_seconds)}
            elif args.command == "stats":
                document = client.inbox_stats()
            elif args.command == "listen":
                _listen(client, args)
                return EXIT_OK
            elif args.command == "message":
                if args.wait:
                    document = client.wait_for_message(args.message_id)
                else:
                    document = client.get_message(args.message_id)
            else:
                document = client.health()
    except BrikkAPIError as exc:
        _print_json(exc.body if exc.body is not None else {"code": exc.code, "message": str(exc)}, sys.stderr)
        return EXIT_API_ERROR
    except BrikkConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    except BrikkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_API_ERROR
    _print_json(document)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
