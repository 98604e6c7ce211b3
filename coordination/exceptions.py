"""The coordination API's refusals, each with its stable error code (``brikk.lib.errors.ErrorCode``).
Signature refusals belong to authentication (agents.authentication)."""

from rest_framework import status

from brikk.lib.errors import CodedError, ErrorCode


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


class Conflict(CodedError):
    """409 ``conflict``: the resource's current state does not allow this change (an agent's second enabled
    push endpoint; resending a message leased to a consumer right now)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = ErrorCode.CONFLICT
    default_detail = "The resource's current state does not allow this."
