"""Layer 4, rate limits: a true sliding window per caller (agent key or user) and per organization.

One throttle class checks both windows with one Redis Lua script (a sorted set of request
timestamps per window, trimmed and counted with Redis' own clock): the request is admitted only if
both windows have room, and then counts in both, atomically, so concurrent requests can never
overshoot and a refusal spends neither window. On embedded defaults (no Redis cache) an in-process
window with the same semantics is used. Limits come from the organization's plan (for an agent,
from its key identity, read with the key), else BRIKK_RATE_LIMIT_* settings. The caller's window is the
sending agent's: a person sending as an agent (owner or admin) counts in that agent's window, so nobody gets
around an agent's limit. If Redis is unreachable the request is served unlimited
(BRIKK_RATE_LIMIT_FAIL_OPEN, audited as rate_limit.degraded) or refused with 503. Failing open, the requests
of the next brikk.lib.outage.PAUSE_SECONDS are served unlimited without trying Redis, so that a Redis that
hangs (each call waiting out its socket timeout) does not slow every request down.
"""

import logging
import math
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

from audit.actions import AuditAction
from audit.services import record
from brikk.lib import outage
from brikk.lib.errors import ServiceUnavailable

logger = logging.getLogger("brikk.ratelimit")

WINDOW_SECONDS = 60
KEY_PREFIX = "brikk:rl:v1:"
DECISIONS_ATTRIBUTE = "brikk_rate_limits"
MAX_BATCH_MESSAGES = 100  # envelopes in one batch send (coordination/batch.py)

