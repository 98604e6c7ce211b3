"""A small Python client for the Brikk coordination API (envelope v1.0), and its command line.

    from coordination.client import BrikkClient

    with BrikkClient("http://127.0.0.1:8000", api_key="brk_...", signing_secret="...") as brikk:
        reply = brikk.echo(sender="<agent id>", recipient="<agent id>", payload={"hello": "world"})
        print(reply.body)

The body is serialized once and exactly those bytes are signed (``agents.signing``) and sent, with the
path and its query string as sent.
A retry re-sends the same bytes — same ``message_id``, same ``Idempotency-Key`` — with a fresh
signature timestamp, so the server processes the operation at most once whatever the network does.

Command line: ``python -m coordination.client echo --help``. Depends only on httpx and uuid6
(and the standard library); it does not import Django.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
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
    "build_envelope",
    "encode_body",
    "main",
    "message_id_of",
    "parse_retry_after",
    "send_headers",
]

logger = logging.getLogger("brikk.client")

PROTOCOL_VERSION = "1.0"
COORDINATION_PATH = "/api/v1/coordination"
MESSAGES_PATH = "/api/v1/coordination/messages"
HEALTH_PATH = "/api/v1/coordination/health"
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
    ) -> BrikkResponse:
        """Send ``body`` (already serialized) to ``path``, signing each attempt; retry per the policy.

        ``path`` may carry a query string (``/x?a=1``); ``params`` are URL-encoded and appended to it. The
        signature covers the path and the query exactly as sent. The same bytes and the same extra headers
        (so the same Idempotency-Key) go out on every attempt; only the signature timestamp changes.
        Raises BrikkAPIError or BrikkConnectionError at the end.
        """
        method = method.upper()
        path = self._base_path + path
        if params:
            path = f"{path}{'&' if '?' in path else '?'}{urlencode(params, doseq=True)}"
        path = signing.request_target(path)  # a bare trailing "?" is not sent
        body = body if body is not None else b""
        url = httpx.URL(self.base_url).copy_with(raw_path=path.encode())
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    method, url, content=body, headers=self.request_headers(method, path, body, headers)
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
    return parser


def _print_json(document: Any, stream=None) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False), file=stream or sys.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "echo":
        if not args.key:
            parser.error("an API key is required: --key or BRIKK_API_KEY")
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            parser.error(f"--payload is not JSON: {exc}")
        if not isinstance(payload, dict):
            parser.error("--payload must be a JSON object")
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
