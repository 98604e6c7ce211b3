"""Per-request context (correlation id, organization, actor) shared by logs and audit rows.

A ``contextvars.ContextVar`` works for threads, gunicorn workers and asyncio alike.
"""

import ipaddress
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, replace

from django.conf import settings

# An incoming X-Request-ID is kept only if it is short and plain; anything else is replaced.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


@dataclass(frozen=True)
class RequestContext:
    request_id: str = "-"
    organization_id: str | None = None
    actor_kind: str | None = None
    actor_id: str | None = None
    # Where the request came from, so audit rows written deep in a service still carry it.
    client_ip: str | None = None
    user_agent: str = ""


# RequestContext is frozen, so one shared default instance is safe.
_current: ContextVar[RequestContext] = ContextVar("brikk_request_context", default=RequestContext())  # noqa: B039


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(incoming: str | None) -> str:
    """The caller's X-Request-ID when it is well formed, otherwise a fresh one."""
    if incoming and REQUEST_ID_PATTERN.match(incoming):
        return incoming
    return new_request_id()


def client_ip(request) -> str | None:
    """The client's address: the connection's (REMOTE_ADDR), or behind the reverse proxy
    (DJANGO_BEHIND_PROXY) the address the proxy saw, which it puts last in X-Forwarded-For.

    Only the last entry is the proxy's own word; anything before it came from the client. With the
    flag off the header is ignored, since a client could forge it.
    """
    if request is None:
        return None
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR") or None


def user_agent_of(request) -> str:
    return request.META.get("HTTP_USER_AGENT", "")[:512]


def current() -> RequestContext:
    return _current.get()


def set_context(context: RequestContext):
    return _current.set(context)


def reset_context(token) -> None:
    _current.reset(token)


def update_context(**changes) -> None:
    """Add what becomes known during the request (organization, actor) to the context."""
    _current.set(replace(_current.get(), **changes))