# KEYS = one window per policy; ARGV = window ms, unique member, the limit of each window, then optionally the
# cost of each window (default 1: one request; a batch costs one per message, coordination/batch.py).
# Returns {admitted, count 1, ms until a slot frees 1, count 2, ...}.
SLIDING_WINDOWS_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = tonumber(ARGV[1])
local counts = {}
local costs = {}
local admitted = 1
for i, key in ipairs(KEYS) do
  costs[i] = tonumber(ARGV[#KEYS + i + 2] or 1)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  counts[i] = redis.call('ZCARD', key)
  if counts[i] + costs[i] > tonumber(ARGV[i + 2]) then admitted = 0 end
end
local result = {admitted}
for i, key in ipairs(KEYS) do
  if admitted == 1 then
    if costs[i] == 1 then
      redis.call('ZADD', key, now, ARGV[2])
    else
      local members = {}
      for n = 1, costs[i] do
        table.insert(members, now)
        table.insert(members, ARGV[2] .. ':' .. n)
      end
      redis.call('ZADD', key, unpack(members))
    end
    counts[i] = counts[i] + costs[i]
  end
  local reset = window
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if oldest[2] then reset = tonumber(oldest[2]) + window - now end
  redis.call('PEXPIRE', key, window)
  table.insert(result, counts[i])
  table.insert(result, reset)
end
return result
"""


@dataclass(frozen=True)
class Decision:
    policy: str
    limit: int
    allowed: bool
    count: int
    reset_ms: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.count, 0)

    @property
    def reset_seconds(self) -> int:
        return max(math.ceil(self.reset_ms / 1000), 1)


class RedisWindow:
    """The sliding windows in Redis, through django-redis' connection (short socket timeouts)."""

    _scripts: dict[int, object] = {}

    def _client(self):
        from django_redis import get_redis_connection

        return get_redis_connection("default")

    def hit(
        self, windows: list[tuple[str, int]], window_ms: int, member: str, costs: list[int] | None = None
    ) -> tuple[bool, list[tuple[int, int]]]:
        """(admitted, [(count, ms until a slot frees) per window]) for windows of (key, limit); ``costs``: what
        this request counts in each window (default 1 each)."""
        client = self._client()
        script = self._scripts.get(id(client))
        if script is None:
            script = self._scripts[id(client)] = client.register_script(SLIDING_WINDOWS_LUA)
        admitted, *counted = script(
            keys=[key for key, _ in windows],
            args=[window_ms, member, *(limit for _, limit in windows), *(costs or ())],
        )
        return bool(admitted), [(int(counted[i]), int(counted[i + 1])) for i in range(0, len(counted), 2)]


class LocalWindow:
    """The same sliding windows in process memory (embedded defaults: one process, no Redis)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._windows: dict[str, deque] = {}

    def hit(
        self, windows: list[tuple[str, int]], window_ms: int, member: str, costs: list[int] | None = None
    ) -> tuple[bool, list[tuple[int, int]]]:
        now = time.monotonic() * 1000
        costs = costs or [1] * len(windows)
        with self._lock:
            hits = [self._windows.setdefault(key, deque()) for key, _ in windows]
            for hit in hits:
                while hit and hit[0] <= now - window_ms:
                    hit.popleft()
            admitted = all(len(hit) + cost <= limit for hit, (_, limit), cost in zip(hits, windows, costs, strict=True))
            if admitted:
                for hit, cost in zip(hits, costs, strict=True):
                    hit.extend([now] * cost)
            return admitted, [(len(hit), int(hit[0] + window_ms - now if hit else window_ms)) for hit in hits]

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


local_window = LocalWindow()
redis_window = RedisWindow()


def backend():
    uses_redis = settings.CACHES["default"]["BACKEND"].startswith("django_redis")
    return redis_window if uses_redis else local_window


def sending_agent(request, data=None) -> str | None:
    """The agent a person sends as: the envelope's sender, when it names one (authorize() checks it
    belongs to the organization before anything is sent). ``data``: that envelope, else the request's body."""
    data = request.data if data is None else data
    sender = data.get("sender") if isinstance(data, dict) else None
    agent_id = sender.get("agent_id") if isinstance(sender, dict) else None
    try:
        return str(uuid.UUID(str(agent_id))) if agent_id is not None else None
    except ValueError:
        return None


def _caller_window(request, envelope=None) -> str:
    user = request.user
    if getattr(user, "kind", None) == "agent":
        return f"{KEY_PREFIX}agent:{user.agent_id}"
    agent_id = sending_agent(request, envelope)
    return KEY_PREFIX + (f"agent:{agent_id}" if agent_id else f"user:{user.pk}")


def _limits(request) -> tuple[int, int]:
    """The caller's and the organization's requests per minute: the plan's, else the settings' defaults; an
    agent's come with its key identity (no extra read)."""
    user = request.user
    plan = user.identity if getattr(user, "kind", None) == "agent" else request.membership.organization
    return (
        plan.rate_limit_agent_per_minute or settings.BRIKK_RATE_LIMIT_AGENT_PER_MINUTE,
        plan.rate_limit_org_per_minute or settings.BRIKK_RATE_LIMIT_ORG_PER_MINUTE,
    )


def policies(request) -> list[tuple[str, str, int, int]]:
    """(policy, window key, requests per minute, cost) for the caller and the organization: one request."""
    caller_limit, organization_limit = _limits(request)
    return [
        ("caller", _caller_window(request), caller_limit, 1),
        ("organization", f"{KEY_PREFIX}org:{request.organization_id}", organization_limit, 1),
    ]


def batch_policies(request, envelopes: list | None) -> list[tuple[str, str, int, int]]:
    """A batch counts one per envelope in the organization's window and in each sender's: an agent's batch in
    its own window; a person's in the window of each agent it sends as (``sending_agent`` of each envelope).
    ``envelopes`` None (not a batch the view will take): the request counts once, like any request."""
    if not envelopes:
        return policies(request)
    caller_limit, organization_limit = _limits(request)
    costs = Counter(_caller_window(request, envelope) for envelope in envelopes)
    return [
        *(("caller", window, caller_limit, cost) for window, cost in costs.items()),
        ("organization", f"{KEY_PREFIX}org:{request.organization_id}", organization_limit, len(envelopes)),
    ]


def batch_envelopes(data) -> list | None:
    """The envelopes of a batch body the batch send will take (1 to MAX_BATCH_MESSAGES), else None."""
    messages = data.get("messages") if isinstance(data, dict) else None
    if isinstance(messages, list) and 0 < len(messages) <= MAX_BATCH_MESSAGES:
        return messages
    return None


def decisions(request) -> list[Decision]:
    return getattr(request, DECISIONS_ATTRIBUTE, [])


class RateLimitThrottle(BaseThrottle):
    """Both policies, caller and organization, in one atomic check (one Redis round trip)."""

    def policies(self, request) -> list[tuple[str, str, int, int]]:
        return policies(request)

    def allow_request(self, request, view):
        self.refused = []
        if not settings.BRIKK_RATE_LIMIT_ENABLED:
            return True
        checked = self.policies(request)
        windows = backend()
        if windows is redis_window and settings.BRIKK_RATE_LIMIT_FAIL_OPEN and outage.redis.active:
            # Redis failed a moment ago: serve unlimited at once rather than wait out its timeout again.
            return self.redis_unavailable(request, outage.RedisPaused())
        try:
            costs = [cost for *_, cost in checked]
            admitted, counted = windows.hit(
                [(key, limit) for _, key, limit, _ in checked],
                WINDOW_SECONDS * 1000,
                uuid.uuid4().hex,
                costs if any(cost != 1 for cost in costs) else None,
            )
        except RedisError as exc:
            if windows is redis_window:
                outage.redis.failed()
            return self.redis_unavailable(request, exc)
        made = [
            Decision(policy, limit, admitted or count + cost <= limit, count, reset_ms)
            for (policy, _, limit, cost), (count, reset_ms) in zip(checked, counted, strict=True)
        ]
        setattr(request, DECISIONS_ATTRIBUTE, made)
        self.refused = [decision for decision in made if not decision.allowed]
        return admitted

    def redis_unavailable(self, request, exc) -> bool:
        logger.warning("rate limiting degraded: Redis unavailable (%s)", exc.__class__.__name__)
        if not settings.BRIKK_RATE_LIMIT_FAIL_OPEN:
            raise ServiceUnavailable("Rate limiting is unavailable; retry later.", details={"reason": "redis"})
        record(
            AuditAction.RATE_LIMIT_DEGRADED,
            outcome="error",
            request=request,
            resource_kind="rate_limit",
            details={"error": exc.__class__.__name__, "fail_open": True},
        )
        return True

    def wait(self):
        return max((decision.reset_seconds for decision in self.refused), default=None)


class BatchRateLimitThrottle(RateLimitThrottle):
    """A batch send (coordination/batch.py) counts one per envelope, all or nothing: if the whole batch does
    not fit in every window, none of it is counted and the batch is refused (429)."""

    def policies(self, request) -> list[tuple[str, str, int, int]]:
        return batch_policies(request, batch_envelopes(request.data))


def response_headers(request) -> dict[str, str]:
    """X-RateLimit-* and the IETF RateLimit-Policy / RateLimit fields for the binding policy."""
    made = decisions(request)
    if not made:
        return {}
    binding = min(made, key=lambda d: (d.remaining, -d.reset_ms))
    return {
        "X-RateLimit-Limit": str(binding.limit),
        "X-RateLimit-Remaining": str(binding.remaining),
        "X-RateLimit-Reset": str(binding.reset_seconds),
        "RateLimit-Policy": ", ".join(f'"{d.policy}";q={d.limit};w={WINDOW_SECONDS}' for d in made),
        "RateLimit": f'"{binding.policy}";r={binding.remaining};t={binding.reset_seconds}',
    }
