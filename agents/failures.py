"""Failed API key attempts, counted per key prefix and per client address and refused before hashing.

A presented key whose secret does not match (or whose prefix is unknown) is a failure. Once a known
prefix has ``BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX`` failures, or a client address
``BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS`` (brikk.lib.context.client_ip, never a header a client could
forge), within ``BRIKK_API_KEY_FAILURE_WINDOW_SECONDS``, further attempts are answered 429 without running
the hash, until that window ends (a fixed window that starts with its first attempt; ``Retry-After`` is
what is left of it).

Every attempt about to be hashed is counted first, and checked against the limits in the same step (one
Redis round trip); an attempt whose hash then matches is given back, so the counts are failures.

A key this process has already verified is recognised without hashing (agents.keys), is not counted and
is not refused: failures under a prefix, which is public, do not lock its real owner out. Revoked, expired
or disabled keys with the right secret are not failures here: they cost no guessing and are refused as
they are.

The counts live in Redis, shared by every worker; without Redis, or while it is unreachable (and for a
moment after it failed: brikk.lib.outage), in this process.
"""

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from brikk.lib import outage

logger = logging.getLogger("brikk.auth")

NAMESPACE = "brikk:keyfail:v1:"
# The in-process counters never hold more than this many windows (expired ones are dropped first).
LOCAL_MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class Refused:
    scope: str  # "prefix" or "address"
    retry_after: int  # seconds


def _counters(prefix: str | None, address: str | None) -> list[tuple[str, str, int]]:
    """(scope, counter name, limit) for what is counted: a known prefix, the client's address."""
    counted = []
    if prefix:
        counted.append(("prefix", f"{NAMESPACE}prefix:{prefix}", settings.BRIKK_API_KEY_MAX_FAILURES_PER_PREFIX))
    if address:
        counted.append(("address", f"{NAMESPACE}addr:{address}", settings.BRIKK_API_KEY_MAX_FAILURES_PER_ADDRESS))
    return counted


# KEYS = the counters; ARGV[1] = window seconds. Counts one attempt on each counter (a window starts with
# its first attempt) and returns {attempts 1, ms left 1, attempts 2, ...}.
COUNT_ATTEMPT_LUA = """
local result = {}
for i, key in ipairs(KEYS) do
  local attempts = redis.call('INCR', key)
  local left = redis.call('PTTL', key)
  if left < 0 then
    redis.call('EXPIRE', key, ARGV[1])
    left = tonumber(ARGV[1]) * 1000
  end
  table.insert(result, attempts)
  table.insert(result, left)
end
return result
"""


class RedisCounters:
    """Fixed windows in Redis through django-redis' connection (its short socket timeouts)."""

    _scripts: dict[int, object] = {}

    def _client(self):
        from django_redis import get_redis_connection

        return get_redis_connection("default")

    def count(self, names: list[str], window_seconds: int) -> list[tuple[int, int]]:
        """One more attempt on each counter: (attempts, ms left in the window) each, in one round trip."""
        client = self._client()
        script = self._scripts.get(id(client))
        if script is None:
            script = self._scripts[id(client)] = client.register_script(COUNT_ATTEMPT_LUA)
        counted = script(keys=names, args=[window_seconds])
        return [(int(counted[i]), int(counted[i + 1])) for i in range(0, len(counted), 2)]

    def give_back(self, names: list[str]) -> None:
        pipe = self._client().pipeline(transaction=False)
        for name in names:
            pipe.decr(name)
        pipe.execute()


class LocalCounters:
    """The same fixed windows in process memory (embedded defaults, or Redis unreachable)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, float]] = {}  # name -> (attempts, monotonic end of window)

    def count(self, names: list[str], window_seconds: int) -> list[tuple[int, int]]:
        now = time.monotonic()
        counted = []
        with self._lock:
            if len(self._windows) >= LOCAL_MAX_ENTRIES:
                self._windows = {name: entry for name, entry in self._windows.items() if entry[1] > now}
                if len(self._windows) >= LOCAL_MAX_ENTRIES:
                    self._windows.clear()
            for name in names:
                attempts, ends = self._windows.get(name, (0, now))
                attempts, ends = (attempts + 1, ends) if ends > now else (1, now + window_seconds)
                self._windows[name] = (attempts, ends)
                counted.append((attempts, int((ends - now) * 1000)))
        return counted

    def give_back(self, names: list[str]) -> None:
        with self._lock:
            for name in names:
                if name in self._windows:
                    attempts, ends = self._windows[name]
                    self._windows[name] = (max(attempts - 1, 0), ends)

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


local_counters = LocalCounters()
redis_counters = RedisCounters()


def _backends():
    """Where the counts live: Redis when it is the cache, with this process as the fallback."""
    if settings.CACHES["default"]["BACKEND"].startswith("django_redis"):
        return (redis_counters, local_counters)
    return (local_counters,)


@dataclass(frozen=True)
class Attempt:
    """A counted attempt that is about to be hashed; ``refused`` when a count is over its limit."""

    names: tuple[str, ...]
    backend: object
    refused: Refused | None


def attempt(prefix: str | None, address: str | None) -> Attempt:
    """Count an attempt against the (known) prefix and the client's address before its hash is checked.

    Counting first costs one round trip for the whole check; a hash that then matches gives its attempt back
    (``succeeded``), so what the windows hold is failures. Over a limit, the attempt is refused (``refused``)
    and must not be hashed."""
    counted = _counters(prefix, address)
    names = tuple(name for _, name, _ in counted)
    if not names:
        return Attempt(names, None, None)
    window = settings.BRIKK_API_KEY_FAILURE_WINDOW_SECONDS
    for backend in _backends():
        if backend is redis_counters and outage.redis.active:
            continue  # Redis failed a moment ago: do not wait for it on every attempt
        try:
            attempts = backend.count(list(names), window)
        except RedisError as exc:
            outage.redis.failed()
            logger.warning("failed-key attempts counted in process: Redis unavailable (%s)", exc.__class__.__name__)
            continue
        over = [
            Refused(scope, max((left_ms + 999) // 1000, 1))
            for (scope, _, limit), (count, left_ms) in zip(counted, attempts, strict=True)
            if count > limit
        ]
        return Attempt(names, backend, max(over, key=lambda refusal: refusal.retry_after, default=None))
    raise AssertionError("the in-process counters cannot fail")  # pragma: no cover


def succeeded(counted: Attempt) -> None:
    """The hash matched: the attempt was no failure, give it back."""
    if not counted.names or (counted.backend is redis_counters and outage.redis.active):
        return
    try:
        counted.backend.give_back(list(counted.names))
    except RedisError as exc:
        outage.redis.failed()
        logger.warning("failed-key attempt not given back: Redis unavailable (%s)", exc.__class__.__name__)
