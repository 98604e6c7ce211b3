"""The registry of audit actions: ``audit.services.record`` refuses any other, the admin's action
filter lists them (no DISTINCT over the table), and the README's table is checked against them."""

from enum import StrEnum


class AuditAction(StrEnum):
    # People
    USER_LOGIN = "user.login"
    USER_LOGIN_FAILED = "user.login_failed"
    USER_LOGIN_THROTTLED = "auth.login_throttled"
    USER_LOGOUT = "user.logout"
    ADMIN_CHANGE = "admin.change"
    # Organizations, agents, keys
    ORGANIZATION_CREATED = "organization.created"
    AGENT_CREATED = "agent.created"
    AGENT_UPDATED = "agent.updated"
    AGENT_DELETED = "agent.deleted"
    KEY_ROTATED = "key.rotated"
    KEY_REVOKED = "key.revoked"
    SIGNING_SECRET_ROTATED = "signing_secret.rotated"
    # Refusals of any API request
    AUTH_FAILED = "auth.failed"
    AUTH_THROTTLED = "auth.throttled"
    PERMISSION_DENIED = "permission.denied"
    REQUEST_REJECTED = "request.rejected"
    # The echo
    ECHO_DELIVERED = "echo.delivered"
    ECHO_ACCEPTED = "echo.accepted"
    ECHO_FAILED = "echo.failed"
    ECHO_REJECTED = "echo.rejected"
    RATE_LIMIT_REFUSED = "rate_limit.refused"
    RATE_LIMIT_DEGRADED = "rate_limit.degraded"
    IDEMPOTENCY_REPLAYED = "idempotency.replayed"
    IDEMPOTENCY_CONFLICT = "idempotency.conflict"
    IDEMPOTENCY_IN_PROGRESS = "idempotency.in_progress"
    # Delivery (the inbox)
    MESSAGE_DEAD_LETTERED = "message.dead_lettered"
    MESSAGE_REDRIVEN = "message.redriven"
    MESSAGE_RESENT = "message.resent"
    # Push delivery (webhooks)
    PUSH_ENDPOINT_CREATED = "push_endpoint.created"
    PUSH_ENDPOINT_UPDATED = "push_endpoint.updated"
    PUSH_ENDPOINT_ENABLED = "push_endpoint.enabled"
    PUSH_ENDPOINT_DISABLED = "push_endpoint.disabled"
    PUSH_ENDPOINT_DELETED = "push_endpoint.deleted"
    PUSH_ENDPOINT_SECRET_ROTATED = "push_endpoint.secret_rotated"
    PUSH_ENDPOINT_RECOVERED = "push_endpoint.recovered"
    # Retention (audit/retention.py)
    RETENTION_PURGED = "retention.purged"


class UnknownAuditAction(ValueError):
    pass


def registered(action: str) -> AuditAction:
    try:
        return AuditAction(action)
    except ValueError:
        raise UnknownAuditAction(f"{action!r} is not a registered audit action (audit.actions.AuditAction)") from None
