"""The coordination API's refusals, each with its stable error code (rendered by brikk.lib.errors)."""

from rest_framework import exceptions, status

from brikk.lib.errors import BrikkAPIError


class SignatureFailed(BrikkAPIError, exceptions.AuthenticationFailed):
    """401 from the HMAC layer; ``reason`` is audited as auth.failed (brikk.lib.errors)."""

    status_code = status.HTTP_401_UNAUTHORIZED

    def __init__(self, detail=None, *, details=None):
        super().__init__(detail, details=details)
        self.reason = self.default_code


class InvalidSignature(SignatureFailed):
    default_code = "invalid_signature"
    default_detail = "The request signature is missing or does not match."


class TimestampError(SignatureFailed):
    default_code = "timestamp_error"
    default_detail = "X-Brikk-Timestamp is missing, malformed or outside the allowed window."


class Forbidden(BrikkAPIError):
    """The caller may not send this envelope (e.g. as another agent). Not a PermissionDenied:
    it is audited as echo.rejected with the MessageLog row, not as permission.denied."""

    status_code = status.HTTP_403_FORBIDDEN
    default_code = "forbidden"
    default_detail = "You may not send this message."


class IdempotencyKeyReused(BrikkAPIError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = "This idempotency key was already used with a different request body."


class IdempotencyInProgress(BrikkAPIError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_in_progress"
    default_detail = "A request with this idempotency key is still being processed; retry shortly."


class MessageIdReused(BrikkAPIError):
    """The sender already sent another message with this message_id (under another idempotency key).
    Not 409: in this API 409 means "retry shortly", and retrying this request can never succeed."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "message_id_reused"
    default_detail = "This sender already sent a message with this message_id; use a new message_id."
