from django.utils import timezone
from rest_framework import serializers

from agents import rules
from agents.models import Agent, APIKey


class APIKeySerializer(serializers.ModelSerializer):
    """A key as listed: its prefix and lifecycle, never the secret or its hash."""

    state = serializers.SerializerMethodField()

    class Meta:
        model = APIKey
        fields = ["id", "prefix", "state", "created_at", "expires_at", "rotated_at", "revoked_at", "last_used_at"]
        read_only_fields = fields

    def get_state(self, key: APIKey) -> str:
        if key.is_revoked:
            return "revoked"
        if key.is_expired():
            return "expired"
        return "rotating" if key.rotated_at else "active"


class AgentSerializer(serializers.ModelSerializer):
    keys = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = [
            "id",
            "organization",
            "owner",
            "name",
            "description",
            "status",
            "metadata",
            "last_activity_at",
            "created_at",
            "updated_at",
            "keys",
        ]
        read_only_fields = ["id", "organization", "owner", "last_activity_at", "created_at", "updated_at", "keys"]

    def get_keys(self, agent: Agent) -> list[dict]:
        return APIKeySerializer(agent.api_keys.all(), many=True).data

    def validate_status(self, value):
        if value == Agent.Status.DELETED:
            raise serializers.ValidationError("Delete an agent with DELETE, not by setting its status.")
        return value

    def validate_metadata(self, value):
        return rules.check_metadata(value)

    def validate_name(self, value):
        return rules.check_name_free(self.context["request"].organization_id, value, agent=self.instance)


class AgentCreateSerializer(AgentSerializer):
    key_expires_at = serializers.DateTimeField(required=False, allow_null=True, write_only=True)

    class Meta(AgentSerializer.Meta):
        fields = [*AgentSerializer.Meta.fields, "key_expires_at"]

    def validate_key_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("The expiry must be in the future.")
        return value


class IssuedCredentialsSerializer(serializers.Serializer):
    """Returned once, when an agent is created or its key rotated."""

    agent = AgentSerializer()
    api_key = serializers.CharField(help_text="Shown once; store it now. Only a hash is kept.")
    signing_secret = serializers.CharField(required=False, help_text="HMAC signing secret, shown once.")


class RotateKeySerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(required=False, min_value=0, max_value=rules.MAX_ROTATION_GRACE_SECONDS)


class RevokeKeySerializer(serializers.Serializer):
    prefix = serializers.CharField(required=False, max_length=16, help_text="Revoke only this key; default all.")
