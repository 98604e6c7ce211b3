"""drf-spectacular descriptions of the project's authentication classes (loaded in CoordinationConfig.ready)."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object


class APIKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agents.authentication.APIKeyAuthentication"
    name = "agentKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Brikk-Key",
            "description": "An agent's API key (also accepted as X-API-Key or Authorization: Bearer brk_...).",
        }


class HMACScheme(OpenApiAuthenticationExtension):
    target_class = "coordination.authentication.HMACSignatureAuthentication"
    name = "agentKeyWithSignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Brikk-Signature",
            "description": "The agent's API key plus X-Brikk-Timestamp and X-Brikk-Signature: v1=<hex HMAC-SHA256>.",
        }


class JWTScheme(OpenApiAuthenticationExtension):
    target_class = "agents.authentication.JWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer", bearer_format="JWT"
        )


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "agents.authentication.SessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
