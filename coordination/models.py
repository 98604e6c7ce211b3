import uuid

from django.db import connections, models
from django.db.models import Q
from django.utils import timezone
from uuid6 import uuid7

REPLIES_SHOWN = 50  # a message's detail lists at most this many of its replies
# An envelope's ttl_ms: how long its message waits in the inbox, at most 14 days.
TTL_MS_MIN, TTL_MS_MAX, TTL_MS_DEFAULT = 1, 1_209_600_000, 30000


class MessageLog(models.Model):
    """One echo, accepted or refused after authentication: what was asked, what was answered."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        PROCESSING = "processing", "Processing"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"

    class Delivery(models.TextChoices):
        """Where a deliverable message is in its recipient's inbox (coordination/inbox.py). Empty for a
        refused or failed message, and for an async one until its echo is delivered."""

        QUEUED = "queued", "Queued"
        LEASED = "leased", "Leased"
        ACKED = "acked", "Acked"
        DEAD = "dead", "Dead"

    class DeadReason(models.TextChoices):
        MAX_DELIVERIES = "max_deliveries", "Max deliveries"
        EXPIRED = "expired", "Expired"
        PUSH_EXHAUSTED = "push_exhausted", "Push exhausted"

    class Type(models.TextChoices):
        MESSAGE = "message", "Message"
        EVENT = "event", "Event"
        COMMAND = "command", "Command"
        RESULT = "result", "Result"
        ERROR = "error", "Error"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # No single-column index on the three foreign keys: the composite indexes in Meta begin with them, and every
    # index is one more insert per message (bench/speed_benchmark.py).
    # Nor a constraint in PostgreSQL (db_constraint=False, "loose" foreign keys): its check on every insert (a
    # key-share lock on the agent or organization row, per message) was a seventh of the batch send's PostgreSQL
    # work (1.7 of 11.7 ms per 100 messages), and the rows they name are never deleted under a message: agents are
    # only soft-deleted (the admin cannot delete them), an organization cannot be deleted while it has agents
    # (Agent.organization is enforced), and PROTECT still refuses, in the ORM, deleting any of them while messages
    # name it.
    organization = models.ForeignKey(
        "agents.Organization", on_delete=models.PROTECT, related_name="messages", db_index=False, db_constraint=False
    )
    message_id = models.UUIDField(null=True, blank=True, help_text="The sender's envelope message_id.")
    sender = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="sent_messages",
        db_index=False,
        db_constraint=False,
    )
    recipient = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="received_messages",
        db_index=False,
        db_constraint=False,
    )
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.MESSAGE)
    status = models.CharField(max_length=16, choices=Status.choices)
    auth_method = models.CharField(max_length=16, blank=True)
    actor_kind = models.CharField(max_length=16, blank=True)
    actor_id = models.CharField(max_length=64, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    request_body = models.JSONField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True)  # indexed in Meta (exact lookups only)
    idempotency_key = models.CharField(max_length=255, blank=True)
    received_at = models.DateTimeField()
    responded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Delivery to the recipient (the inbox entry is this row; see coordination/inbox.py).
    delivery_state = models.CharField(max_length=8, choices=Delivery.choices, blank=True, default="")
    available_at = models.DateTimeField(null=True, blank=True, help_text="Queued: receivable from then (nack delay).")
    leased_until = models.DateTimeField(null=True, blank=True)
    receipt = models.CharField(max_length=36, blank=True, default="", help_text="The current lease's token.")
    delivery_count = models.PositiveIntegerField(default=0)
    first_received_at = models.DateTimeField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True)
    dead_reason = models.CharField(max_length=16, choices=DeadReason.choices, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="received_at + ttl_ms.")
    in_reply_to = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replies",
        db_index=False,  # the partial index msg_replies: most messages answer nothing
        help_text="The message this one answers: its reply_to is the message_id of a message its sender received.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at", "-id"], name="msg_org_created"),
            models.Index(fields=["organization", "status", "-created_at"], name="msg_org_status"),
            models.Index(fields=["organization", "type", "-created_at"], name="msg_org_type"),
            models.Index(fields=["sender", "-created_at"], name="msg_sender_created"),
            models.Index(fields=["recipient", "-created_at"], name="msg_recipient_created"),
            # A plain index: db_index=True would add a second one for LIKE, which nothing asks.
            models.Index(fields=["correlation_id"], name="msg_correlation"),
            # The inbox: only undelivered rows, so receiving costs the same with 10 or 10 million rows.
            models.Index(
                fields=["recipient", "id"],
                condition=Q(delivery_state__in=["queued", "leased"]),
                name="msg_inbox",
            ),
            models.Index(fields=["in_reply_to"], condition=Q(in_reply_to__isnull=False), name="msg_replies"),
            models.Index(
                fields=["organization", "-created_at", "-id"],
                condition=Q(delivery_state="dead"),
                name="msg_dead_letters",
            ),
        ]
        constraints = [
            # The envelope's message_id is unique per sender, durably. Refusals are evidence, not
            # messages, so a refused attempt never blocks the corrected one.
            models.UniqueConstraint(
                fields=["sender", "message_id"],
                condition=~Q(status="rejected"),
                name="msg_sender_message_id_unique",
            ),
        ]

    def __str__(self):
        return f"{self.id} {self.type} {self.status}"

    def first_replies(self, limit: int = REPLIES_SHOWN):
        """The messages that answer this one (``in_reply_to``), oldest first, at most ``limit``: the ids,
        message_id, type, sender and creation time of each (the partial index msg_replies finds them)."""
        return self.replies.order_by("created_at", "id").values("id", "message_id", "type", "sender_id", "created_at")[
            :limit
        ]

    def mark_responded(self, at=None) -> None:
        """Set when the answer was given and the latency since the request was received."""
        self.responded_at = at or timezone.now()
        self.latency_ms = (self.responded_at - self.received_at).total_seconds() * 1000


class DeliveryAttempt(models.Model):
    """One hand-over of a message to a consumer: a lease (receive, stream) or a push. The message's delivery
    timeline is its attempts in order; acks and nacks settle the attempt whose lease they hold."""

    class Kind(models.TextChoices):
        RECEIVE = "receive", "Receive"
        STREAM = "stream", "Stream"
        PUSH = "push", "Push"

    class Outcome(models.TextChoices):
        ACKED = "acked", "Acked"
        NACKED = "nacked", "Nacked"
        RELEASED = "released", "Released"
        FAILED = "failed", "Failed"  # a push that got no 2xx

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(MessageLog, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    consumer = models.CharField(max_length=200, blank=True, help_text="Who took it: the connection, its address.")
    token = models.CharField(max_length=36, blank=True, help_text="The lease's receipt token.")
    started_at = models.DateTimeField()
    leased_until = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, blank=True, default="")
    ended_at = models.DateTimeField(null=True, blank=True)
    # A push's log (kind push): where it went and what came back. Never a secret.
    endpoint = models.ForeignKey(
        "coordination.PushEndpoint", on_delete=models.SET_NULL, null=True, blank=True, related_name="attempts"
    )
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    # Database defaults too: the leasing statement (raw SQL) inserts attempts without naming these.
    error = models.CharField(max_length=300, blank=True, default="", db_default="")
    response_excerpt = models.TextField(
        blank=True, default="", db_default="", help_text="The first 1 KiB of the answer."
    )

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [models.Index(fields=["message", "token"], name="attempt_message_token")]

    def __str__(self):
        return f"{self.kind} of {self.message_id} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class PushEndpoint(models.Model):
    """Where Brikk pushes an agent's messages (Standard Webhooks 1.0): a URL and its signing secret
    (``whsec_`` + base64, encrypted at rest like the agents' signing secrets). An agent has at most one enabled
    endpoint; while it has one its messages are pushed (coordination/push.py), else they wait in its inbox."""

    class DisabledReason(models.TextChoices):
        MANUAL = "manual", "Disabled by a person"
        GONE = "gone", "The endpoint answered 410 Gone"
        FAILING = "failing", "No success for too long"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey("agents.Organization", on_delete=models.PROTECT, related_name="push_endpoints")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="push_endpoints")
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=200, blank=True, default="")
    enabled = models.BooleanField(default=True)
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=8, choices=DisabledReason.choices, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True, help_text="The first failure since the last success.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["agent"], condition=Q(enabled=True), name="push_one_enabled_per_agent"),
        ]

    def __str__(self):
        return f"{self.url} ({'enabled' if self.enabled else 'disabled'})"


class IdempotencyRecordQuerySet(models.QuerySet):
    def expired(self, now=None):
        """Records past their window: the key is free again, and retention may archive and purge them."""
        return self.filter(expires_at__lte=now or timezone.now())

    def for_key(self, scope: str, key: str):
        """The record of (scope, key), or None. Every echo asks, so it is one plain lookup on the unique
        index through ``QuerySet.raw`` (the same row filter().first() loads, at a third of the CPU)."""
        return next(iter(self.for_keys(scope, [key])), None)

    def for_keys(self, scope: str, keys):
        """The records of these keys of ``scope`` (a RawQuerySet): the batch send asks for up to 100 at once. On
        PostgreSQL the keys are one array parameter: ``filter(key__in=...)`` spent more CPU preparing 100 parameters
        than the query took, and psycopg converts a statement of more than 50 parameters anew on every call. Each
        key is looked up on its own on the unique index (a LATERAL subquery on both columns, its LIMIT keeping it
        a subquery): as ``key = ANY(...)``, or as a plain join, the planner without statistics yet chose to read
        every record of the scope (all of a sender's) and match the keys: 33 ms per batch once a sender had 20,000
        records (make bench), against 0.2 ms this way."""
        connection = connections[self.db]
        quote, meta = connection.ops.quote_name, self.model._meta
        table, scope_column, key_column = (
            quote(meta.db_table),
            quote(meta.get_field("scope").column),
            quote(meta.get_field("key").column),
        )
        keys = list(keys)
        # Only quoted table and column names are interpolated; every value is a parameter.
        if connection.vendor == "postgresql":
            columns = ", ".join(f"r.{quote(field.column)}" for field in meta.concrete_fields)
            sql = (
                f"SELECT {columns} FROM unnest(%s::text[]) AS wanted(key),"  # noqa: S608
                f" LATERAL (SELECT * FROM {table} WHERE {scope_column} = %s AND {key_column} = wanted.key LIMIT 1) r"
            )
            params = [keys, scope]
        else:
            columns = ", ".join(quote(field.column) for field in meta.concrete_fields)
            sql = (
                f"SELECT {columns} FROM {table}"  # noqa: S608
                f" WHERE {scope_column} = %s AND {key_column} IN ({', '.join(['%s'] * len(keys))})"
            )
            params = [scope, *keys]
        return self.raw(sql, params)


class IdempotencyRecord(models.Model):
    """One completed operation per (scope, key) for a day: the durable guard against doing anything twice.

    ``scope`` is the sender (``agent:<id>`` or ``user:<id>``). The record is written in the same
    transaction as the operation's message, so it exists exactly when the operation happened; the
    unique constraint makes the first commit win under concurrency. ``request_hash`` tells a true
    repeat from a reused key.
    """

    id = models.BigAutoField(primary_key=True)
    # Loose foreign keys, as MessageLog's (see there): the record is written with its message, in the same
    # statement or transaction; deleting a message (retention) still sets ``message`` to NULL, in the ORM.
    organization = models.ForeignKey(
        "agents.Organization", on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    scope = models.CharField(max_length=80)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    message = models.ForeignKey(
        MessageLog, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    objects = IdempotencyRecordQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_unique")]

    def __str__(self):
        return f"{self.scope} {self.key} {self.response_status}"


def new_uuid() -> uuid.UUID:
    return uuid7()
