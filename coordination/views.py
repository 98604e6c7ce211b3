"""The coordination API. Thin views: the layers are DRF components, the work is in echo.py."""

from django.conf import settings
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.authentication import auth_method
from agents.permissions import InOrganization, MaySendAsAgent
from agents.scoping import OrganizationScopedMixin
from brikk.lib import parsers
from coordination import batch, echo, idempotency, refusals, schema, throttling
from coordination.filters import MessageLogFilter
from coordination.messages import Caller
from coordination.models import MessageLog
from coordination.serializers import ENVELOPE_VERSION, MessageDetailSerializer, MessageSerializer

REPLAYED_HEADER = "Idempotent-Replayed"


def prefers_async(request) -> bool:
    preferences = {part.split("=", 1)[0].strip().lower() for part in request.headers.get("Prefer", "").split(",")}
    if "respond-async" in preferences:
        return True
    return settings.BRIKK_ASYNC_DEFAULT


def caller_of(request) -> Caller:
    user = request.user
    if getattr(user, "kind", None) == "agent":
        return Caller(request.organization_id, auth_method(request), agent_id=user.agent_id)
    return Caller(request.organization_id, auth_method(request), user_id=str(user.pk))


class EchoView(APIView):
    """POST /api/v1/coordination — the echo, through every layer in order:
    guards (initial) → authentication incl. HMAC (the API's default classes) → throttles → idempotency
    → validation."""

    permission_classes = [MaySendAsAgent]
    throttle_classes = [throttling.RateLimitThrottle]
    parser_classes = [parsers.GuardedJSONParser]

    def initial(self, request, *args, **kwargs):
        request.brikk_received_at = timezone.now()
        parsers.enforce(request)  # layer 1 runs before authentication
        super().initial(request, *args, **kwargs)

    @extend_schema(**schema.ECHO)
    def post(self, request):
        outcome = echo.submit_echo(
            caller_of(request),
            request.data,
            idempotency_header=request.headers.get(idempotency.HEADER),
            respond_async=prefers_async(request),
            received_at=request.brikk_received_at,
        )
        headers = {}
        if outcome.replayed:
            headers[REPLAYED_HEADER] = "true"
        if outcome.status == 202:
            headers["Location"] = outcome.body["links"]["self"]
            headers["Preference-Applied"] = "respond-async"
        return Response(outcome.body, status=outcome.status, headers=headers)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in throttling.response_headers(request).items():
            response[name] = value
        return response

    def record_refused(self, request, response, action) -> None:
        """Keep a refusal after authentication (audit/refusals.py decides which): the rejected row."""
        refusals.keep_refused(
            caller_of(request),
            request.data,
            status=response.status_code,
            body=response.data,
            action=action,
            idempotency_key=request.headers.get(idempotency.HEADER) or _message_id(request.data),
            received_at=request.brikk_received_at,
        )


class EchoSlashView(EchoView):
    """POST /api/v1/coordination/ — the same endpoint; documented once, without the slash."""

    @extend_schema(exclude=True)
    def post(self, request):
        return super().post(request)


class BatchView(EchoView):
    """POST /api/v1/coordination/batch — up to 100 envelopes, each answered on its own (coordination/batch.py),
    through the echo's layers: guards, authentication incl. HMAC, the rate limits counting one per envelope."""

    throttle_classes = [throttling.BatchRateLimitThrottle]

    @extend_schema(**schema.BATCH)
    def post(self, request):
        if request.headers.get(idempotency.HEADER) is not None:
            raise ValidationError({idempotency.HEADER: [batch.NO_IDEMPOTENCY_KEY]})
        body = batch.submit_batch(caller_of(request), request.data, received_at=request.brikk_received_at)
        return Response(body)

    def record_refused(self, request, response, action) -> None:
        """The batch refused as a whole after authentication: one audit row (coordination/batch.py)."""
        batch.keep_refused_batch(
            caller_of(request), request.data, status=response.status_code, body=response.data, action=action
        )


def _message_id(data) -> str | None:
    value = data.get("message_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


class MessageListView(OrganizationScopedMixin, generics.ListAPIView):
    """GET /api/v1/coordination/messages — the organization's messages, newest first, cursor-paginated."""

    permission_classes = [InOrganization]
    queryset = MessageLog.objects.all()
    serializer_class = MessageSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = MessageLogFilter

    @extend_schema(**schema.MESSAGE_LIST)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class MessageDetailView(OrganizationScopedMixin, generics.RetrieveAPIView):
    """GET /api/v1/coordination/messages/{id} — status, attempts, error, request and response."""

    permission_classes = [InOrganization]
    queryset = MessageLog.objects.all()
    serializer_class = MessageDetailSerializer

    @extend_schema(**schema.MESSAGE_DETAIL)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class HealthView(APIView):
    """GET /api/v1/coordination/health — version and which security flags are on. No secrets."""

    authentication_classes = []
    permission_classes = []

    @extend_schema(**schema.HEALTH)
    def get(self, request):
        return Response(
            {
                "status": "ok",
                "version": settings.BRIKK_VERSION,
                "protocol_version": ENVELOPE_VERSION,
                "flags": {
                    "hmac_required": settings.BRIKK_HMAC_REQUIRED,
                    "rate_limit_enabled": settings.BRIKK_RATE_LIMIT_ENABLED,
                    "rate_limit_fail_open": settings.BRIKK_RATE_LIMIT_FAIL_OPEN,
                    "idempotency_enabled": settings.BRIKK_IDEMPOTENCY_ENABLED,
                    "async_default": settings.BRIKK_ASYNC_DEFAULT,
                },
                "limits": {
                    "max_body_bytes": settings.BRIKK_MAX_BODY_BYTES,
                    "hmac_window_seconds": settings.BRIKK_HMAC_WINDOW_SECONDS,
                    "idempotency_ttl_seconds": settings.BRIKK_IDEMPOTENCY_TTL_SECONDS,
                },
            }
        )
