"""Push delivery (Standard Webhooks 1.0): each message for an agent with an enabled endpoint is POSTed to it,
signed, until a 2xx acks it, it expires, or it runs out of attempts.

One delivery: lease the message (kind ``push``: coordination/leasing.py, ``SKIP LOCKED``, so several
dispatchers share the work), resolve the endpoint's host and check every address (brikk/lib/addresses.py), connect
to the checked address itself (no DNS rebinding; TLS verified against the name through SNI), POST the body — the
receive item of that message (coordination/inbox.py) — with ``webhook-id`` (the message id), ``webhook-timestamp``
and ``webhook-signature`` (one ``v1,`` signature per secret: two during a rotation's grace), and settle:

- 2xx within BRIKK_PUSH_TIMEOUT_SECONDS: acked.
- 410 Gone: the endpoint is disabled (reason ``gone``) and its agent's messages go back to the pull inbox.
- 429 or 503 with ``Retry-After`` (seconds or an HTTP date): tried again after it, bounded to 1 s - 1 h.
- anything else (3xx, other 4xx and 5xx, timeout, connection error, refused address): tried again on Svix's
  schedule (``SCHEDULE``, ±20 % jitter); after the ``ATTEMPTS``-th failed attempt, dead (``push_exhausted``,
  audited as the sweep's dead letters). A retry planned past the message's ``expires_at`` never happens: the
  sweep dead-letters it ``expired``. An endpoint failing with no success for BRIKK_PUSH_DISABLE_AFTER_DAYS is
  disabled (``failing``).

A dispatcher killed mid-flight leaves its messages leased; when the lease (2 × timeout + 5 s) runs out they are
pushed again with the same ``webhook-id`` (at least once: the receiver deduplicates). ``Dispatcher`` is the
long-running loop (``manage.py push_dispatcher``; in process on the embedded defaults, ``InProcess``), woken by
every message that becomes queued (coordination/wakeup.py) and otherwise asleep until the next retry is due.
"""

import asyncio
import email.utils
import functools
import ipaddress
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections import OrderedDict, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import SplitResult, urlsplit, urlunsplit

import aiohttp
import certifi
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from brikk.lib import addresses
from coordination import inbox, leasing, metrics, push_endpoints, wakeup
from coordination.models import DeliveryAttempt, MessageLog, PushEndpoint

logger = logging.getLogger("brikk.push")

# Svix's schedule: the delay before attempt n+1 after attempt n failed (attempt 1 is immediate).
SCHEDULE = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
ATTEMPTS = len(SCHEDULE)
JITTER = 0.2
RETRY_AFTER_BOUNDS = (1, 3600)  # seconds: a Retry-After is honoured within these
EXCERPT_BYTES = 1024  # of the answer, kept in the attempt
READ_AT_MOST = 64 * 1024  # read beyond this, the connection is closed rather than drained
ERROR_CHARS = 300
ACTOR = "push-dispatcher"
NO_LIMIT = 2**31 - 1  # the organization's max_deliveries is the sweep's to apply, not the push lease's
SETTLE_RETRIES = (0.1, 0.5, 2, None)  # pauses between tries of a settle that met a database error
SETTLE_GROUP = 200  # 2xx answers settled in one transaction, at most
IN_FLIGHT_RECHECK_SECONDS = 1.0  # while deliveries are in flight, how long the loop sleeps without being woken
TARGET_TTL_SECONDS = 10.0  # an endpoint's checked address is resolved again after this

ACKED, HTTP_ERROR, GONE, TIMEOUT, CONNECTION_ERROR, REFUSED = (
    "acked",
    "http_error",
    "gone",
    "timeout",
    "connection_error",
    "refused",
)


def lease_seconds() -> int:
    return 2 * settings.BRIKK_PUSH_TIMEOUT_SECONDS + 5


@dataclass(frozen=True)
class Delivery:
    """A leased message on its way to an endpoint. ``secrets`` are plaintext: signing only, never shown."""

    lease: leasing.Lease
    endpoint_id: object
    organization_id: object
    agent_id: object
    url: str
    body: str
    secrets: tuple[str, ...] = field(repr=False)


