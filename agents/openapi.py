"""drf-spectacular descriptions of the API's authentication classes (loaded in AgentsConfig.ready)."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object

from agents import signing

CANONICAL_STRING = (
    "hex(HMAC-SHA256(signing secret, METHOD\\nPATH\\nTIMESTAMP\\nsha256_hex(raw body))), where PATH is the "
    "request path plus '?' and the raw query string when there is a query"
)


class APIKeyScheme(OpenApiAuthenticationExtension):
    """One class checks the key and its signature: three header schemes, the key alone or with a signature
    (only with a signature when BRIKK_HMAC_REQUIRED)."""

    target_class = "agents.authentication.APIKeyAuthentication"
    name = ["agentKey", "agentTimestamp", "agentSignature"]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-Brikk-Key",
                "description": "An agent's API key (also accepted as X-API-Key or Authorization: Bearer brk_...).",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": signing.TIMESTAMP_HEADER,
                "description": "RFC 3339 UTC ending in Z, or Unix seconds, within ±BRIKK_HMAC_WINDOW_SECONDS.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": signing.SIGNATURE_HEADER,
                "description": (
                    f"v1=<{CANONICAL_STRING}>; several space-separated values allowed. Checked whenever sent, "
                    "on every endpoint; required on every agent request when BRIKK_HMAC_REQUIRED=true."
                ),
            },
        ]

    def get_security_requirement(self, auto_schema):
        signed = {"agentKey": [], "agentTimestamp": [], "agentSignature": []}
        if settings.BRIKK_HMAC_REQUIRED:
            return signed
        return [{"agentKey": []}, signed]


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
