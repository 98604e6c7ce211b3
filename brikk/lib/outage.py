"""Fail fast while Redis is unreachable.

Stopped, Redis refuses a connection at once; unreachable behind a dead route, or hung, it makes every call
wait out its socket timeout (0.5 s, settings.CACHES), on every request that touches it. ``redis`` remembers a
failed call for ``PAUSE_SECONDS`` in this process: callers that have a fallback (the rate limiter failing open,
the failed-key counts kept in process) take it at once meanwhile, and the first call after the pause tries
Redis again. Health checks and metrics never pause: they report what Redis does now.
"""

import time

from redis.exceptions import ConnectionError as RedisConnectionError

PAUSE_SECONDS = 5.0


class RedisPaused(RedisConnectionError):
    """Not tried: Redis failed less than PAUSE_SECONDS ago."""


class Pause:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self._until = 0.0

    @property
    def active(self) -> bool:
        return time.monotonic() < self._until

    def failed(self) -> None:
        self._until = time.monotonic() + self.seconds

    def reset(self) -> None:
        self._until = 0.0


redis = Pause(PAUSE_SECONDS)