@dataclass
class Result:
    """What one attempt got: the status (None when no answer came), its time, a short error, the answer's start."""

    status_code: int | None = None
    latency_ms: float | None = None
    error: str = ""
    excerpt: str = ""
    retry_after: float | None = None
    outcome: str = CONNECTION_ERROR


# --- Database steps (synchronous) -----------------------------------------------------------------


def lease_due(*, now: datetime | None = None, limit: int, busy: dict | None = None, host: str = "") -> list[Delivery]:
    """Lease up to ``limit`` messages due for a push (not beyond the per-endpoint cap less ``busy``)."""
    now = now or timezone.now()
    leases = leasing.lease_for_push(
        now=now,
        limit=limit,
        lease_seconds=lease_seconds(),
        max_deliveries=NO_LIMIT,
        per_endpoint=settings.BRIKK_PUSH_CONCURRENCY_PER_ENDPOINT,
        busy=busy,
        host=host or socket.gethostname(),
    )
    if not leases:
        return []
    endpoints = PushEndpoint.objects.in_bulk({item.endpoint_id for item in leases})
    deliveries = []
    for item in leases:
        endpoint = endpoints.get(item.endpoint_id)
        if endpoint is None:  # deleted since: its lease runs out and the message waits in the pull inbox
            continue
        deliveries.append(
            Delivery(
                lease=item,
                endpoint_id=endpoint.pk,
                organization_id=endpoint.organization_id,
                agent_id=endpoint.agent_id,
                url=endpoint.url,
                body=json.dumps(inbox.receive_item(item), separators=(",", ":")),
                secrets=tuple(push_endpoints.signing_secrets(endpoint, now)),
            )
        )
    return deliveries


def next_due_in(*, now: datetime | None = None) -> float | None:
    """Seconds until a message of an agent with an enabled endpoint becomes due (a retry's delay ends, a lease
    runs out), or None: the dispatcher sleeps until then unless woken sooner."""
    now = now or timezone.now()
    agents = PushEndpoint.objects.filter(enabled=True).values("agent_id")
    return inbox.seconds_until_available(MessageLog.objects.filter(recipient_id__in=agents), now=now)


def retry_delay(delivery_count: int, result: Result) -> float:
    """Seconds before the next attempt after attempt ``delivery_count`` failed with ``result``."""
    if result.retry_after is not None:
        low, high = RETRY_AFTER_BOUNDS
        return min(max(result.retry_after, low), high)
    base = SCHEDULE[min(max(delivery_count, 1), ATTEMPTS - 1)]
    return base * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - jitter, not a secret


def settle(delivery: Delivery, result: Result, *, now: datetime | None = None) -> str:
    """Record the attempt and act on its outcome (see the module's docstring). The message changes only while
    this delivery's lease still holds it (an ack through the API with the receipt in the body wins). A 2xx is
    settled by ``settle_acked``, the one place for it."""
    now = now or timezone.now()
    if result.outcome == ACKED:
        settle_acked([(delivery, result)], now=now)
        return ACKED
    lease = delivery.lease
    with transaction.atomic():
        DeliveryAttempt.objects.filter(
            message_id=lease.id, token=lease.token, kind=DeliveryAttempt.Kind.PUSH, outcome=""
        ).update(
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error[:ERROR_CHARS],
            response_excerpt=result.excerpt,
            outcome=DeliveryAttempt.Outcome.FAILED,
            ended_at=now,
        )
        held = MessageLog.objects.filter(pk=lease.id, delivery_state=MessageLog.Delivery.LEASED, receipt=lease.token)
        if result.outcome == GONE:
            _requeue(held, now, now)
        elif lease.delivery_count >= ATTEMPTS:
            inbox.dead_letter_leased(
                lease.id, lease.token, MessageLog.DeadReason.PUSH_EXHAUSTED, actor_id=ACTOR, now=now
            )
        else:
            _requeue(held, now, now + timedelta(seconds=retry_delay(lease.delivery_count, result)))
        PushEndpoint.objects.filter(pk=delivery.endpoint_id, failing_since__isnull=True).update(
            failing_since=now, updated_at=now
        )
    _count(result.outcome, [result])
    if result.outcome == GONE:
        _disable(delivery, PushEndpoint.DisabledReason.GONE, result, now, PushEndpoint.objects.filter(enabled=True))
    else:
        cutoff = now - timedelta(days=settings.BRIKK_PUSH_DISABLE_AFTER_DAYS)
        _disable(
            delivery,
            PushEndpoint.DisabledReason.FAILING,
            result,
            now,
            PushEndpoint.objects.filter(enabled=True, failing_since__lte=cutoff),
        )
    return result.outcome


