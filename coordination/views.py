"""The coordination API. Thin views: the layers are DRF components, the work is in services."""

import logging

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import scoping
from agents.authentication import APIKeyAuthentication, JWTAuthentication, SessionAuthentication, auth_method
from audit.services import record
from brikk.errors import PayloadTooLarge, ProtocolError
from coordination import idempotency, parsers, schema, services, throttling
from coordination.authentication import HMACSignatureAuthentication
from coordination.exceptions import IdempotencyInProgress, IdempotencyKeyReused
from coordination.filters import MessageLogFilter
from coordination.models import MessageLog
from coordination.serializers import ENVELOPE_VERSION, MessageDetailSerializer, MessageSerializer

logger = logging.getLogger("brikk.coordination")

REPLAYED_HEADER = "Idempotent-Replayed"
GUARD_ERRORS = (exceptions.UnsupportedMediaType, exceptions.ParseError, PayloadTooLarge, ProtocolError)


class InOrganization(permissions.IsAuthenticated):
    """An authenticated agent, or a user acting in one of their organizations (scoping.resolve)."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        scoping.resolve(request)
        return True


def prefers_async(request) -> bool:
    preferences = {part.split("=", 1)[0].strip().lower() for part in request.headers.get("Prefer", "").split(",")}
    if "respond-async" in preferences:
        return True
    return settings.BRIKK_ASYNC_DEFAULT


def caller_of(request) -> services.Caller:
    user = request.user
    if getattr(user, "kind", None) == "agent":
        return services.Caller(request.organization_id, auth_method(request), agent_id=user.agent_id)
    return services.Caller(request.organization_id, auth_method(request), user_id=str(user.pk))


class EchoView(APIView):
    """POST /api/v1/coordination — the echo, through every layer in order:
    guards (initial) → authentication incl. HMAC → throttles → idempotency → validation."""

    authentication_classes = [
        HMACSignatureAuthentication,
        APIKeyAuthentication,
        JWTAuthentication,
        SessionAuthentication,
    ]
    permission_classes = [InOrganization]
    throttle_classes = [throttling.CallerRateThrottle, throttling.OrganizationRateThrottle]
    parser_classes = [parsers.GuardedJSONParser]

    def initial(self, request, *args, **kwargs):
        request.brikk_received_at = timezone.now()
        parsers.enforce(request)  # layer 1 runs before authentication
        super().initial(request, *args, **kwargs)

    @extend_schema(**schema.ECHO)
    def post(self, request):
        outcome = services.submit_echo(
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

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        try:
            self.record_refusal(exc, response)
        except DatabaseError:
            logger.error("could not record the refusal (%s)", response.data.get("code"))
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in throttling.response_headers(request).items():
            response[name] = value
        return response

    def record_refusal(self, exc, response) -> None:
        """Audit every refusal; after authentication it is also a MessageLog row (status rejected)."""
        request = self.request
        if isinstance(exc, GUARD_ERRORS):
            record(  # before authentication: the actor is unknown, and must not be resolved now
                "request.rejected",
                outcome="failure",
                request=request._request,
                actor_kind="anonymous",
                actor_id="",
                resource_kind="request",
                details={"code": response.data.get("code"), "status": response.status_code, "path": request.path},
            )
            return
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            return  # audited as auth.failed by brikk.errors
        if getattr(request, "organization_id", None) is None:
            return  # refused before an organization was known (permission.denied is audited)
        action = "echo.rejected"
        if isinstance(exc, exceptions.Throttled):
            action = "rate_limit.refused"
        elif isinstance(exc, IdempotencyKeyReused):
            action = "idempotency.conflict"
        elif isinstance(exc, IdempotencyInProgress):
            action = "idempotency.in_progress"
        services.record_refusal(
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


def _message_id(data) -> str | None:
    value = data.get("message_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


class MessageListView(generics.ListAPIView):
    """GET /api/v1/coordination/messages — the organization's messages, newest first, cursor-paginated."""

    permission_classes = [InOrganization]
    serializer_class = MessageSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = MessageLogFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request organization
            return MessageLog.objects.none()
        return MessageLog.objects.filter(organization_id=self.request.organization_id)

    @extend_schema(**schema.MESSAGE_LIST)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class MessageDetailView(generics.RetrieveAPIView):
    """GET /api/v1/coordination/messages/{id} — status, attempts, error, request and response."""

    permission_classes = [InOrganization]
    serializer_class = MessageDetailSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request organization
            return MessageLog.objects.none()
        return MessageLog.objects.filter(organization_id=self.request.organization_id)

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
