"""Password guessing is throttled on every door by one policy, on django-axes: the dashboard login, the
Django admin login and ``POST /api/v1/auth/token/``.

Failed logins are counted in the cache (Redis in production) for BRIKK_LOGIN_FAILURE_WINDOW_SECONDS, in
three windows, and a login is refused (429 with Retry-After, audited ``auth.login_throttled``) while any
is full:

- this username from this client address: BRIKK_LOGIN_MAX_FAILURES (5);
- this client address, any username: BRIKK_LOGIN_MAX_FAILURES_PER_ADDRESS (25): password spraying;
- this username, any address: BRIKK_LOGIN_MAX_FAILURES_PER_USERNAME (25): guessing one account from many.

The first is the tight one, and it locks only the pair: an intruder's failures never lock another user out
at the same address, nor the real user out at theirs. Successful logins are never counted. The client
address is the one audit rows carry (brikk.lib.context.client_ip), never a header a client could forge.
"""

import hashlib
from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_client_username
from axes.signals import user_locked_out
from django.conf import settings
from django.shortcuts import render
from rest_framework.throttling import BaseThrottle

from audit.actions import AuditAction
from audit.services import record
from brikk.lib.context import client_ip
from brikk.lib.errors import ErrorCode, json_error_view

KEY_PREFIX = "brikk:login-failures:"
MAX_USERNAME = 150


def client_address(request) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the same address audit rows carry."""
    return client_ip(getattr(request, "_request", request))


def cool_off(request=None) -> timedelta:
    """AXES_COOLOFF_TIME: how long failures are remembered, and so how long a refusal lasts at most."""
    return timedelta(seconds=settings.BRIKK_LOGIN_FAILURE_WINDOW_SECONDS)


def _username(request, credentials) -> str:
    return str(get_client_username(request, credentials) or "").strip().lower()[:MAX_USERNAME]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def windows(request, credentials) -> list[tuple[str, int]]:
    """(cache key, limit) of each window this attempt counts in."""
    address = str(client_address(request) or "unknown")
    found = [(KEY_PREFIX + "address:" + _digest(address), settings.BRIKK_LOGIN_MAX_FAILURES_PER_ADDRESS)]
    username = _username(request, credentials)
    if username:
        found += [
            (KEY_PREFIX + "pair:" + _digest(username, address), settings.BRIKK_LOGIN_MAX_FAILURES),
            (KEY_PREFIX + "username:" + _digest(username), settings.BRIKK_LOGIN_MAX_FAILURES_PER_USERNAME),
        ]
    return found


class LoginGuardBackend(AxesStandaloneBackend):
    """Axes' backend (first in AUTHENTICATION_BACKENDS: refuses a login while a window is full), except
    where no client is involved: authenticate() called without a request (manage.py, Django's test client)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class LoginGuardHandler(AxesCacheHandler):
    """Axes' cache handler with the three windows above instead of one limit for all parameters."""

    def get_failures(self, request, credentials=None) -> int:
        return max(self.cache.get(key, 0) for key, _ in windows(request, credentials))

    def is_locked(self, request, credentials=None) -> bool:
        return any(self.cache.get(key, 0) >= limit for key, limit in windows(request, credentials))

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        if request is None or getattr(request, "axes_locked_out", False):
            return  # a refused attempt is not counted: it must not extend the refusal
        timeout = int(cool_off().total_seconds())
        for key, _ in windows(request, credentials):
            try:
                self.cache.incr(key)
            except ValueError:  # no such key (first failure, or the window just ended)
                self.cache.add(key, 1, timeout=timeout)
        if self.is_locked(request, credentials):
            user_locked_out.send(
                "axes", request=request, username=_username(request, credentials), ip_address=client_address(request)
            )

    def reset_attempts(self, *, ip_address=None, username=None, ip_or_username=False) -> int:
        keys = []
        if ip_address:
            keys.append(KEY_PREFIX + "address:" + _digest(ip_address))
        if username:
            keys.append(KEY_PREFIX + "username:" + _digest(username.strip().lower()))
            if ip_address:
                keys.append(KEY_PREFIX + "pair:" + _digest(username.strip().lower(), ip_address))
        return sum(bool(self.cache.delete(key)) for key in keys)


def refuse(request, username: str) -> int:
    """Audit one refused login; the seconds to wait."""
    record(
        AuditAction.USER_LOGIN_THROTTLED,
        outcome="denied",
        request=request,
        details={"username": username[:MAX_USERNAME], "path": request.path},
    )
    return settings.BRIKK_LOGIN_FAILURE_WINDOW_SECONDS


_api_refusal = json_error_view(429, ErrorCode.RATE_LIMITED, "Too many failed logins; retry later.")


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the dashboard's and the admin's answer to a refused login."""
    username = _username(request, credentials) or request.POST.get("username", "")
    retry_after = refuse(request, username)
    if request.path.startswith("/api/"):
        response = _api_refusal(request)
    else:
        context = {"retry_seconds": retry_after, "username": username}
        response = render(request, "registration/throttled.html", context, status=429)
    response["Retry-After"] = str(retry_after)
    return response


class LoginGuardThrottle(BaseThrottle):
    """The same policy on the token endpoint (DRF): refused before the password is even checked."""

    def allow_request(self, request, view):
        from axes.handlers.proxy import AxesProxyHandler

        data = request.data if isinstance(request.data, dict) else {}
        credentials = {"username": str(data.get("username", ""))}
        if AxesProxyHandler.is_allowed(request._request, credentials):
            return True
        self.retry_after = refuse(request._request, _username(request._request, credentials))
        return False

    def wait(self):
        return self.retry_after
