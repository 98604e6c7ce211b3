import uuid
from typing import NamedTuple

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import connections, models
from django.db.models.functions import Lower
from django.utils import timezone


class Organization(models.Model):
    """A tenant. Everything an agent or user sees is scoped to one organization."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=64, unique=True)
    # Plan limits; None means the defaults from settings (BRIKK_RATE_LIMIT_*).
    rate_limit_agent_per_minute = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_org_per_minute = models.PositiveIntegerField(null=True, blank=True)
    # Leases of one message before it is dead-lettered (coordination/inbox.py).
    max_deliveries = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    """Ties a user to an organization with a role; the role decides who may write."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    WRITE_ROLES = (Role.OWNER, Role.ADMIN)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")]
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def can_write(self) -> bool:
        return self.role in self.WRITE_ROLES


class AgentQuerySet(models.QuerySet):
    def live(self):
        """Agents that are not soft-deleted."""
        return self.exclude(status=Agent.Status.DELETED)

    def authenticating_ids(self, organization_id, ids) -> set:
        """Those of ``ids`` that are agents of the organization whose status lets them send and receive
        (AUTHENTICATING_STATUSES). It runs on every echo (``statuses``)."""
        return {
            pk for pk, status in self.statuses(organization_id, ids).items() if status in Agent.AUTHENTICATING_STATUSES
        }

    def statuses(self, organization_id, ids) -> dict:
        """{agent id: status} for those of ``ids`` that are agents of the organization. The echo and the batch send
        ask on every request, so it is one plain indexed query through a cursor: building it with filter() costs
        this machine three times what running it does."""
        ids = list(ids)
        if not ids:
            return {}
        connection = connections[self.db]
        quote, meta = connection.ops.quote_name, Agent._meta
        pk, organization, status = meta.pk, meta.get_field("organization"), meta.get_field("status")
        # Only quoted table and column names are interpolated; every value is a parameter.
        sql = (
            f"SELECT {quote(pk.column)}, {quote(status.column)} FROM {quote(meta.db_table)}"  # noqa: S608
            f" WHERE {quote(organization.column)} = %s AND {quote(pk.column)} IN ({', '.join(['%s'] * len(ids))})"
        )
        params = [
            organization.get_db_prep_value(organization.to_python(organization_id), connection),
            *(pk.get_db_prep_value(pk.to_python(agent_id), connection) for agent_id in ids),
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {pk.to_python(agent_id): agent_status for agent_id, agent_status in cursor.fetchall()}


# One message for the rule wherever it is checked (agents/rules.py, this constraint in model forms).
NAME_TAKEN = "An agent with this name already exists in this organization."


class Agent(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        IDLE = "idle", "Idle"
        MAINTENANCE = "maintenance", "Maintenance"
        DELETED = "deleted", "Deleted"

    # Statuses whose keys authenticate; maintenance and deleted agents are refused.
    AUTHENTICATING_STATUSES = (Status.ACTIVE, Status.IDLE)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="agents")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="owned_agents"
    )
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    metadata = models.JSONField(default=dict, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    # HMAC signing secret, encrypted at rest (agents.crypto); the previous one is kept during rotation.
    signing_secret_encrypted = models.TextField()
    previous_signing_secret_encrypted = models.TextField(blank=True)
    previous_signing_secret_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = AgentQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # Names are unique per organization ignoring case ("Alpha" and "alpha" are one name),
            # among live agents; agents/rules.py checks the same expression first, with a message.
            models.UniqueConstraint(
                models.F("organization"),
                Lower("name"),
                condition=~models.Q(status="deleted"),
                name="agent_name_unique_in_org",
                violation_error_message=NAME_TAKEN,
            )
        ]
        indexes = [models.Index(fields=["organization", "status"], name="agent_org_status")]

    def __str__(self):
        return self.name

    @property
    def can_authenticate(self) -> bool:
        return self.status in self.AUTHENTICATING_STATUSES


