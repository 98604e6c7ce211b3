"""The push endpoints API and a message's resend and attempts. Thin views: the work is in push_endpoints.py.

People manage endpoints: owners and admins change them, members read them; an agent key gets 403 (an agent's
push target is its organization's decision). Another organization's agent, endpoint or message is a 404.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, permissions, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import Agent
from agents.permissions import InOrganization, OrganizationRole
from agents.scoping import OrganizationScopedMixin
from brikk.lib import parsers
from coordination import push_endpoints
from coordination.answers import delivery_fields
from coordination.models import DeliveryAttempt, MessageLog, PushEndpoint
from coordination.push_serializers import (
    DeliveryAttemptSerializer,
    IssuedPushEndpointSerializer,
    PushEndpointCreateSerializer,
    PushEndpointSerializer,
    PushEndpointUpdateSerializer,
    RecoveredSerializer,
    RecoverSerializer,
    ResendSerializer,
)
from coordination.serializers import ErrorSerializer

NO_STORE = {"Cache-Control": "no-store"}


class PeopleOnly(permissions.BasePermission):
    """Push endpoints, resend and recover are managed by people (JWT or session), never with an agent key."""

    message = "Push endpoints are managed by people of the organization: use a JWT or the session, not an agent key."

    def has_permission(self, request, view):
        return getattr(request.user, "kind", None) != "agent"


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


FORBIDDEN = _error("forbidden: an agent key, a member changing something, or an organization that is not yours.")
NOT_FOUND = _error("not_found: no such agent, endpoint or message in your organization.")
CONFLICT = _error("conflict: the agent already has an enabled push endpoint (at most one).")
INVALID = _error(
    "validation_error: details name every bad field; a refused URL (not https, user info, or a host that resolves "
    "to a loopback, private, link-local, multicast, reserved or IPv4-mapped address) is named under url."
)
TAGS = ["push"]


def _checked(call):
    """Run a service call; its Django ValidationError (a refused URL) becomes the API's 422."""
    try:
        return call()
    except DjangoValidationError as invalid:
        detail = invalid.message_dict if hasattr(invalid, "error_dict") else {"non_field_errors": invalid.messages}
        raise serializers.ValidationError(detail) from None


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class PushEndpointViewSet(viewsets.GenericViewSet):
    """/api/v1/agents/{agent_id}/endpoints/ and /api/v1/agents/{agent_id}/endpoints/{id}, with its actions."""

    permission_classes = [permissions.IsAuthenticated, PeopleOnly, OrganizationRole]
    parser_classes = [parsers.GuardedJSONParser]
    queryset = PushEndpoint.objects.all()
    serializer_class = PushEndpointSerializer
    pagination_class = None

    def agent(self) -> Agent:
        return get_object_or_404(
            Agent.objects.live(), pk=self.kwargs["agent_id"], organization_id=self.request.organization_id
        )

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset.none()
        return self.queryset.filter(organization_id=self.request.organization_id, agent_id=self.kwargs["agent_id"])

    def endpoint(self) -> PushEndpoint:
        self.agent()  # a deleted agent's endpoints are gone with it
        return get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])

    def _answer(self, endpoint, code=status.HTTP_200_OK):
        return Response(PushEndpointSerializer(endpoint).data, status=code)

    def _issued(self, issued, code):
        body = {**PushEndpointSerializer(issued.endpoint).data, "secret": issued.secret}
        return Response(body, status=code, headers=NO_STORE)

    @extend_schema(
        summary="List an agent's push endpoints (members read)",
        responses={200: PushEndpointSerializer(many=True), 403: FORBIDDEN, 404: NOT_FOUND},
        tags=TAGS,
    )
    def list(self, request, agent_id):
        self.agent()
        return Response(PushEndpointSerializer(self.get_queryset(), many=True).data)

    @extend_schema(
        summary="Register a push endpoint for an agent (owner or admin); its secret is shown once",
        request=PushEndpointCreateSerializer,
        responses={201: IssuedPushEndpointSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT, 422: INVALID},
        tags=TAGS,
    )
    def create(self, request, agent_id):
        agent = self.agent()
        data = _valid(PushEndpointCreateSerializer, request)
        issued = _checked(
            lambda: push_endpoints.create(
                agent, data["url"], data["description"], actor_id=request.user.pk, enabled=data["enabled"]
            )
        )
        return self._issued(issued, status.HTTP_201_CREATED)

    @extend_schema(
        summary="One push endpoint (never its secret)",
        responses={200: PushEndpointSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
        tags=TAGS,
    )
    def retrieve(self, request, agent_id, pk):
        return self._answer(self.endpoint())

    @extend_schema(
        summary="Change a push endpoint's URL or description (owner or admin)",
        request=PushEndpointUpdateSerializer,
        responses={200: PushEndpointSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 422: INVALID},
        tags=TAGS,
    )
    def partial_update(self, request, agent_id, pk):
        endpoint = self.endpoint()
        data = _valid(PushEndpointUpdateSerializer, request)
        return self._answer(_checked(lambda: push_endpoints.update(endpoint, actor_id=request.user.pk, **data)))

    @extend_schema(
        summary="Delete a push endpoint (owner or admin); the agent's waiting messages go to its inbox",
        responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND},
        tags=TAGS,
    )
    def destroy(self, request, agent_id, pk):
        push_endpoints.delete(self.endpoint(), actor_id=request.user.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Rotate a push endpoint's secret (owner or admin); the new one is shown once",
        description="The previous secret keeps signing (a second signature) for BRIKK_WEBHOOK_SECRET_GRACE_HOURS.",
        request=None,
        responses={200: IssuedPushEndpointSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
        tags=TAGS,
    )
    def rotate_secret(self, request, agent_id, pk):
        return self._issued(push_endpoints.rotate_secret(self.endpoint(), actor_id=request.user.pk), status.HTTP_200_OK)

    @extend_schema(
        summary="Enable a push endpoint (owner or admin)",
        request=None,
        responses={200: PushEndpointSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT},
        tags=TAGS,
    )
    def enable(self, request, agent_id, pk):
        endpoint = self.endpoint()
        push_endpoints.enable(endpoint, actor_id=request.user.pk)
        return self._answer(endpoint)

    @extend_schema(
        summary="Disable a push endpoint (owner or admin); the agent's waiting messages go to its inbox",
        request=None,
        responses={200: PushEndpointSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
        tags=TAGS,
    )
    def disable(self, request, agent_id, pk):
        endpoint = self.endpoint()
        push_endpoints.disable_by_person(endpoint, actor_id=request.user.pk)
        endpoint.refresh_from_db()
        return self._answer(endpoint)

    @extend_schema(
        summary="Send the agent's push_exhausted dead letters since a time back to queued (owner or admin)",
        request=RecoverSerializer,
        responses={200: RecoveredSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 422: INVALID},
        tags=TAGS,
    )
    def recover(self, request, agent_id, pk):
        endpoint = self.endpoint()
        since = _valid(RecoverSerializer, request)["since"]
        return Response({"recovered": push_endpoints.recover(endpoint, since, actor_id=request.user.pk)})


endpoint_list = PushEndpointViewSet.as_view({"get": "list", "post": "create"})
endpoint_detail = PushEndpointViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
endpoint_rotate_secret = PushEndpointViewSet.as_view({"post": "rotate_secret"})
endpoint_enable = PushEndpointViewSet.as_view({"post": "enable"})
endpoint_disable = PushEndpointViewSet.as_view({"post": "disable"})
endpoint_recover = PushEndpointViewSet.as_view({"post": "recover"})


class MessageResendView(APIView):
    """POST /api/v1/coordination/messages/{id}/resend — an owner or admin sends one message again."""

    permission_classes = [permissions.IsAuthenticated, PeopleOnly, OrganizationRole]
    parser_classes = [parsers.GuardedJSONParser]

    @extend_schema(
        summary="Send one message to its recipient again (owner or admin)",
        description="Back to queued and available now, its deliveries counted from 0 and its ttl started again; "
        "for a queued, acked or dead message. Audited as message.resent.",
        request=None,
        responses={
            200: ResendSerializer,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: _error("conflict: the message is leased to a consumer right now, or never entered an inbox."),
        },
        tags=TAGS,
    )
    def post(self, request, pk):
        message = get_object_or_404(MessageLog, pk=pk, organization_id=request.organization_id)
        previous = push_endpoints.resend(message, actor_id=request.user.pk)
        message.refresh_from_db()
        return Response({"id": message.pk, "previous_state": previous, "delivery": delivery_fields(message)})


class MessageAttemptsView(OrganizationScopedMixin, generics.ListAPIView):
    """GET /api/v1/coordination/messages/{id}/attempts — the message's delivery attempts, oldest first."""

    permission_classes = [InOrganization]
    serializer_class = DeliveryAttemptSerializer
    pagination_class = None
    queryset = MessageLog.objects.all()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return DeliveryAttempt.objects.none()
        message = get_object_or_404(super().get_queryset(), pk=self.kwargs["pk"])
        return DeliveryAttempt.objects.filter(message=message).order_by("started_at", "id")

    @extend_schema(
        summary="A message's delivery attempts, newest last: leases and pushes (endpoint, status, latency, error, "
        "the first 1 KiB of the answer)",
        responses={200: DeliveryAttemptSerializer(many=True), 404: NOT_FOUND},
        tags=["coordination"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
