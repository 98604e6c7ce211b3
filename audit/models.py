import uuid
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import models

# Set only inside ``purge_allowed()``: the retention command is the one path that deletes audit rows.
_purge_allowed: ContextVar[bool] = ContextVar("brikk_audit_purge_allowed", default=False)


class AuditDeletionRefused(Exception):
    """Audit rows are deleted only by the retention command (``manage.py purge_records``), after archiving."""


@contextmanager
def purge_allowed():
    token = _purge_allowed.set(True)
    try:
        yield
    finally:
        _purge_allowed.reset(token)


class AuditLogQuerySet(models.QuerySet):
    def delete(self):
        if not _purge_allowed.get():
            raise AuditDeletionRefused("Audit rows can only be deleted by `manage.py purge_records` after archiving.")
        return super().delete()

    def sealed(self):
        return self.filter(sequence__isnull=False)

    def unsealed(self):
        return self.filter(sequence__isnull=True)


class AuditLog(models.Model):
    """One interaction with the platform, success or failure. Never holds a secret.

    Rows are written freely on the request path; a background step seals them into a hash
    chain (``sequence``, ``previous_hash``, ``row_hash``) so later edits can be detected.
    """

    class ActorKind(models.TextChoices):
        USER = "user", "User"
        AGENT = "agent", "Agent"
        SYSTEM = "system", "System"
        ANONYMOUS = "anonymous", "Anonymous"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        DENIED = "denied", "Denied"
        ERROR = "error", "Error"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    # correlation_id, actor_id and resource_id are indexed in Meta: exact lookups only (db_index=True would add a
    # second index each, for LIKE, which nothing asks; every index is one more insert per audit row).
    correlation_id = models.CharField(max_length=128)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    # No database constraint and no cascade: deleting an organization must not rewrite (and so
    # break the seal of) its audit rows; the id stays as it was recorded.
    organization = models.ForeignKey(
        "agents.Organization",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # audit_org_created begins with it
        related_name="+",
    )
    action = models.CharField(max_length=64)
    resource_kind = models.CharField(max_length=32, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    details = models.JSONField(default=dict, blank=True)

    # Tamper evidence, filled in by the sealing step (audit.chain).
    sequence = models.BigIntegerField(null=True, blank=True, unique=True)
    previous_hash = models.CharField(max_length=64, blank=True)
    row_hash = models.CharField(max_length=64, blank=True)
    sealed_at = models.DateTimeField(null=True, blank=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="audit_org_created"),
            models.Index(fields=["correlation_id"], name="audit_correlation"),
            models.Index(fields=["actor_id"], name="audit_actor"),
            models.Index(fields=["resource_id"], name="audit_resource"),
            models.Index(fields=["action", "-created_at"], name="audit_action_created"),
            models.Index(fields=["outcome", "-created_at"], name="audit_outcome_created"),
            models.Index(fields=["created_at"], name="audit_unsealed", condition=models.Q(sequence__isnull=True)),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"

    def delete(self, *args, **kwargs):
        if not _purge_allowed.get():
            raise AuditDeletionRefused("Audit rows can only be deleted by `manage.py purge_records` after archiving.")
        return super().delete(*args, **kwargs)


class AuditChainAnchor(models.Model):
    """Where the chain starts after old rows were archived and purged: the last purged row.

    ``verify_audit`` expects the first remaining row to follow this one (sequence + 1, previous_hash
    == row_hash). The archive's manifest, kept outside the database, records the same boundary.
    """

    sequence = models.BigIntegerField(unique=True)
    row_hash = models.CharField(max_length=64)
    archive = models.CharField(max_length=255, blank=True, help_text="Archive file holding the purged rows.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-sequence"]

    def __str__(self):
        return f"anchor at {self.sequence}"
