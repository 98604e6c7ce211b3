"""The inbox and dead-letter API. Thin views: the work is in inbox.py."""

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.permissions import InOrganization, OrganizationRole
from agents.scoping import OrganizationScopedMixin
from brikk.lib import parsers
from brikk.lib.errors import CodedError, ErrorCode
from coordination import inbox, schema
from coordination.filters import DeadLetterFilter
from coordination.models import MessageLog
from coordination.serializers import (
    DeadLetterSerializer,
    ExtendSerializer,
    NackSerializer,
    ReceiptsSerializer,
    ReceiveSerializer,
    RedriveSerializer,
)


class LongPollNotAvailable(CodedError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = ErrorCode.VALIDATION_ERROR
    default_detail = "Long polling is not available yet (it comes with the ASGI server); send wait_seconds 0 and poll."


class AgentInOrganization(InOrganization):
    """The inbox belongs to an agent: only an agent key reaches it (403 for people)."""

    message = "Only an agent has an inbox: use the agent's API key."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and getattr(request.user, "kind", None) == "agent"


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class InboxView(APIView):
    permission_classes = [AgentInOrganization]
    parser_classes = [parsers.GuardedJSONParser]


class ReceiveView(InboxView):
    """POST /api/v1/inbox/receive — lease the oldest available messages."""

    @extend_schema(**schema.INBOX_RECEIVE)
    def post(self, request):
        data = _valid(ReceiveSerializer, request)
        if data["wait_seconds"] > 0:
            raise LongPollNotAvailable(
                details={"wait_seconds": ["Long polling is not available yet; only 0 is accepted."]}
            )
        messages = inbox.receive(
            request.user.agent_id,
            request.organization_id,
            max_messages=data["max_messages"],
            lease_seconds=data["lease_seconds"],
        )
        return Response({"messages": messages})


class AckView(InboxView):
    """POST /api/v1/inbox/ack — done with these messages."""

    @extend_schema(**schema.INBOX_ACK)
    def post(self, request):
        data = _valid(ReceiptsSerializer, request)
        return Response({"results": inbox.ack(request.user.agent_id, data["receipts"])})


class NackView(InboxView):
    """POST /api/v1/inbox/nack — give these messages back, receivable again after the delay."""

    @extend_schema(**schema.INBOX_NACK)
    def post(self, request):
        data = _valid(NackSerializer, request)
        results = inbox.nack(request.user.agent_id, data["receipts"], delay_seconds=data["delay_seconds"])
        return Response({"results": results})


class ExtendView(InboxView):
    """POST /api/v1/inbox/extend — keep these leases for lease_seconds from now."""

    @extend_schema(**schema.INBOX_EXTEND)
    def post(self, request):
        data = _valid(ExtendSerializer, request)
        results = inbox.extend(request.user.agent_id, data["receipts"], lease_seconds=data["lease_seconds"])
        return Response({"results": results})


class StatsView(InboxView):
    """GET /api/v1/inbox/stats — counts per state and the age of the oldest available message."""

    @extend_schema(**schema.INBOX_STATS)
    def get(self, request):
        return Response(inbox.stats(request.user.agent_id))


class DeadLetterListView(OrganizationScopedMixin, generics.ListAPIView):
    """GET /api/v1/dead-letters — an agent's own, or (a person) the organization's, newest first."""

    permission_classes = [InOrganization]
    queryset = MessageLog.objects.filter(delivery_state=MessageLog.Delivery.DEAD)
    serializer_class = DeadLetterSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = DeadLetterFilter

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self.request.user, "kind", None) == "agent":
            queryset = queryset.filter(recipient_id=self.request.user.agent_id)
        return queryset

    @extend_schema(**schema.DEAD_LETTER_LIST)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class RedriveView(APIView):
    """POST /api/v1/dead-letters/redrive — owners and admins send dead letters back to the inbox."""

    permission_classes = [OrganizationRole]
    parser_classes = [parsers.GuardedJSONParser]

    @extend_schema(**schema.DEAD_LETTER_REDRIVE)
    def post(self, request):
        data = _valid(RedriveSerializer, request)
        return Response(inbox.redrive(request.organization_id, data["ids"], actor_id=str(request.user.pk)))