def settle_acked(pairs: list[tuple[Delivery, Result]], *, now: datetime | None = None) -> None:
    """Many 2xx answers settled together, in one transaction of a fixed number of statements whatever their
    number (the dispatcher groups the answers that arrive while the previous group is written): each attempt
    recorded, each message acked while its lease still holds it, each endpoint's success noted. The same
    effect as ``settle`` for each, at a fraction of its cost."""
    if not pairs:
        return
    now = now or timezone.now()
    ids = [delivery.lease.id for delivery, _ in pairs]
    tokens = [delivery.lease.token for delivery, _ in pairs]
    with transaction.atomic():
        _record_acked_attempts(pairs, now)
        # Receipts are random and never reused, so (id in ids, receipt in tokens) holds exactly the pairs leased.
        held = MessageLog.objects.filter(pk__in=ids, receipt__in=tokens, delivery_state=MessageLog.Delivery.LEASED)
        acked = held.update(
            delivery_state=MessageLog.Delivery.ACKED, acked_at=now, receipt="", leased_until=None, updated_at=now
        )
        # At most one write a second per endpoint for its successes (a busy endpoint's row stays cool).
        stale = Q(last_success_at__isnull=True) | Q(last_success_at__lt=now - timedelta(seconds=1))
        PushEndpoint.objects.filter(pk__in={delivery.endpoint_id for delivery, _ in pairs}).filter(
            stale | Q(failing_since__isnull=False)
        ).update(last_success_at=now, failing_since=None, updated_at=now)
        if acked == len(pairs):
            leases = [delivery.lease for delivery, _ in pairs]
        else:  # an API ack or a sweep took some meanwhile: observe only those this group acked
            mine = set(MessageLog.objects.filter(pk__in=ids, acked_at=now).values_list("pk", flat=True))
            leases = [delivery.lease for delivery, _ in pairs if delivery.lease.id in mine]
        transaction.on_commit(lambda: [_observe_ack(lease, now) for lease in leases])
    _count(ACKED, [result for _, result in pairs])


def _count(outcome: str, results: list[Result]) -> None:
    metrics.PUSHES.labels(outcome=outcome).inc(len(results))
    for result in results:
        if result.latency_ms is not None:
            metrics.PUSH_LATENCY.observe(result.latency_ms / 1000)


