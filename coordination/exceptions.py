"""The coordination API's refusals, each with its stable error code (``brikk.lib.errors.ErrorCode``)."""

from rest_framework import exceptions, status

from brikk.lib.errors import CodedError, ErrorCode


class SignatureFailed(CodedError, exceptions.AuthenticationFailed):
    """401 from the HMAC layer; ``reason`` is audited as auth.failed (audit/refusals.py)."""

    status_code = status.HTTP_401_UNAUTHORIZED

    def __init__(self, detail=None, *, details=None):
        super().__init__(detail, details=details)
        self.reason = str(self.default_code)


class InvalidSignature(SignatureFailed):
    default_code = ErrorCode.INVALID_SIGNATURE
    default_detail = "The request signature is missing or does not match."


class TimestampError(SignatureFailed):
    default_code = ErrorCode.TIMESTAMP_ERROR
    default_detail = "X-Brikk-Timestamp is missing, malformed or outside the allowed window."


class Forbidden(CodedError):
    """The caller may not send this envelope (e.g. as another agent). Not a PermissionDenied:
    it is audited as echo.rejected with the MessageLog row, not as permission.denied."""

    status_code = status.HTTP_403_FORBIDDEN
    default_code = ErrorCode.FORBIDDEN
    default_detail = "You may not send this message."


class IdempotencyKeyReused(CodedError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    default_detail = "This idempotency key was already used with a different request body."


class IdempotencyInProgress(CodedError):
    status_code = status.HTTP_409_CONFLICT
    default_code = ErrorCode.IDEMPOTENCY_IN_PROGRESS
    default_detail = "A request with this idempotency key is still being processed; retry shortly."


class MessageIdReused(CodedError):
    """The sender already sent another message with this message_id (under another idempotency key).
    Not 409: in this API 409 means "retry shortly", and retrying this request can never succeed."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = ErrorCode.MESSAGE_ID_REUSED
    default_detail = "This sender already sent a message with this message_id; use a new message_id."
