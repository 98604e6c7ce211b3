"""Layer 6, the Brikk envelope v1.0, and the representations of stored messages."""

import re
import uuid

from rest_framework import serializers

from coordination.models import MessageLog

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


class AgentRefSerializer(StrictSerializer):
    agent_id = serializers.UUIDField()
    org_id = serializers.UUIDField(required=False)


def _validate_message_id(value: uuid.UUID) -> uuid.UUID:
    if value.version not in ACCEPTED_UUID_VERSIONS:
        raise serializers.ValidationError("message_id must be a UUID version 7 (preferred) or 4.")
    return value


def _validate_ts(value: str) -> str:
    if not RFC3339_UTC.match(value):
        raise serializers.ValidationError("ts must be RFC 3339 UTC ending in Z, e.g. 2025-01-31T12:00:00Z.")
    return value


class EnvelopeSerializer(StrictSerializer):
    """Brikk envelope v1.0. Unknown fields are rejected."""

    version = serializers.ChoiceField(choices=[ENVELOPE_VERSION], default=ENVELOPE_VERSION)
    message_id = serializers.UUIDField(validators=[_validate_message_id], help_text="UUID v7 (preferred) or v4.")
    ts = serializers.CharField(validators=[_validate_ts], help_text="RFC 3339 UTC with Z.")
    type = serializers.ChoiceField(choices=MessageLog.Type.values, default=MessageLog.Type.MESSAGE)
    sender = AgentRefSerializer()
    recipient = AgentRefSerializer()
    payload = serializers.DictField(help_text="Any JSON object.")
    ttl_ms = serializers.IntegerField(min_value=1, max_value=120000, default=30000)
    reply_to = serializers.CharField(max_length=255, required=False)
    nonce = serializers.CharField(max_length=255, required=False)


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


class MessageSerializer(serializers.ModelSerializer):
    organization_id = serializers.UUIDField(read_only=True)
    sender_id = serializers.UUIDField(read_only=True, allow_null=True)
    recipient_id = serializers.UUIDField(read_only=True, allow_null=True)

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


class MessageDetailSerializer(MessageSerializer):
    request_body = serializers.JSONField(read_only=True)
    response_body = serializers.JSONField(read_only=True)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "request_body", "response_body"]
        read_only_fields = fields


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
