"""One JSON error shape for the whole API: {"code", "message", "request_id", "details"}.

DRF calls ``exception_handler`` for every exception raised in an API view. Authentication
failures, permission denials and rate-limit refusals are audited here, in one place.
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from audit.context import current

logger = logging.getLogger("brikk.api")


class BrikkAPIError(exceptions.APIException):
    """Base for errors with a stable code; subclasses set status_code, default_code and default_detail."""

    def __init__(self, detail=None, code=None, details=None):
        super().__init__(detail, code)
        self.details = details


class ProtocolError(BrikkAPIError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "protocol_error"
    default_detail = "The request does not follow the protocol."


class PayloadTooLarge(BrikkAPIError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."


class ServiceUnavailable(BrikkAPIError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"
    default_detail = "The service is temporarily unavailable; retry later."


# DRF's own exception classes mapped to our stable codes.
DRF_CODES = {
    exceptions.ParseError: "protocol_error",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.ValidationError: "validation_error",
    exceptions.Throttled: "rate_limited",
}


def error_code(exc: exceptions.APIException) -> str:
    if isinstance(exc, BrikkAPIError):
        return exc.default_code
    for klass in type(exc).__mro__:
        if klass in DRF_CODES:
            return DRF_CODES[klass]
    return "error"


def error_body(code: str, message: str, details=None) -> dict:
    return {"code": code, "message": message, "request_id": current().request_id, "details": details}


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


def _audit(exc, code: str, request) -> None:
    from audit.services import record  # audit imports errors-free modules; keep import local

    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        reason = getattr(exc, "reason", "missing_credentials" if code == "unauthorized" else code)
        details = {"reason": reason, "method": request.method, "path": request.path}
        if getattr(exc, "key_prefix", ""):
            details["key_prefix"] = exc.key_prefix
        record("auth.failed", outcome="failure", request=request, details=details, resource_kind="request")
    elif isinstance(exc, exceptions.PermissionDenied):
        record(
            "permission.denied",
            outcome="denied",
            request=request,
            details={"method": request.method, "path": request.path, "reason": code},
        )


def exception_handler(exc, context):
    request = context.get("request")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("database unavailable: %s", exc.__class__.__name__)
        exc = ServiceUnavailable("The database is unavailable; retry later.")
    elif isinstance(exc, DatabaseError):
        logger.exception("database error")
        return Response(error_body("internal_error", "An internal error occurred."), status=500)

    if not isinstance(exc, exceptions.APIException):
        return None  # let Django's handler500 (JSON for the API) take it, after logging

    code = error_code(exc)
    body = error_body(code, _message(exc), _details(exc))
    status_code = exc.status_code
    if code == "validation_error":
        status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    response = Response(body, status=status_code)
    if getattr(exc, "auth_header", None):
        response["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        response["Retry-After"] = str(int(exc.wait))
    audited = (exceptions.NotAuthenticated, exceptions.AuthenticationFailed, exceptions.PermissionDenied)
    if request is not None and isinstance(exc, audited):
        try:
            _audit(exc, code, request)
        except DatabaseError:
            logger.error("could not audit %s", code)
    return response


def json_error_view(status_code: int, code: str, message: str):
    def view(request, exception=None):
        return JsonResponse(error_body(code, message), status=status_code)

    return view
