"""One JSON error shape for the whole API: {"code", "message", "request_id", "details"}, and the
registry of its stable codes (``ErrorCode``).

``render_exception`` turns any exception raised in an API view into that shape. Which refusals are
audited is decided by ``audit.refusals.exception_handler``, which DRF calls and which renders here.
"""

import logging
from enum import StrEnum

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from brikk.lib.context import current

logger = logging.getLogger("brikk.api")

# Raised by a database that cannot be reached: a 503 with Retry-After, never a 500.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)
# Every 503 tells the client when to come back (Retry-After), whatever was unavailable.
RETRY_AFTER_SECONDS = 5


class ErrorCode(StrEnum):
    """Every ``code`` the API answers with. The README's error tables are checked against this list."""

    PROTOCOL_ERROR = "protocol_error"
    UNAUTHORIZED = "unauthorized"
    INVALID_SIGNATURE = "invalid_signature"
    TIMESTAMP_ERROR = "timestamp_error"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_ERROR = "validation_error"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    MESSAGE_ID_REUSED = "message_id_reused"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    SERVICE_UNAVAILABLE = "service_unavailable"


class CodedError(exceptions.APIException):
    """Base for errors with a stable code; subclasses set status_code, default_code and default_detail."""

    def __init__(self, detail=None, code=None, details=None):
        super().__init__(detail, code)
        self.details = details


class ProtocolError(CodedError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = ErrorCode.PROTOCOL_ERROR
    default_detail = "The request does not follow the protocol."


class UnacceptableValue(exceptions.ValidationError):
    """422 ``validation_error`` from the request guards (brikk/lib/parsers.py): a well-formed request holding
    a value this service cannot take (brikk/lib/values.py). ``details`` name where, like any validation
    error; ``reason`` (nul_character, lone_surrogate, non_finite_number, too_deep, control_character) is
    what the refusal is audited with."""

    def __init__(self, detail: dict, reason: str):
        super().__init__(detail)
        self.reason = reason


class PayloadTooLarge(CodedError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = ErrorCode.PAYLOAD_TOO_LARGE
    default_detail = "The request body is too large."


class AuthenticationThrottled(CodedError):
    """429 before a credential is even checked: too many failed attempts for it, or from the client's
    address. ``scope`` says which count refused it; ``wait`` becomes Retry-After. Audited by
    ``audit.refusals`` as ``auth.throttled`` (with the organization a known key prefix belongs to)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = ErrorCode.RATE_LIMITED
    default_detail = "Too many failed authentication attempts; retry later."

    def __init__(self, detail=None, *, wait: int, scope: str, key_prefix: str = "", organization_id=None):
        super().__init__(detail, details={"retry_after": wait, "scope": scope})
        self.wait = wait
        self.scope = scope
        self.key_prefix = key_prefix
        self.organization_id = organization_id


class ServiceUnavailable(CodedError):
    """A 503; ``retry_after`` seconds go out as ``Retry-After`` (every 503 carries one)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = ErrorCode.SERVICE_UNAVAILABLE
    default_detail = "The service is temporarily unavailable; retry later."

    def __init__(self, detail=None, code=None, details=None, retry_after: int = RETRY_AFTER_SECONDS):
        super().__init__(detail, code, details)
        self.retry_after = retry_after


# DRF's own exception classes mapped to our stable codes.
DRF_CODES = {
    exceptions.ParseError: ErrorCode.PROTOCOL_ERROR,
    exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.NotAuthenticated: ErrorCode.UNAUTHORIZED,
    exceptions.AuthenticationFailed: ErrorCode.UNAUTHORIZED,
    exceptions.PermissionDenied: ErrorCode.FORBIDDEN,
    exceptions.NotFound: ErrorCode.NOT_FOUND,
    exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    exceptions.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    exceptions.ValidationError: ErrorCode.VALIDATION_ERROR,
    exceptions.Throttled: ErrorCode.RATE_LIMITED,
}

# Authentication realm announced in WWW-Authenticate on every 401.
WWW_AUTHENTICATE = 'Bearer realm="brikk"'


def error_code(exc: exceptions.APIException) -> ErrorCode:
    if isinstance(exc, CodedError):
        return ErrorCode(exc.default_code)
    for klass in type(exc).__mro__:
        if klass in DRF_CODES:
            return DRF_CODES[klass]
    return ErrorCode.INTERNAL_ERROR if exc.status_code >= 500 else ErrorCode.PROTOCOL_ERROR


def error_body(code: ErrorCode, message: str, details=None) -> dict:
    return {"code": str(code), "message": message, "request_id": current().request_id, "details": details}


def _message(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "The request is not valid; see details."
    detail = exc.detail
    if isinstance(detail, dict):  # simplejwt puts {"detail": ..., "code": ..., "messages": [...]} here
        detail = detail.get("detail", "")
    if isinstance(detail, list):
        detail = " ".join(str(item) for item in detail)
    return str(detail)


def _details(exc: exceptions.APIException):
    if isinstance(exc, exceptions.ValidationError):
        return exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    return getattr(exc, "details", None)


def render_exception(exc) -> tuple[exceptions.APIException | None, Response | None]:
    """The API exception ``exc`` stands for and its response in the one error shape, or (None, None)
    for an exception that is a bug (Django's handler500 answers it, after logging)."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        logger.error("database unavailable: %s", exc.__class__.__name__)
        exc = ServiceUnavailable("The database is unavailable; retry later.")
    elif isinstance(exc, DatabaseError):
        logger.exception("database error")
        return None, Response(error_body(ErrorCode.INTERNAL_ERROR, "An internal error occurred."), status=500)

    if not isinstance(exc, exceptions.APIException):
        return None, None  # let Django's handler500 (JSON for the API) take it, after logging

    code = error_code(exc)
    body = error_body(code, _message(exc), _details(exc))
    status_code = exc.status_code
    if code == ErrorCode.VALIDATION_ERROR:
        status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    response = Response(body, status=status_code)
    if getattr(exc, "auth_header", None):
        response["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        response["Retry-After"] = str(int(exc.wait))
    elif status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
        # Whatever is unavailable (database, rate limiter, ...), the client learns when to retry.
        response["Retry-After"] = str(int(getattr(exc, "retry_after", RETRY_AFTER_SECONDS)))
    return exc, response


def json_error_view(status_code: int, code: ErrorCode, message: str):
    def view(request, exception=None):
        return JsonResponse(error_body(code, message), status=status_code)

    return view


_database_unavailable = json_error_view(503, ErrorCode.SERVICE_UNAVAILABLE, "The database is unavailable; retry later.")


def database_unavailable_response(request):
    response = _database_unavailable(request)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
