"""Layer 3, the HMAC signature, as a DRF authentication class placed before APIKeyAuthentication.

A request that carries signature headers is authenticated here: the API key first (401
unauthorized), then the timestamp window (401 timestamp_error), then the signature with the
agent's current signing secret or, until it expires, the previous one (401 invalid_signature).
The scheme itself is coordination.signing.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication

from agents.authentication import authenticate_key, presented_api_key
from brikk.lib.errors import WWW_AUTHENTICATE
from brikk.lib.parsers import raw_body
from coordination import signing
from coordination.exceptions import InvalidSignature, TimestampError


class HMACSignatureAuthentication(authentication.BaseAuthentication):
    auth_method = "hmac"

    def authenticate(self, request):
        presented = presented_api_key(request)
        if presented is None:
            return None  # users (JWT, session) do not sign; agents always present a key
        signature_value = request.headers.get(signing.SIGNATURE_HEADER)
        timestamp_value = request.headers.get(signing.TIMESTAMP_HEADER)
        if signature_value is None and timestamp_value is None and not settings.BRIKK_HMAC_REQUIRED:
            return None  # an unsigned request; APIKeyAuthentication takes it

        principal, identity = authenticate_key(presented)
        if not signature_value:
            raise InvalidSignature(f"This API requires a signed request ({signing.SIGNATURE_HEADER}).")
        if not timestamp_value:
            raise TimestampError(f"{signing.TIMESTAMP_HEADER} is required with a signature.")
        self.check_timestamp(timestamp_value)
        try:
            signatures = signing.parse_signature_header(signature_value)
        except ValueError as exc:
            raise InvalidSignature(f"{signing.SIGNATURE_HEADER} is malformed: {exc}.") from None

        secrets = identity.signing_secrets()  # from the same cache read as the key
        body = raw_body(request)
        if not any(
            signing.matches(secret, signatures, request.method, request.path, timestamp_value, body)
            for secret in secrets
        ):
            raise InvalidSignature()
        return principal, identity

    @staticmethod
    def check_timestamp(value: str) -> None:
        try:
            stamped = signing.parse_timestamp(value)
        except (ValueError, OverflowError, OSError):
            raise TimestampError(
                f"{signing.TIMESTAMP_HEADER} must be RFC 3339 UTC ending in Z, or Unix seconds."
            ) from None
        window = settings.BRIKK_HMAC_WINDOW_SECONDS
        skew = abs(timezone.now() - stamped)
        if skew > timedelta(seconds=window):
            raise TimestampError(
                f"{signing.TIMESTAMP_HEADER} is outside the allowed window of ±{window} seconds.",
                details={"window_seconds": window},
            )

    def authenticate_header(self, request):
        return WWW_AUTHENTICATE
