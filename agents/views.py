from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework_simplejwt import views as jwt_views

from agents import services
from agents.login_guard import LoginGuardThrottle
from agents.models import Agent
from agents.permissions import OrganizationRole
from agents.scoping import OrganizationScopedMixin
from agents.serializers import (
    AgentCreateSerializer,
    AgentSerializer,
    IssuedCredentialsSerializer,
    RevokeKeySerializer,
    RotateKeySerializer,
)


class AgentViewSet(
    OrganizationScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Agents of the caller's organization. Members read; owners and admins write."""

    permission_classes = [IsAuthenticated, OrganizationRole]
    queryset = Agent.objects.live().prefetch_related("api_keys").order_by("-created_at")
    serializer_class = AgentSerializer

    def get_serializer_class(self):
        if self.action == "create":
            return AgentCreateSerializer
        return super().get_serializer_class()

    @extend_schema(responses={201: IssuedCredentialsSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        created = services.create_agent(
            request.membership.organization,
            name=data["name"],
            owner=request.user,
            description=data.get("description", ""),
            metadata=data.get("metadata"),
            status=data.get("status", Agent.Status.ACTIVE),
            key_expires_at=data.get("key_expires_at"),
            request=request,
        )
        body = {
            "agent": AgentSerializer(created.agent, context=self.get_serializer_context()).data,
            "api_key": created.key.plaintext,
            "signing_secret": created.signing_secret,
        }
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    def perform_update(self, serializer):
        services.update_agent(serializer.instance, request=self.request, **serializer.validated_data)

    def perform_destroy(self, instance):
        services.soft_delete_agent(instance, request=self.request)

    @extend_schema(request=RotateKeySerializer, responses={201: IssuedCredentialsSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-key")
    def rotate_key(self, request, pk=None):
        agent = self.get_object()
        serializer = RotateKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.rotate_key(
            agent, grace_seconds=serializer.validated_data.get("grace_seconds"), request=request
        )
        body = {"agent": AgentSerializer(agent).data, "api_key": issued.plaintext}
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @extend_schema(request=RevokeKeySerializer, responses={200: AgentSerializer})
    @action(detail=True, methods=["post"], url_path="revoke-key")
    def revoke_key(self, request, pk=None):
        agent = self.get_object()
        serializer = RevokeKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.revoke_keys(agent, prefix=serializer.validated_data.get("prefix"), request=request)
        return Response(AgentSerializer(self.get_object()).data)


class TokenObtainPairView(jwt_views.TokenObtainPairView):
    """POST /api/v1/auth/token/: simplejwt's, behind the same password-guessing policy as every login."""

    throttle_classes = [LoginGuardThrottle]