def _record_acked_attempts(pairs: list[tuple[Delivery, Result]], now: datetime) -> None:
    """Each answer into its attempt row: one parameterised UPDATE sent for every row at once (``executemany``,
    which psycopg pipelines into one round trip). Django's ``bulk_update`` builds a CASE per field and row, and
    cost more CPU than everything else the dispatcher does (yappi, 2,000 pushes). The model describes the table:
    only its quoted names are interpolated, every value is a parameter."""
    quote, meta = connection.ops.quote_name, DeliveryAttempt._meta
    column = {name: quote(meta.get_field(name).column) for name in _ATTEMPT_COLUMNS}
    sql = f"""
        UPDATE {quote(meta.db_table)} SET {column["status_code"]} = %s, {column["latency_ms"]} = %s,
            {column["error"]} = %s, {column["response_excerpt"]} = %s, {column["outcome"]} = %s,
            {column["ended_at"]} = %s
        WHERE {column["message"]} = %s AND {column["token"]} = %s AND {column["kind"]} = %s AND {column["outcome"]} = ''
    """  # noqa: S608 - only quoted names are interpolated
    ended_at = connection.ops.adapt_datetimefield_value(now)
    message_id = MessageLog._meta.pk
    rows = [
        (
            result.status_code,
            result.latency_ms,
            result.error[:ERROR_CHARS],
            result.excerpt,
            DeliveryAttempt.Outcome.ACKED.value,
            ended_at,
            message_id.get_db_prep_value(delivery.lease.id, connection),
            delivery.lease.token,
            DeliveryAttempt.Kind.PUSH.value,
        )
        for delivery, result in pairs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


_ATTEMPT_COLUMNS = (
    "status_code",
    "latency_ms",
    "error",
    "response_excerpt",
    "outcome",
    "ended_at",
    "message",
    "token",
    "kind",
)


def _requeue(held, now: datetime, available_at: datetime) -> None:
    held.update(
        delivery_state=MessageLog.Delivery.QUEUED,
        available_at=available_at,
        receipt="",
        leased_until=None,
        updated_at=now,
    )


def _observe_ack(lease: leasing.Lease, now: datetime) -> None:
    metrics.INBOX_ACKS.inc()
    metrics.ACCEPTED_TO_ACKED.observe(max((now - lease.received_at).total_seconds(), 0))


def _disable(delivery: Delivery, reason: str, result: Result, now: datetime, candidates) -> None:
    endpoint = candidates.filter(pk=delivery.endpoint_id).first()
    if endpoint is None:
        return
    details = {"message_id": str(delivery.lease.id), "status_code": result.status_code, "error": result.error}
    if endpoint.failing_since is not None:
        details["failing_since"] = endpoint.failing_since.isoformat()
    if push_endpoints.disable(endpoint, reason, details=details, now=now):
        logger.warning("push endpoint %s disabled (%s)", endpoint.pk, reason)


# --- The request (asynchronous, no database) --------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a push connects: the checked address in the URL, the name in Host and SNI."""

    url: str
    address: str
    host_header: str
    sni_hostname: str | None


def target_of(url: str) -> Target:
    """Check the URL's scheme and resolve its host to addresses a push may reach (blocking: DNS), or raise
    AddressRefused. The URL returned carries the first checked address, so the connection cannot go elsewhere."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise addresses.AddressRefused("the URL is not an http(s) URL")
    if parts.scheme == "http" and not settings.BRIKK_WEBHOOK_ALLOW_HTTP:
        raise addresses.AddressRefused("plain http is not allowed (https only)")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    networks = addresses.parse_networks(settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS)
    address = addresses.resolve(host, port, networks)[0]
    netloc = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
    try:
        ascii_host = host if _is_ip(host) else host.encode("idna").decode("ascii")
    except UnicodeError:
        raise addresses.AddressRefused("the host name is not valid") from None
    host_header = ascii_host if parts.port is None else f"{ascii_host}:{parts.port}"
    if ":" in ascii_host and parts.port is None:
        host_header = f"[{ascii_host}]"
    elif ":" in ascii_host:
        host_header = f"[{ascii_host}]:{parts.port}"
    pinned = SplitResult(parts.scheme, netloc, parts.path or "/", parts.query, "")
    sni = ascii_host if parts.scheme == "https" and not _is_ip(host) else None
    return Target(urlunsplit(pinned), str(address), host_header, sni)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def headers_for(delivery: Delivery, timestamp: int) -> dict:
    """The Standard Webhooks headers of one attempt: signed with every current secret (the package's own
    signing, space-separated)."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    message_id = str(delivery.lease.id)
    signatures = " ".join(Webhook(secret).sign(message_id, moment, delivery.body) for secret in delivery.secrets)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "user-agent": f"Brikk/{settings.BRIKK_VERSION}",
    }


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(moment.timestamp() - (time.time() if now is None else now), 0.0)


