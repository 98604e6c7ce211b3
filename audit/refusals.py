"""Which refused API requests are audited, and how: the one home of refusal auditing.

DRF calls ``exception_handler`` for every exception raised in an API view. The response is rendered in
the one error shape (brikk.lib.errors); then the refusal is audited:

- a request guard (415, 413, 400, and 422 for a value the service cannot take): ``request.rejected`` with
  ``details.reason``; before authentication the actor is unknown, after it (a body parsed by the view, an
  invalid cursor) the actor is the caller;
- a failed authentication (401): ``auth.failed`` with the reason, in the organization of the key whose
  prefix was presented, if it is known (so that organization's owners see attempts on their keys);
- a credential refused before it was checked, after too many failures (429): ``auth.throttled``;
- a permission denial (403 from a permission class): ``permission.denied``;
- any other refusal of a view that keeps refused requests (``record_refused``, the echo): that view's
  row for it, audited with the action its error code stands for (``REFUSAL_ACTIONS``).

What cannot be stored as sent is stored escaped, and the rows say so (audit.services.record,
coordination/refusals.py). A database error while recording is never swallowed: it is logged with its
traceback and answered as the database error it is (503 if the database is unreachable, else 500),
so a refusal is either recorded or loudly not.
"""

import logging

from django.db import DatabaseError
from rest_framework import exceptions

from audit.actions import AuditAction
from audit.services import record
from brikk.lib.errors import AuthenticationThrottled, ErrorCode, UnacceptableValue, render_exception

logger = logging.getLogger("brikk.api")

GUARD_CODES = frozenset({ErrorCode.UNSUPPORTED_MEDIA_TYPE, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.PROTOCOL_ERROR})
AUTHENTICATION_FAILURES = (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)

# The audit action of a refused echo, by error code; any other code is ``echo.rejected``.
REFUSAL_ACTIONS = {
    ErrorCode.RATE_LIMITED: AuditAction.RATE_LIMIT_REFUSED,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: AuditAction.IDEMPOTENCY_CONFLICT,
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: AuditAction.IDEMPOTENCY_IN_PROGRESS,
}


def exception_handler(exc, context):
    exc, response = render_exception(exc)
    request = context.get("request")
    if exc is None or request is None:
        return response
    try:
        audit_refusal(exc, request, response, context.get("view"))
    except DatabaseError as error:
        logger.exception("could not record the refusal (%s %s)", response.status_code, response.data.get("code"))
        _, failure = render_exception(error)
        return failure
    return response


def audit_refusal(exc, request, response, view) -> None:
    code = ErrorCode(response.data["code"])
    if isinstance(exc, AUTHENTICATION_FAILURES):
        _auth_failed(exc, request)
        return
    if isinstance(exc, AuthenticationThrottled):
        _auth_throttled(exc, request)
        return
    record_refused = getattr(view, "record_refused", None)
    authenticated = getattr(request, "organization_id", None) is not None
    guard = code in GUARD_CODES or isinstance(exc, UnacceptableValue)
    if guard and not (authenticated and record_refused is not None):
        details = {"code": code, "status": response.status_code, "method": request.method, "path": request.path}
        refusal_details = getattr(exc, "details", None)
        reason = getattr(exc, "reason", None) or (
            refusal_details.get("reason") if isinstance(refusal_details, dict) else None
        )
        if reason:
            details["reason"] = reason
        actor = {} if authenticated else {"actor_kind": "anonymous", "actor_id": ""}
        record(  # before authentication the actor is unknown, and must not be resolved now
            AuditAction.REQUEST_REJECTED,
            outcome="failure",
            request=request._request,
            resource_kind="request",
            details=details,
            **actor,
        )
        return
    if isinstance(exc, exceptions.PermissionDenied):
        record(
            AuditAction.PERMISSION_DENIED,
            outcome="denied",
            request=request,
            details={"method": request.method, "path": request.path, "reason": code},
        )
    if record_refused is not None and authenticated:
        record_refused(request, response, REFUSAL_ACTIONS.get(code, AuditAction.ECHO_REJECTED))


def _auth_failed(exc, request) -> None:
    default = "missing_credentials" if isinstance(exc, exceptions.NotAuthenticated) else "invalid_credentials"
    details = {"reason": getattr(exc, "reason", default), "method": request.method, "path": request.path}
    if getattr(exc, "key_prefix", ""):
        details["key_prefix"] = exc.key_prefix
    record(
        AuditAction.AUTH_FAILED,
        outcome="failure",
        request=request,
        organization_id=getattr(exc, "organization_id", None),
        details=details,
        resource_kind="request",
    )


def _auth_throttled(exc: AuthenticationThrottled, request) -> None:
    details = {
        "reason": "throttled",
        "scope": exc.scope,
        "retry_after": exc.wait,
        "method": request.method,
        "path": request.path,
    }
    if exc.key_prefix:
        details["key_prefix"] = exc.key_prefix
    record(
        AuditAction.AUTH_THROTTLED,
        outcome="denied",
        request=request,
        organization_id=exc.organization_id,
        details=details,
        resource_kind="request",
    )