class KeyRow(NamedTuple):
    """What authenticating with a key needs, from its API key, agent and organization rows."""

    id: uuid.UUID
    agent_id: uuid.UUID
    hashed_secret: str
    expires_at: object  # datetime | None
    revoked_at: object
    last_used_at: object
    agent_name: str
    agent_status: str
    organization_id: uuid.UUID
    signing_secret_encrypted: str
    previous_signing_secret_encrypted: str
    previous_signing_secret_expires_at: object
    rate_limit_agent_per_minute: int | None
    rate_limit_org_per_minute: int | None


# (model, field) of each KeyRow column, in order.
_KEY_ROW_COLUMNS = (
    ("APIKey", "id"),
    ("APIKey", "agent"),
    ("APIKey", "hashed_secret"),
    ("APIKey", "expires_at"),
    ("APIKey", "revoked_at"),
    ("APIKey", "last_used_at"),
    ("Agent", "name"),
    ("Agent", "status"),
    ("Agent", "organization"),
    ("Agent", "signing_secret_encrypted"),
    ("Agent", "previous_signing_secret_encrypted"),
    ("Agent", "previous_signing_secret_expires_at"),
    ("Organization", "rate_limit_agent_per_minute"),
    ("Organization", "rate_limit_org_per_minute"),
)
_key_row_queries: dict[str, tuple[str, list]] = {}


def _key_row_query(connection) -> tuple[str, list]:
    """The SQL of ``authentication_row`` and each column's converters, built once per database."""
    built = _key_row_queries.get(connection.alias)
    if built is not None:
        return built
    quote = connection.ops.quote_name
    models_by_name = {"APIKey": APIKey, "Agent": Agent, "Organization": Organization}
    columns, converters = [], []
    for model_name, field_name in _KEY_ROW_COLUMNS:
        model = models_by_name[model_name]
        field = model._meta.get_field(field_name)
        col = field.get_col(model._meta.db_table)
        columns.append(f"{quote(model._meta.db_table)}.{quote(field.column)}")
        converters.append((connection.ops.get_db_converters(col) + col.get_db_converters(connection), col))
    key, agent, organization = APIKey._meta, Agent._meta, Organization._meta
    # Only quoted table and column names are interpolated; the prefix is a parameter.
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(key.db_table)}"  # noqa: S608
        f" INNER JOIN {quote(agent.db_table)} ON {quote(agent.db_table)}.{quote(agent.pk.column)}"
        f" = {quote(key.db_table)}.{quote(key.get_field('agent').column)}"
        f" INNER JOIN {quote(organization.db_table)} ON {quote(organization.db_table)}.{quote(organization.pk.column)}"
        f" = {quote(agent.db_table)}.{quote(agent.get_field('organization').column)}"
        f" WHERE {quote(key.db_table)}.{quote(key.get_field('prefix').column)} = %s"
    )
    built = _key_row_queries[connection.alias] = (sql, converters)
    return built


class APIKeyQuerySet(models.QuerySet):
    def authentication_row(self, prefix: str) -> KeyRow | None:
        """The key with this prefix, with its agent's and organization's fields, or None: one query on
        the unique prefix index. It runs on every request an agent makes, so it is plain SQL (building
        it with select_related() and loading three models costs several times what running it does)."""
        connection = connections[self.db]
        sql, converters = _key_row_query(connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, [prefix])
            row = cursor.fetchone()
        if row is None:
            return None
        values = []
        for value, (functions, col) in zip(row, converters, strict=True):
            for function in functions:
                value = function(value, col, connection)
            values.append(value)
        return KeyRow(*values)


class APIKey(models.Model):
    """An agent's API key: ``brk_<prefix>.<secret>``.

    Only the non-secret prefix (indexed, for lookup) and a salted PBKDF2 hash of the secret are
    stored; the full key is shown once, at creation.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True)
    hashed_secret = models.CharField(max_length=256)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = APIKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"brk_{self.prefix}…"

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_usable(self, now=None) -> bool:
        return not self.is_revoked and not self.is_expired(now)