class Clients:
    """Keep-alive connection pools (aiohttp sessions), one per (endpoint, address, TLS name): never shared between
    names, so a TLS connection is only reused for the name it was verified for; at most
    BRIKK_PUSH_CONCURRENCY_PER_ENDPOINT connections each. The least recently used are closed beyond ``capacity``.

    aiohttp rather than httpx here: on this 2-core machine httpx's asynchronous client cost 2.2-2.6 ms of CPU per
    request against 0.23-0.27 ms for aiohttp (the same receiver, 8 in flight, 2,000 requests), and the dispatcher
    is CPU-bound on it."""

    def __init__(self, capacity: int = 1000):
        self.capacity = capacity
        self._sessions: OrderedDict[tuple, aiohttp.ClientSession] = OrderedDict()
        self._targets: dict[tuple, tuple[float, Target]] = {}

    async def target(self, url: str) -> Target:
        """``target_of(url)``, remembered for TARGET_TTL_SECONDS (resolving is a thread hop and a DNS query per
        push otherwise). The connection still goes only to the address that was checked; a refusal is never kept."""
        key = (url, settings.BRIKK_WEBHOOK_ALLOW_HTTP, tuple(settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS or ()))
        cached = self._targets.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        target = await asyncio.to_thread(target_of, url)
        if len(self._targets) >= self.capacity:
            self._targets.clear()
        self._targets[key] = (time.monotonic() + TARGET_TTL_SECONDS, target)
        return target

    def get(self, endpoint_id, target: Target) -> aiohttp.ClientSession:
        key = (str(endpoint_id), target.address, target.sni_hostname)
        session = self._sessions.pop(key, None)
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=settings.BRIKK_PUSH_CONCURRENCY_PER_ENDPOINT, ssl=_tls_context(), keepalive_timeout=30
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),  # send() bounds each attempt itself
                trust_env=False,  # no proxy from the environment: the connection goes to the checked address
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),
                auto_decompress=False,  # the excerpt is the answer's first bytes as sent
            )
        self._sessions[key] = session
        while len(self._sessions) > self.capacity:
            _, oldest = self._sessions.popitem(last=False)
            asyncio.get_running_loop().create_task(oldest.close())
        return session

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), OrderedDict()
        for session in sessions:
            await session.close()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One certificate store for every pool (building one per pool costs ~25 ms): the CAs of certifi, the
    hostname checked against the TLS name (SNI) of each connection."""
    return ssl.create_default_context(cafile=certifi.where())


def _short(error: BaseException, delivery: Delivery, target: Target | None) -> str:
    """A short error without the URL (which may carry a token in its query) or anything else of the request."""
    text = f"{error.__class__.__name__}: {error}".strip().rstrip(":")
    for secret_bearing in filter(None, (delivery.url, target.url if target else None)):
        text = text.replace(secret_bearing, "<url>")
    return text[:ERROR_CHARS]


async def send(delivery: Delivery, clients: Clients, *, timeout: float | None = None) -> Result:
    """One attempt: resolve and check the address (off the loop), POST, read the answer's start."""
    timeout = settings.BRIKK_PUSH_TIMEOUT_SECONDS if timeout is None else timeout
    started = time.monotonic()
    target = None
    try:
        target = await clients.target(delivery.url)
    except addresses.AddressRefused as refused:
        return Result(error=f"refused: {refused}"[:ERROR_CHARS], outcome=REFUSED)
    headers = headers_for(delivery, int(time.time())) | {"host": target.host_header}
    session = clients.get(delivery.endpoint_id, target)
    tls_name = {"server_hostname": target.sni_hostname} if target.sni_hostname else {}
    sent = time.monotonic()
    try:
        async with (
            asyncio.timeout(timeout),
            session.post(
                target.url, data=delivery.body.encode(), headers=headers, allow_redirects=False, **tls_name
            ) as response,
        ):
            excerpt = await _read_start(response)
    except TimeoutError:
        return Result(latency_ms=_ms(sent), error=f"no answer within {timeout:g} s", outcome=TIMEOUT)
    except (aiohttp.ClientError, OSError) as error:
        return Result(latency_ms=_ms(sent), error=_short(error, delivery, target), outcome=CONNECTION_ERROR)
    status = response.status
    result = Result(status_code=status, latency_ms=_ms(sent), excerpt=excerpt)
    if 200 <= status < 300:
        result.outcome = ACKED
    elif status == 410:
        result.outcome, result.error = GONE, "410 Gone: the endpoint is disabled"
    else:
        result.outcome, result.error = HTTP_ERROR, f"HTTP {status}"
        if status in (429, 503):
            result.retry_after = parse_retry_after(response.headers.get("retry-after"))
    logger.debug("push %s to endpoint %s: %s in %.1f ms", delivery.lease.id, delivery.endpoint_id, status, _ms(started))
    return result


