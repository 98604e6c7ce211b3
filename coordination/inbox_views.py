"""The inbox and dead-letter API. Thin views: the work is in inbox.py."""

import uuid
from types import SimpleNamespace

from django.http import StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import generics, renderers, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.permissions import InOrganization, OrganizationRole
from agents.scoping import OrganizationScopedMixin
from brikk.lib import continued, parsers
from brikk.lib.context import current
from coordination import inbox, leasing, schema, waiting
from coordination.filters import DeadLetterFilter
from coordination.models import MessageLog
from coordination.serializers import (
    DeadLetterSerializer,
    ExtendSerializer,
    NackSerializer,
    ReceiptsSerializer,
    ReceiveSerializer,
    RedriveSerializer,
    StreamQuerySerializer,
)


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


def _consumer(kind: str, request) -> leasing.Consumer:
    context = current()
    return leasing.Consumer(kind=kind, name=f"{kind} {context.request_id[:12]} from {context.client_ip or '?'}")


def _ask(request, kind: str, data: dict) -> waiting.Request:
    return waiting.Request(
        agent_id=request.user.agent_id,
        organization_id=request.organization_id,
        max_messages=data["max_messages"],
        lease_seconds=data["lease_seconds"],
        consumer=_consumer(kind, request),
    )


class ReceiveView(InboxView):
    """POST /api/v1/inbox/receive — lease the oldest available messages; with ``wait_seconds``, wait for
    the first one (long poll, finished on the event loop: brikk/lib/continued.py)."""

    @extend_schema(**schema.INBOX_RECEIVE)
    def post(self, request):
        data = _valid(ReceiveSerializer, request)
        ask = _ask(request, "receive", data)
        messages = inbox.receive(
            ask.agent_id,
            ask.organization_id,
            max_messages=ask.max_messages,
            lease_seconds=ask.lease_seconds,
            consumer=ask.consumer,
        )
        response = Response({"messages": messages})
        if not messages and data["wait_seconds"] > 0:

            async def wait_for_messages(response):
                response.data = {"messages": await waiting.receive(ask, data["wait_seconds"])}
                return response

            response.continuation = wait_for_messages
        return response


class EventStreamRenderer(renderers.BaseRenderer):
    """``text/event-stream``: what an EventSource asks for. The stream's events are written by
    coordination/waiting.py; this renders the answers that are not a stream (errors) as one ``error`` event,
    with the usual JSON error body as its data and the HTTP status unchanged."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return f"event: error\ndata: {renderers.JSONRenderer().render(data).decode()}\n\n".encode()


class AcceptOnlyNegotiation(parsers.GuardedContentNegotiation):
    """The stream's answer is chosen by the Accept header alone: ``?format=`` is not DRF's renderer switch
    here (the query string is the stream's own, validated by StreamQuerySerializer)."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


class StreamView(InboxView):
    """GET /api/v1/inbox/stream — Server-Sent Events: each available message leased and sent as an event,
    a heartbeat comment every BRIKK_STREAM_HEARTBEAT_SECONDS; ``Last-Event-ID`` resumes after that message."""

    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]
    content_negotiation_class = AcceptOnlyNegotiation

    @extend_schema(**schema.INBOX_STREAM)
    def get(self, request):
        serializer = StreamQuerySerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        data = {**serializer.validated_data}
        last_event_id = _last_event_id(request)
        ask, identity = _ask(request, "stream", data), request.auth
        response = Response(status=200)

        async def open_stream(response):
            return StreamingHttpResponse(
                continued.streaming_content(request._request, waiting.stream(ask, identity, last_event_id)),
                content_type="text/event-stream; charset=utf-8",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )

        response.continuation = open_stream
        return response


def _last_event_id(request) -> uuid.UUID | None:
    value = request.headers.get("Last-Event-ID")
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise serializers.ValidationError({"Last-Event-ID": ["Must be the id of a message event."]}) from None


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
