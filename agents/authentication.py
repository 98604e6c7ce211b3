"""DRF authentication classes: API keys (with their HMAC signature) for agents, JWT and sessions for users.

``APIKeyAuthentication`` is the only class that accepts an agent's key, and the first of the API's
DEFAULT_AUTHENTICATION_CLASSES, so every endpoint, now and later, treats a key the same way: the key is
verified against the database (agents.keys), then a sent signature is always checked, and one is required
when ``BRIKK_HMAC_REQUIRED`` (the scheme is agents.signing).

Each successful authentication puts the organization and actor into the request context so that logs
and audit rows carry them; each failure raises ``AuthenticationFailed`` with a ``reason`` (and, for a
known key prefix, the key's organization), which audit.refusals audits.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions, status
from rest_framework_simplejwt import authentication as jwt_authentication

from agents import keys, signing
from brikk.lib.context import update_context
from brikk.lib.errors import WWW_AUTHENTICATE, AuthenticationThrottled, CodedError, ErrorCode
from brikk.lib.parsers import read_body


class AgentPrincipal:
    """``request.user`` for a request authenticated by an agent's API key."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    kind = "agent"

    def __init__(self, identity: keys.KeyIdentity):
        self.identity = identity
        self.pk = self.id = identity.agent_id
        self.agent_id = identity.agent_id
        self.organization_id = identity.organization_id

    def __str__(self):
        return f"agent:{self.identity.agent_name}"

    def get_username(self):
        return str(self)


class KeyAuthenticationFailed(exceptions.AuthenticationFailed):
    def __init__(self, reason: str, prefix: str = "", organization_id: str | None = None):
        messages = {
            "malformed": "The API key is malformed.",
            "unknown": "The API key is not valid.",
            "expired": "The API key has expired.",
            "revoked": "The API key has been revoked.",
            "agent_inactive": "The agent is not active.",
        }
        super().__init__(messages.get(reason, "The API key is not valid."))
        self.reason = reason
        self.key_prefix = prefix
        self.organization_id = organization_id


class SignatureFailed(CodedError, exceptions.AuthenticationFailed):
    """401 from the signature check; ``reason`` is audited as auth.failed with the key's organization."""

    status_code = status.HTTP_401_UNAUTHORIZED

    def __init__(self, detail=None, *, details=None):
        super().__init__(detail, details=details)
        self.reason = str(self.default_code)


class InvalidSignature(SignatureFailed):
    default_code = ErrorCode.INVALID_SIGNATURE
    default_detail = "The request signature is missing or does not match."


class TimestampError(SignatureFailed):
    default_code = ErrorCode.TIMESTAMP_ERROR
    default_detail = "X-Brikk-Timestamp is missing, malformed or outside the allowed window."


def presented_api_key(request) -> str | None:
    """The API key from X-API-Key, X-Brikk-Key or ``Authorization: Bearer brk_...``."""
    for header in ("X-API-Key", "X-Brikk-Key"):
        value = request.headers.get(header)
        if value:
            return value.strip()
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and keys.looks_like_key(credentials):
        return credentials
    return None


def authenticate_key(presented: str) -> tuple[AgentPrincipal, keys.KeyIdentity]:
    try:
        identity = keys.verify(presented)
    except keys.KeyRejected as rejected:
        raise KeyAuthenticationFailed(rejected.reason, rejected.prefix, rejected.organization_id) from None
    except keys.KeyThrottled as throttled:
        raise AuthenticationThrottled(
            f"Too many failed API key attempts (per {throttled.scope}); retry in {throttled.retry_after} s.",
            wait=throttled.retry_after,
            scope=throttled.scope,
            key_prefix=throttled.prefix,
            organization_id=throttled.organization_id,
        ) from None
    update_context(organization_id=identity.organization_id, actor_kind="agent", actor_id=identity.agent_id)
    return AgentPrincipal(identity), identity


def request_target(request) -> str:
    """What the signature covers of the URL: the path, plus ``?`` and the raw query string if any."""
    return signing.request_target(request.path, request.META.get("QUERY_STRING", ""))


def check_timestamp(value: str) -> None:
    try:
        stamped = signing.parse_timestamp(value)
    except (ValueError, OverflowError, OSError):
        raise TimestampError(f"{signing.TIMESTAMP_HEADER} must be RFC 3339 UTC ending in Z, or Unix seconds.") from None
    window = settings.BRIKK_HMAC_WINDOW_SECONDS
    if abs(timezone.now() - stamped) > timedelta(seconds=window):
        raise TimestampError(
            f"{signing.TIMESTAMP_HEADER} is outside the allowed window of ±{window} seconds.",
            details={"window_seconds": window},
        )


def check_signature(request, identity: keys.KeyIdentity, signature_value: str | None, timestamp_value: str | None):
    """401 invalid_signature or timestamp_error unless the request is signed with one of the agent's
    signing secrets over exactly this method, path and query, timestamp and body."""
    if not signature_value:
        raise InvalidSignature(f"This API requires a signed request ({signing.SIGNATURE_HEADER}).")
    if not timestamp_value:
        raise TimestampError(f"{signing.TIMESTAMP_HEADER} is required with a signature.")
    check_timestamp(timestamp_value)
    try:
        signatures = signing.parse_signature_header(signature_value)
    except ValueError as exc:
        raise InvalidSignature(f"{signing.SIGNATURE_HEADER} is malformed: {exc}.") from None
    body = read_body(request)  # the exact bytes received, read once through the request guards
    target = request_target(request)
    if not any(
        signing.matches(secret, signatures, request.method, target, timestamp_value, body)
        for secret in identity.signing_secrets()
    ):
        raise InvalidSignature()


class APIKeyAuthentication(authentication.BaseAuthentication):
    """An agent's API key and, whenever one is sent (always, when BRIKK_HMAC_REQUIRED), its signature.

    ``auth_method`` of the accepted request is ``hmac`` when it was signed, else ``api_key``."""

    auth_method = "api_key"

    def authenticate(self, request):
        presented = presented_api_key(request)
        if presented is None:
            return None  # users (JWT, session) do not sign; agents always present a key
        principal, identity = authenticate_key(presented)
        signature_value = request.headers.get(signing.SIGNATURE_HEADER)
        timestamp_value = request.headers.get(signing.TIMESTAMP_HEADER)
        if signature_value is None and timestamp_value is None and not settings.BRIKK_HMAC_REQUIRED:
            return principal, identity
        check_signature(request, identity, signature_value, timestamp_value)
        self.auth_method = "hmac"
        return principal, identity

    def authenticate_header(self, request):
        return WWW_AUTHENTICATE


class JWTAuthentication(jwt_authentication.JWTAuthentication):
    """simplejwt's, leaving ``Bearer brk_...`` API keys to APIKeyAuthentication."""

    auth_method = "jwt"

    def authenticate(self, request):
        header = self.get_header(request)
        if header is None:
            return None
        raw = self.get_raw_token(header)
        if raw is None or keys.looks_like_key(raw.decode(errors="replace")):
            return None
        try:
            result = super().authenticate(request)
        except exceptions.AuthenticationFailed as failure:
            failure.reason = "invalid_token"
            raise
        if result is not None:
            update_context(actor_kind="user", actor_id=str(result[0].pk))
        return result


class SessionAuthentication(authentication.SessionAuthentication):
    auth_method = "session"

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            update_context(actor_kind="user", actor_id=str(result[0].pk))
        return result


def auth_method(request) -> str | None:
    """Which way the request authenticated: api_key, hmac, jwt or session."""
    authenticator = getattr(request, "successful_authenticator", None)
    return getattr(authenticator, "auth_method", None)
