"""Push endpoints and delivery attempts as the API shows them. A secret appears only in the answer that
issued it (``IssuedPushEndpointSerializer``), never in a list or a read."""

from rest_framework import serializers

from coordination.models import DeliveryAttempt, PushEndpoint
from coordination.serializers import DeliverySerializer, StrictSerializer, TextField

URL_MAX_LENGTH = PushEndpoint._meta.get_field("url").max_length
DESCRIPTION_MAX_LENGTH = PushEndpoint._meta.get_field("description").max_length


class PushEndpointSerializer(serializers.ModelSerializer):
    agent_id = serializers.UUIDField(read_only=True)
    disabled_reason = serializers.ChoiceField(
        choices=PushEndpoint.DisabledReason.choices,
        allow_blank=True,
        read_only=True,
        help_text="Empty while enabled; manual (a person), gone (the endpoint answered 410) or failing (no "
        "success for too long).",
    )

    class Meta:
        model = PushEndpoint
        fields = [
            "id",
            "agent_id",
            "url",
            "description",
            "enabled",
            "disabled_reason",
            "disabled_at",
            "last_success_at",
            "failing_since",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class IssuedPushEndpointSerializer(PushEndpointSerializer):
    secret = serializers.CharField(
        help_text="The signing secret (whsec_ + base64), shown once: store it now. Verify deliveries with it."
    )

    class Meta(PushEndpointSerializer.Meta):
        fields = [*PushEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class PushEndpointCreateSerializer(StrictSerializer):
    url = TextField(
        max_length=URL_MAX_LENGTH,
        help_text="https:// (http:// only where BRIKK_WEBHOOK_ALLOW_HTTP); its host must resolve to public "
        "addresses only, or to ones in BRIKK_WEBHOOK_ALLOWED_NETWORKS.",
    )
    description = TextField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True, default="")
    enabled = serializers.BooleanField(
        required=False, default=True, help_text="Default true; an agent has at most one enabled endpoint (409)."
    )


class PushEndpointUpdateSerializer(StrictSerializer):
    url = TextField(max_length=URL_MAX_LENGTH, required=False)
    description = TextField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True)


class RecoverSerializer(StrictSerializer):
    since = serializers.DateTimeField(
        help_text="RFC 3339: the messages dead-lettered with reason push_exhausted since then go back to queued."
    )


class RecoveredSerializer(serializers.Serializer):
    recovered = serializers.IntegerField(help_text="How many messages went back to queued.")


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    endpoint_id = serializers.UUIDField(
        read_only=True, allow_null=True, help_text="A push's endpoint (null once deleted, and for leases)."
    )

    class Meta:
        model = DeliveryAttempt
        fields = [
            "id",
            "kind",
            "consumer",
            "started_at",
            "leased_until",
            "outcome",
            "ended_at",
            "endpoint_id",
            "status_code",
            "latency_ms",
            "error",
            "response_excerpt",
        ]
        read_only_fields = fields


class ResendSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    previous_state = serializers.ChoiceField(choices=["queued", "acked", "dead"])
    delivery = DeliverySerializer()
