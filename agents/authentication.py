"""DRF authentication classes: API keys for agents, JWT and sessions for users.

Each successful authentication puts the organization and actor into the request context so
that logs and audit rows carry them; each failure raises ``AuthenticationFailed`` with a
``reason``, which the exception handler audits (brikk.lib.errors).
"""

from rest_framework import authentication, exceptions
from rest_framework_simplejwt import authentication as jwt_authentication

from agents import keys
from brikk.lib.context import update_context
from brikk.lib.errors import WWW_AUTHENTICATE


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
    def __init__(self, reason: str, prefix: str = ""):
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
        raise KeyAuthenticationFailed(rejected.reason, rejected.prefix) from None
    update_context(organization_id=identity.organization_id, actor_kind="agent", actor_id=identity.agent_id)
    return AgentPrincipal(identity), identity


class APIKeyAuthentication(authentication.BaseAuthentication):
    auth_method = "api_key"

    def authenticate(self, request):
        presented = presented_api_key(request)
        if presented is None:
            return None
        return authenticate_key(presented)

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
    """Which authentication class accepted the request: api_key, hmac, jwt or session."""
    authenticator = getattr(request, "successful_authenticator", None)
    return getattr(authenticator, "auth_method", None)