async def _read_start(response: aiohttp.ClientResponse) -> str:
    """The first EXCERPT_BYTES of the body, decoded safely (invalid UTF-8 and NUL replaced); a small body is
    read to its end so that its connection is kept alive (a larger one closes it)."""
    read = bytearray()
    async for chunk in response.content.iter_any():
        read += chunk
        if len(read) >= READ_AT_MOST:
            break
    return bytes(read[:EXCERPT_BYTES]).decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 3)


# --- One pass (tests, by hand) and the long-running dispatcher --------------------------------------------


def push_due(*, now: datetime | None = None, limit: int = 100) -> list[str]:
    """Lease what is due, push it all at once, settle: the outcomes, in message order. ``now`` drives the
    schedule in tests (leases and retries are computed from it)."""
    deliveries = lease_due(now=now, limit=limit)
    if not deliveries:
        return []

    async def all_of_them():
        clients = Clients()
        try:
            return await asyncio.gather(*(send(delivery, clients) for delivery in deliveries))
        finally:
            await clients.aclose()

    pairs = list(zip(deliveries, asyncio.run(all_of_them()), strict=True))
    settle_acked([(delivery, result) for delivery, result in pairs if result.outcome == ACKED], now=now)
    return [
        result.outcome if result.outcome == ACKED else settle(delivery, result, now=now) for delivery, result in pairs
    ]


def _db_step(function, *args, **kwargs):
    """A database step on one of the dispatcher's threads; its connection goes back to the pool after."""
    try:
        return function(*args, **kwargs)
    finally:
        close_old_connections()


