"""Audit events that Django itself emits: logins, failed logins, logouts and admin changes."""

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from audit.actions import AuditAction
from audit.models import AuditLog
from audit.services import record

ADMIN_OPERATIONS = {ADDITION: "addition", CHANGE: "change", DELETION: "deletion"}
MAX_USERNAME = 150


@receiver(user_logged_in, dispatch_uid="audit_user_logged_in")
def on_login(sender, request, user, **kwargs):
    record(
        AuditAction.USER_LOGIN,
        request=request,
        actor_kind=AuditLog.ActorKind.USER,
        actor_id=user.pk,
        resource_kind="user",
        resource_id=user.pk,
        details={"username": user.get_username()},
    )


@receiver(user_login_failed, dispatch_uid="audit_user_login_failed")
def on_login_failed(sender, credentials, request=None, **kwargs):
    if getattr(request, "axes_locked_out", False):
        return  # refused before the password was checked: audited as auth.login_throttled
    # Django masks the password in ``credentials``; only the username is kept.
    username = str(credentials.get("username", ""))[:MAX_USERNAME]
    record(
        AuditAction.USER_LOGIN_FAILED,
        outcome=AuditLog.Outcome.FAILURE,
        request=request,
        actor_kind=AuditLog.ActorKind.ANONYMOUS,
        actor_id="",
        resource_kind="user",
        details={"username": username, "reason": "invalid_credentials"},
    )


@receiver(user_logged_out, dispatch_uid="audit_user_logged_out")
def on_logout(sender, request, user, **kwargs):
    if user is None:
        return
    record(
        AuditAction.USER_LOGOUT,
        request=request,
        actor_kind=AuditLog.ActorKind.USER,
        actor_id=user.pk,
        resource_kind="user",
        resource_id=user.pk,
    )


@receiver(post_save, sender=LogEntry, dispatch_uid="audit_admin_change")
def on_admin_change(sender, instance, created, **kwargs):
    if not created:
        return
    content_type = instance.content_type
    record(
        AuditAction.ADMIN_CHANGE,
        actor_kind=AuditLog.ActorKind.USER,
        actor_id=instance.user_id,
        resource_kind=(content_type.model if content_type else "")[:32],
        resource_id=instance.object_id or "",
        details={
            "operation": ADMIN_OPERATIONS.get(instance.action_flag, str(instance.action_flag)),
            "model": f"{content_type.app_label}.{content_type.model}" if content_type else None,
            "object": instance.object_repr,
            "change": instance.get_change_message(),
        },
    )
