"""Layer 4, rate limits: a true sliding window per caller (agent key or user) and per organization.

Both throttles use one Redis Lua script (a sorted set of request timestamps per window, trimmed,
counted and appended atomically, with Redis' own clock), so concurrent requests can never
overshoot. On embedded defaults (no Redis cache) an in-process window with the same semantics is
used. Limits come from the organization's plan, else BRIKK_RATE_LIMIT_* settings; organization
owners and admins are exempt. If Redis is unreachable the request is served unlimited
(BRIKK_RATE_LIMIT_FAIL_OPEN, audited as rate_limit.degraded) or refused with 503.
"""

import logging
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

from audit.services import record
from brikk.errors import ServiceUnavailable
from coordination import agent_context

logger = logging.getLogger("brikk.ratelimit")

WINDOW_SECONDS = 60
KEY_PREFIX = "brikk:rl:v1:"
DECISIONS_ATTRIBUTE = "brikk_rate_limits"
DEGRADED_ATTRIBUTE = "brikk_rate_limit_degraded"

# KEYS[1] = window; ARGV = window ms, limit, unique member. Returns {allowed, count, ms until a slot frees}.
SLIDING_WINDOW_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  count = count + 1
  allowed = 1
end
local reset = window
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
redis.call('PEXPIRE', KEYS[1], window)
return {allowed, count, reset}
"""


@dataclass(frozen=True)
class Decision:
    policy: str
    limit: int
    allowed: bool
    count: int
    reset_ms: int
    key: str
    member: str

    @property
    def remaining(self) -> int:
        return max(self.limit - self.count, 0)

    @property
    def reset_seconds(self) -> int:
        return max(math.ceil(self.reset_ms / 1000), 1)


class RedisWindow:
    """The sliding window in Redis, through django-redis' connection (short socket timeouts)."""

    _scripts: dict[int, object] = {}

    def _client(self):
        from django_redis import get_redis_connection

        return get_redis_connection("default")

    def hit(self, key: str, limit: int, window_ms: int, member: str) -> tuple[bool, int, int]:
        client = self._client()
        script = self._scripts.get(id(client))
        if script is None:
            script = self._scripts[id(client)] = client.register_script(SLIDING_WINDOW_LUA)
        allowed, count, reset = script(keys=[key], args=[window_ms, limit, member])
        return bool(allowed), int(count), int(reset)

    def release(self, key: str, member: str) -> None:
        self._client().zrem(key, member)


class LocalWindow:
    """The same sliding window in process memory (embedded defaults: one process, no Redis)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._windows: dict[str, deque] = {}

    def hit(self, key: str, limit: int, window_ms: int, member: str) -> tuple[bool, int, int]:
        now = time.monotonic() * 1000
        with self._lock:
            window = self._windows.setdefault(key, deque())
            while window and window[0][0] <= now - window_ms:
                window.popleft()
            allowed = len(window) < limit
            if allowed:
                window.append((now, member))
            reset = window[0][0] + window_ms - now if window else window_ms
            return allowed, len(window), int(reset)

    def release(self, key: str, member: str) -> None:
        with self._lock:
            window = self._windows.get(key)
            if window is not None:
                for entry in list(window):
                    if entry[1] == member:
                        window.remove(entry)

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


local_window = LocalWindow()
redis_window = RedisWindow()


def backend():
    uses_redis = settings.CACHES["default"]["BACKEND"].startswith("django_redis")
    return redis_window if uses_redis else local_window


def is_exempt(request) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.can_write


def organization_limits(request) -> tuple[int, int]:
    """(per caller, per organization) requests per minute: the plan's, else the settings' defaults."""
    user = request.user
    if getattr(user, "kind", None) == "agent":
        context = agent_context.load(user.agent_id)
        caller, organization = context.rate_limit_agent_per_minute, context.rate_limit_org_per_minute
    else:
        plan = request.membership.organization
        caller, organization = plan.rate_limit_agent_per_minute, plan.rate_limit_org_per_minute
    return (
        caller or settings.BRIKK_RATE_LIMIT_AGENT_PER_MINUTE,
        organization or settings.BRIKK_RATE_LIMIT_ORG_PER_MINUTE,
    )


def decisions(request) -> list[Decision]:
    return getattr(request, DECISIONS_ATTRIBUTE, [])


class SlidingWindowThrottle(BaseThrottle):
    policy = ""

    def subject(self, request, limits: tuple[int, int]) -> tuple[str, int]:
        raise NotImplementedError

    def allow_request(self, request, view):
        self.decision = None
        if not settings.BRIKK_RATE_LIMIT_ENABLED or is_exempt(request) or getattr(request, DEGRADED_ATTRIBUTE, False):
            return True
        previous = decisions(request)
        if any(not d.allowed for d in previous):
            return True  # already refused by an earlier throttle: do not spend this window too
        key, limit = self.subject(request, organization_limits(request))
        member = uuid.uuid4().hex
        window = backend()
        try:
            allowed, count, reset_ms = window.hit(key, limit, WINDOW_SECONDS * 1000, member)
            if not allowed:
                for earlier in previous:  # refused: give back what the earlier throttles counted
                    window.release(earlier.key, earlier.member)
        except RedisError as exc:
            return self.redis_unavailable(request, exc)
        self.decision = Decision(self.policy, limit, allowed, count, reset_ms, key, member)
        setattr(request, DECISIONS_ATTRIBUTE, [*previous, self.decision])
        return allowed

    def redis_unavailable(self, request, exc) -> bool:
        logger.warning("rate limiting degraded: Redis unavailable (%s)", exc.__class__.__name__)
        if not settings.BRIKK_RATE_LIMIT_FAIL_OPEN:
            raise ServiceUnavailable("Rate limiting is unavailable; retry later.", details={"reason": "redis"})
        setattr(request, DEGRADED_ATTRIBUTE, True)
        record(
            "rate_limit.degraded",
            outcome="error",
            request=request,
            resource_kind="rate_limit",
            details={"error": exc.__class__.__name__, "fail_open": True},
        )
        return True

    def wait(self):
        return self.decision.reset_seconds if self.decision else None


class CallerRateThrottle(SlidingWindowThrottle):
    """Per agent (whatever key it uses) or, for a user caller, per user."""

    policy = "caller"

    def subject(self, request, limits):
        user = request.user
        if getattr(user, "kind", None) == "agent":
            return f"{KEY_PREFIX}agent:{user.agent_id}", limits[0]
        return f"{KEY_PREFIX}user:{user.pk}", limits[0]


class OrganizationRateThrottle(SlidingWindowThrottle):
    policy = "organization"

    def subject(self, request, limits):
        return f"{KEY_PREFIX}org:{request.organization_id}", limits[1]


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