class Dispatcher:
    """Many deliveries in flight (BRIKK_PUSH_MAX_IN_FLIGHT), at most BRIKK_PUSH_CONCURRENCY_PER_ENDPOINT per
    endpoint, so a slow endpoint delays no other. Leases more whenever a message becomes queued anywhere
    (wakeup.ANY) or a delivery ends; otherwise sleeps until the next retry or lease end is due."""

    def __init__(self, *, host: str | None = None, database_threads: int | None = None):
        self.host = host or socket.gethostname()
        self.in_flight: dict[str, int] = defaultdict(int)
        self.total = 0
        threads = database_threads or (4 if connection.vendor == "postgresql" else 1)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="brikk-push-db")
        self._clients = Clients()
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._waiter: wakeup.Waiter | None = None
        self._acks: list[tuple[Delivery, Result, asyncio.Future]] = []
        self._settling = False
        self.delivered = 0

    async def _db(self, function, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(_db_step, function, *args, **kwargs))

    def stop(self) -> None:
        """Lease nothing more; the deliveries in flight finish (or their leases run out)."""
        self._stopping = True
        if self._waiter is not None:
            self._waiter.wake()

    async def run(self, ready: threading.Event | None = None) -> None:
        try:
            async with wakeup.subscription(wakeup.ANY) as waiter:
                self._waiter = waiter
                if ready is not None:
                    ready.set()
                logger.info("push dispatcher %s running", self.host)
                await self._loop(waiter)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=settings.BRIKK_PUSH_TIMEOUT_SECONDS + 5)
        finally:
            await self._clients.aclose()
            self._executor.shutdown(wait=True)

    async def _loop(self, waiter: wakeup.Waiter) -> None:
        while not self._stopping:
            free = settings.BRIKK_PUSH_MAX_IN_FLIGHT - self.total
            deliveries: list[Delivery] = []
            try:
                if free > 0:
                    deliveries = await self._db(lease_due, limit=free, busy=dict(self.in_flight), host=self.host)
                    for delivery in deliveries:
                        self._start(delivery)
                if 0 < free == len(deliveries):
                    continue  # maybe more
                if free <= 0:
                    next_in = None  # a delivery that ends wakes the loop
                elif self.total:
                    # Each delivery that ends wakes the loop, which leases again; the database is asked when the
                    # next retry is due only once nothing is in flight (a retry may start up to this late).
                    next_in = IN_FLIGHT_RECHECK_SECONDS
                else:
                    next_in = await self._db(next_due_in)
            except Exception:  # a database outage: log, wait a moment, look again
                logger.exception("push dispatcher could not lease")
                next_in = 1.0
            await waiter.wait(next_in)

    async def _db_retrying(self, function, *args):
        for pause in SETTLE_RETRIES:
            try:
                return await self._db(function, *args)
            except DatabaseError:  # a moment's outage or lock: try again before giving the lease up
                if pause is None:
                    raise
                await asyncio.sleep(pause)

    async def _settle_with_others(self, delivery: Delivery, result: Result) -> None:
        """Group commit: the 2xx answers that arrive while a group is being written are settled together next."""
        future = asyncio.get_running_loop().create_future()
        self._acks.append((delivery, result, future))
        if not self._settling:
            self._settling = True
            task = asyncio.get_running_loop().create_task(self._settle_groups())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await future

    async def _settle_groups(self) -> None:
        try:
            while self._acks:
                group, self._acks = self._acks[:SETTLE_GROUP], self._acks[SETTLE_GROUP:]
                try:
                    await self._db_retrying(settle_acked, [(delivery, result) for delivery, result, _ in group])
                except Exception as error:  # each delivery logs it; the leases run out and they are pushed again
                    for *_, future in group:
                        future.set_exception(error)
                else:
                    for *_, future in group:
                        future.set_result(None)
        finally:
            self._settling = False

    def _start(self, delivery: Delivery) -> None:
        key = str(delivery.endpoint_id)
        self.in_flight[key] += 1
        self.total += 1
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery, key: str) -> None:
        holding = True  # the endpoint's slot
        try:
            result = await send(delivery, self._clients)
            if result.outcome == ACKED:
                # The endpoint is done with it: its slot is free while the answer is written (the message stays
                # leased until then, so nobody takes it meanwhile). A failure keeps its slot until settled.
                self._release(key)
                holding = False
                await self._settle_with_others(delivery, result)
            else:
                await self._db_retrying(settle, delivery, result)
            self.delivered += 1
        except Exception:  # the lease runs out and the message is pushed again
            logger.exception("push of %s not settled", delivery.lease.id)
        finally:
            if holding:
                self._release(key)
            self.total -= 1
            if self._waiter is not None:
                self._waiter.wake()  # a slot of BRIKK_PUSH_MAX_IN_FLIGHT is free

    def _release(self, key: str) -> None:
        self.in_flight[key] -= 1
        if not self.in_flight[key]:
            del self.in_flight[key]
        if self._waiter is not None:
            self._waiter.wake()  # the endpoint has a free slot


class InProcess:
    """The embedded defaults' dispatcher (BRIKK_PUSH_IN_PROCESS): a daemon thread with its own event loop,
    started by the first message committed while an endpoint is enabled."""

    def __init__(self):
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: Dispatcher | None = None

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ensure_running(self) -> None:
        with self._lock:
            if self.running():
                return
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(ready,), name="brikk-push", daemon=True)
            self._thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        async def main():
            self._loop = asyncio.get_running_loop()
            self._dispatcher = Dispatcher(host=f"{socket.gethostname()} (in process)")
            await self._dispatcher.run(ready)

        try:
            asyncio.run(main())
        finally:
            close_old_connections()

    def stop(self, timeout: float = 30) -> None:
        with self._lock:
            thread, loop, dispatcher = self._thread, self._loop, self._dispatcher
            self._thread = self._loop = self._dispatcher = None
        if thread is None:
            return
        if loop is not None and dispatcher is not None:
            loop.call_soon_threadsafe(dispatcher.stop)
        thread.join(timeout)


in_process = InProcess()


def on_announced(recipient: str) -> None:
    """wakeup's hook after an in-process announcement: start the in-process dispatcher once an endpoint is
    enabled (one cheap query until it runs, none after)."""
    if not settings.BRIKK_PUSH_IN_PROCESS or in_process.running():
        return
    if PushEndpoint.objects.filter(enabled=True).exists():
        in_process.ensure_running()
