"""Layer 6, the Brikk envelope v1.0, and the representations of stored messages."""

import functools
import re
import uuid

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from coordination.answers import answer_of, delivery_fields
from coordination.models import REPLIES_SHOWN, TTL_MS_DEFAULT, TTL_MS_MAX, TTL_MS_MIN, MessageLog

ENVELOPE_VERSION = "1.0"
ACCEPTED_UUID_VERSIONS = (4, 7)
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not declare, reported together with every other bad field."""

    def to_internal_value(self, data):
        errors = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = dict(exc.detail)
            value = None
        if isinstance(data, dict):
            for name in sorted(set(data) - set(self.fields)):
                errors[name] = ["Unknown field."]
        if errors:
            raise serializers.ValidationError(errors)
        return value


class ExactType:
    """A field that takes only the JSON type the schema documents: no "30000" for an integer, no 0 for a
    string, no number for a UUID. The echo answers with the envelope as received, so a value coerced here
    would be answered in a type its documented schema does not allow."""

    json_types: tuple[type, ...] = ()
    type_name = ""

    def to_internal_value(self, data):
        if type(data) not in self.json_types:  # exact: bool is not an integer
            raise serializers.ValidationError(f"Must be a JSON {self.type_name}.", code="invalid_type")
        return super().to_internal_value(data)


class TextField(ExactType, serializers.CharField):
    json_types, type_name = (str,), "string"


class WholeNumberField(ExactType, serializers.IntegerField):
    json_types, type_name = (int,), "integer"


class UUIDTextField(ExactType, serializers.UUIDField):
    json_types, type_name = (str,), "string"


class TextChoiceField(ExactType, serializers.ChoiceField):
    json_types, type_name = (str,), "string"


class AgentRefSerializer(StrictSerializer):
    agent_id = UUIDTextField()
    org_id = UUIDTextField(required=False)


def _validate_message_id(value: uuid.UUID) -> uuid.UUID:
    if value.version not in ACCEPTED_UUID_VERSIONS:
        raise serializers.ValidationError("message_id must be a UUID version 7 (preferred) or 4.")
    return value


def _validate_ts(value: str) -> str:
    if not RFC3339_UTC.match(value):
        raise serializers.ValidationError("ts must be RFC 3339 UTC ending in Z, e.g. 2025-01-31T12:00:00Z.")
    return value


MAX_TEXT_LENGTH = 255


class EnvelopeSerializer(StrictSerializer):
    """Brikk envelope v1.0. Unknown fields are rejected.

    Validation first tries ``clearly_valid_envelope``, a plain-Python check that accepts only envelopes
    these fields would accept unchanged, and builds the same validated data (about 20x cheaper than
    the fields). Anything it is not sure about goes through the fields, which produce every error."""

    version = TextChoiceField(choices=[ENVELOPE_VERSION], default=ENVELOPE_VERSION)
    message_id = UUIDTextField(validators=[_validate_message_id], help_text="UUID v7 (preferred) or v4.")
    ts = TextField(validators=[_validate_ts], help_text="RFC 3339 UTC with Z.")
    type = TextChoiceField(choices=MessageLog.Type.values, default=MessageLog.Type.MESSAGE)
    sender = AgentRefSerializer()
    recipient = AgentRefSerializer()
    payload = serializers.DictField(help_text="Any JSON object.")
    ttl_ms = WholeNumberField(min_value=TTL_MS_MIN, max_value=TTL_MS_MAX, default=TTL_MS_DEFAULT)
    reply_to = TextField(max_length=MAX_TEXT_LENGTH, required=False)
    nonce = TextField(max_length=MAX_TEXT_LENGTH, required=False)

    def run_validation(self, data=serializers.empty):
        validated = clearly_valid_envelope(data)
        if validated is not None:
            return validated
        return super().run_validation(data)


ENVELOPE_FIELDS = frozenset(
    {"version", "message_id", "ts", "type", "sender", "recipient", "payload", "ttl_ms", "reply_to", "nonce"}
)
AGENT_REF_FIELDS = frozenset({"agent_id", "org_id"})
MESSAGE_TYPES = frozenset(MessageLog.Type.values)


def _plain_uuid(value, parse=uuid.UUID) -> uuid.UUID | None:
    """The UUID of a canonical 36-character string, else None (the fields decide about other forms)."""
    if type(value) is not str or len(value) != 36:  # noqa: E721 - exactly str: subclasses go the long way
        return None
    try:
        return parse(value)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def agent_uuid(text: str) -> uuid.UUID:
    """An agent id's text as a UUID (ValueError if it is not one), each parsed once: every envelope of a batch
    names the same few agents, and each is read twice (the batch's one lookup of its agents, then validation)."""
    return uuid.UUID(text)


def _plain_text(value) -> bool:
    """A non-empty string within the length limit that CharField would keep as it is (no outer blanks)."""
    return type(value) is str and 0 < len(value) <= MAX_TEXT_LENGTH and value == value.strip()  # noqa: E721


def _plain_agent_ref(value) -> dict | None:
    if type(value) is not dict or not value.keys() <= AGENT_REF_FIELDS:  # noqa: E721
        return None
    agent_id = _plain_uuid(value.get("agent_id"), agent_uuid)
    if agent_id is None:
        return None
    ref = {"agent_id": agent_id}
    if "org_id" in value:
        org_id = _plain_uuid(value["org_id"])
        if org_id is None:
            return None
        ref["org_id"] = org_id
    return ref


def clearly_valid_envelope(data) -> dict | None:
    """EnvelopeSerializer's validated data for an envelope every field accepts as sent, else None.

    Stricter than the fields (canonical UUID strings, exact types, no surrounding blanks), never looser:
    None only means "let the serializer decide", which then names every bad field."""
    if type(data) is not dict or not data.keys() <= ENVELOPE_FIELDS:  # noqa: E721
        return None
    message_id = _plain_uuid(data.get("message_id"))
    if message_id is None or message_id.version not in ACCEPTED_UUID_VERSIONS:
        return None
    ts = data.get("ts")
    if type(ts) is not str or ts != ts.strip() or not RFC3339_UTC.match(ts):  # noqa: E721
        return None
    version = data.get("version", ENVELOPE_VERSION)
    kind = data.get("type", "message")
    ttl_ms = data.get("ttl_ms", TTL_MS_DEFAULT)
    if (
        version != ENVELOPE_VERSION
        or type(version) is not str  # noqa: E721
        or type(kind) is not str  # noqa: E721
        or kind not in MESSAGE_TYPES
        or type(ttl_ms) is not int  # noqa: E721 - bool is an int to isinstance
        or not TTL_MS_MIN <= ttl_ms <= TTL_MS_MAX
        or type(data.get("payload")) is not dict  # noqa: E721
    ):
        return None
    sender, recipient = _plain_agent_ref(data.get("sender")), _plain_agent_ref(data.get("recipient"))
    if sender is None or recipient is None:
        return None
    validated = {
        "version": version,
        "message_id": message_id,
        "ts": ts,
        "type": kind if "type" in data else MessageLog.Type.MESSAGE,  # the field's default, as the field gives it
        "sender": sender,
        "recipient": recipient,
        "payload": dict(data["payload"]),
        "ttl_ms": ttl_ms,
    }
    for name in ("reply_to", "nonce"):
        if name in data:
            if not _plain_text(data[name]):
                return None
            validated[name] = data[name]
    return validated


class DeliverySerializer(serializers.Serializer):
    """A message's place in its recipient's inbox; ``state`` is null when it has none (refused, failed, or
    async and not yet delivered)."""

    state = serializers.ChoiceField(choices=MessageLog.Delivery.choices, allow_null=True)
    delivery_count = serializers.IntegerField()
    first_received_at = serializers.DateTimeField(allow_null=True)
    acked_at = serializers.DateTimeField(allow_null=True)
    dead_reason = serializers.ChoiceField(choices=MessageLog.DeadReason.choices, allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class AuthInfoSerializer(serializers.Serializer):
    organization_id = serializers.UUIDField()
    agent_id = serializers.UUIDField(allow_null=True)
    user_id = serializers.CharField(allow_null=True, required=False)
    auth_method = serializers.CharField()


class LinksSerializer(serializers.Serializer):
    self = serializers.CharField(help_text="GET here for the message's status.")


class EchoResponseSerializer(serializers.Serializer):
    """What an echo answers (200 delivered, or 202 accepted for async)."""

    id = serializers.UUIDField(help_text="Server message id.")
    status = serializers.ChoiceField(choices=["delivered", "accepted"])
    envelope = EnvelopeSerializer(help_text="The envelope as received.")
    received_at = serializers.DateTimeField()
    responded_at = serializers.DateTimeField(allow_null=True)
    processing_ms = serializers.FloatField(allow_null=True)
    correlation_id = serializers.CharField()
    auth = AuthInfoSerializer()
    links = LinksSerializer()
    delivery = DeliverySerializer(help_text="Its place in the recipient's inbox (state null until deliverable).")


class BatchSendSerializer(serializers.Serializer):
    """A batch send: the envelopes, each exactly the echo's."""

    messages = serializers.ListField(
        child=EnvelopeSerializer(), min_length=1, max_length=100, help_text="1 to 100 envelopes."
    )


class BatchItemErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="The error code the echo would answer for this envelope alone.")
    message = serializers.CharField()
    details = serializers.JSONField(allow_null=True)


class BatchResultSerializer(serializers.Serializer):
    """What became of one envelope of the batch."""

    index = serializers.IntegerField(help_text="The envelope's place in messages, from 0.")
    message_id = serializers.CharField(allow_null=True, help_text="The envelope's message_id as sent.")
    status = serializers.ChoiceField(choices=["delivered", "replayed", "refused"])
    id = serializers.UUIDField(
        required=False, allow_null=True, help_text="Server message id (delivered; replayed: the first answer's)."
    )
    delivery = DeliverySerializer(required=False, help_text="Delivered only: its place in the recipient's inbox.")
    error = BatchItemErrorSerializer(required=False, help_text="Refused only: why; nothing of it was delivered.")


class BatchResponseSerializer(serializers.Serializer):
    results = BatchResultSerializer(many=True, help_text="One per envelope, in request order.")
    delivered = serializers.IntegerField()
    replayed = serializers.IntegerField()
    refused = serializers.IntegerField()


# The ids a stored message is shown with, as plain UUIDs (not nested objects). No docstring: drf-spectacular
# would make it the description of every subclass.
class MessageRefsSerializer(serializers.ModelSerializer):
    organization_id = serializers.UUIDField(read_only=True)
    sender_id = serializers.UUIDField(read_only=True, allow_null=True)
    recipient_id = serializers.UUIDField(read_only=True, allow_null=True)


class MessageSerializer(MessageRefsSerializer):
    class Meta:
        model = MessageLog
        fields = [
            "id",
            "organization_id",
            "message_id",
            "sender_id",
            "recipient_id",
            "type",
            "status",
            "http_status",
            "auth_method",
            "actor_kind",
            "actor_id",
            "attempts",
            "error",
            "latency_ms",
            "correlation_id",
            "idempotency_key",
            "received_at",
            "responded_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ReplySerializer(serializers.Serializer):
    """A message that answers another (its envelope's reply_to is the other's message_id)."""

    id = serializers.UUIDField(help_text="Server message id of the reply.")
    message_id = serializers.UUIDField(help_text="The reply's envelope message_id.")
    type = serializers.ChoiceField(choices=MessageLog.Type.choices)
    sender_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()


class MessageDetailSerializer(MessageSerializer):
    request_body = serializers.JSONField(read_only=True)
    response_body = serializers.SerializerMethodField(
        help_text="What the sender was answered (a refused message: the error); null while not answered."
    )
    delivery = serializers.SerializerMethodField()
    in_reply_to = serializers.UUIDField(
        source="in_reply_to_id",
        read_only=True,
        allow_null=True,
        help_text="The message this one answers: its reply_to named a message its sender received.",
    )
    replies = serializers.SerializerMethodField(
        help_text=f"The messages that answer this one, oldest first (at most {REPLIES_SHOWN})."
    )

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "request_body", "response_body", "delivery", "in_reply_to", "replies"]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": True, "nullable": True})
    def get_response_body(self, message):
        return answer_of(message)

    @extend_schema_field(DeliverySerializer)
    def get_delivery(self, message):
        return delivery_fields(message)

    @extend_schema_field(ReplySerializer(many=True))
    def get_replies(self, message):
        return ReplySerializer(message.first_replies(), many=True).data


class ErrorSerializer(serializers.Serializer):
    """Every error: a stable code, a message, the request's correlation id and optional details."""

    code = serializers.CharField()
    message = serializers.CharField()
    request_id = serializers.CharField()
    details = serializers.JSONField(allow_null=True)


class HealthSerializer(serializers.Serializer):
    status = serializers.CharField()
    version = serializers.CharField()
    protocol_version = serializers.CharField()
    flags = serializers.DictField(child=serializers.BooleanField())
    limits = serializers.DictField(child=serializers.IntegerField())


# --- Delivery: the inbox and dead letters (coordination/inbox.py) -----------------------------------------

MAX_RECEIPTS = 100
LEASE_SECONDS_MAX = 43200


class ReceiveSerializer(StrictSerializer):
    max_messages = WholeNumberField(min_value=1, max_value=100, default=10)
    wait_seconds = WholeNumberField(
        min_value=0,
        max_value=20,
        default=0,
        help_text="Long polling: with nothing available, answer once a message is, or [] after this many seconds.",
    )
    lease_seconds = WholeNumberField(min_value=1, max_value=LEASE_SECONDS_MAX, default=30)


class StreamQuerySerializer(StrictSerializer):
    """The stream's query string (numbers as text, as query strings carry them)."""

    lease_seconds = serializers.IntegerField(
        min_value=1, max_value=LEASE_SECONDS_MAX, default=30, help_text="Each streamed message's lease."
    )
    max_messages = serializers.IntegerField(
        min_value=1, max_value=100, default=10, help_text="Messages leased at a time while the stream keeps up."
    )


class ReceiptsSerializer(StrictSerializer):
    receipts = serializers.ListField(child=TextField(max_length=MAX_TEXT_LENGTH), min_length=1, max_length=MAX_RECEIPTS)


class NackSerializer(ReceiptsSerializer):
    delay_seconds = WholeNumberField(min_value=0, max_value=900, default=0)


class ExtendSerializer(ReceiptsSerializer):
    lease_seconds = WholeNumberField(min_value=1, max_value=LEASE_SECONDS_MAX, default=30)


class RedriveSerializer(StrictSerializer):
    ids = serializers.ListField(child=UUIDTextField(), min_length=1, max_length=MAX_RECEIPTS)


class InboxMessageSerializer(EnvelopeSerializer):
    """A received message: the envelope as sent, plus its lease."""

    id = serializers.UUIDField(help_text="Server message id.")
    receipt = serializers.CharField(help_text="Proves the lease: ack, nack or extend with it while it holds.")
    delivery_count = serializers.IntegerField(help_text="1 on the first delivery; deduplicate by message_id.")
    leased_until = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField()


class ReceiveResponseSerializer(serializers.Serializer):
    messages = InboxMessageSerializer(many=True)


class ReceiptResultSerializer(serializers.Serializer):
    receipt = serializers.CharField()
    result = serializers.ChoiceField(choices=["ok", "stale", "unknown"])


class ReceiptResultsSerializer(serializers.Serializer):
    results = ReceiptResultSerializer(many=True)


class InboxCountsSerializer(serializers.Serializer):
    queued = serializers.IntegerField()
    leased = serializers.IntegerField()
    acked = serializers.IntegerField()
    dead = serializers.IntegerField()


class InboxStatsSerializer(serializers.Serializer):
    counts = InboxCountsSerializer()
    oldest_available_age_seconds = serializers.FloatField(allow_null=True)


class RedriveResponseSerializer(serializers.Serializer):
    redriven = serializers.ListField(child=serializers.UUIDField())
    not_found = serializers.ListField(child=serializers.UUIDField(), help_text="Not a dead letter of yours.")


class DeadLetterSerializer(MessageRefsSerializer):
    envelope = serializers.JSONField(source="request_body", read_only=True)
    delivery = serializers.SerializerMethodField()

    class Meta:
        model = MessageLog
        fields = [
            "id",
            "organization_id",
            "message_id",
            "sender_id",
            "recipient_id",
            "type",
            "dead_reason",
            "dead_at",
            "delivery_count",
            "received_at",
            "created_at",
            "envelope",
            "delivery",
        ]
        read_only_fields = fields

    @extend_schema_field(DeliverySerializer)
    def get_delivery(self, message):
        return delivery_fields(message)
