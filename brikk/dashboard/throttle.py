"""Failed-login throttle on django-ratelimit: counted per client IP and per username.

Only failures count, so a user who types the password right is never slowed down; once either
counter reaches BRIKK_LOGIN_MAX_FAILURES in its window, further attempts get a 429 page.
"""

from django.conf import settings
from django_ratelimit.core import get_usage

GROUP = "dashboard.login"


def _rate() -> str:
    return f"{settings.BRIKK_LOGIN_MAX_FAILURES}/{settings.BRIKK_LOGIN_FAILURE_WINDOW_SECONDS}s"


def _username_key(username: str):
    normalized = username.strip().lower()[:150]
    return lambda group, request: f"user:{normalized}"


def _keys(username: str) -> list:
    keys = ["ip"]
    if username.strip():
        keys.append(_username_key(username))
    return keys


def login_blocked(request, username: str) -> bool:
    for key in _keys(username):
        usage = get_usage(request, group=GROUP, key=key, rate=_rate(), increment=False)
        if usage is not None and usage["count"] >= usage["limit"]:
            return True
    return False


def count_failure(request, username: str) -> None:
    for key in _keys(username):
        get_usage(request, group=GROUP, key=key, rate=_rate(), increment=True)
