"""OpenAPI documentation of the coordination endpoints: headers, bodies and every error status."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from coordination.serializers import (
    BatchResponseSerializer,
    BatchSendSerializer,
    DeadLetterSerializer,
    EchoResponseSerializer,
    EnvelopeSerializer,
    ErrorSerializer,
    ExtendSerializer,
    HealthSerializer,
    InboxStatsSerializer,
    MessageDetailSerializer,
    MessageSerializer,
    NackSerializer,
    ReceiptResultsSerializer,
    ReceiptsSerializer,
    ReceiveResponseSerializer,
    ReceiveSerializer,
    RedriveResponseSerializer,
    RedriveSerializer,
    StreamQuerySerializer,
)


def _header(name, description, *, response=False, type_=OpenApiTypes.STR):
    return OpenApiParameter(
        name, type_, location=OpenApiParameter.HEADER, description=description, required=False, response=response
    )


# What idempotency_key_for accepts, as ASCII (a header carries Latin-1 at most): no surrounding space.
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$"}


def _error(description):
    return OpenApiResponse(ErrorSerializer, description=description)


RATE_LIMIT_HEADERS = [
    _header("X-RateLimit-Limit", "Requests allowed per window by the binding policy.", response=True),
    _header("X-RateLimit-Remaining", "Requests left in the current window.", response=True),
    _header("X-RateLimit-Reset", "Seconds until a slot frees in the window.", response=True),
    _header("RateLimit-Policy", 'IETF policies, e.g. "caller";q=600;w=60, "organization";q=6000;w=60.', response=True),
    _header("RateLimit", 'IETF current limit, e.g. "caller";r=599;t=60.', response=True),
]

COMMON_ERRORS = {
    401: _error(
        "unauthorized (unknown, expired, revoked or disabled key), invalid_signature (a signature sent and wrong, "
        "or none with BRIKK_HMAC_REQUIRED) or timestamp_error."
    ),
    403: _error("forbidden: the sender is not the caller, or the organization is not yours."),
    429: OpenApiResponse(
        ErrorSerializer,
        description="rate_limited: too many failed API key checks for the key's prefix or from your address; "
        "see Retry-After.",
    ),
}

SIGNED_REQUEST_HEADERS = [
    _header("X-Brikk-Key", "The agent's API key (or Authorization: Bearer brk_..., or X-API-Key)."),
    _header("X-Brikk-Timestamp", "RFC 3339 UTC with Z, or Unix seconds; within ±BRIKK_HMAC_WINDOW_SECONDS."),
    _header(
        "X-Brikk-Signature",
        "v1=<hex HMAC-SHA256 of METHOD\\nPATH\\nTIMESTAMP\\nsha256_hex(body)>, PATH being the path plus '?' and"
        " the raw query string when there is a query; several values allowed. Required when"
        " BRIKK_HMAC_REQUIRED=true, on every agent request of every endpoint.",
    ),
]

ECHO = {
    "summary": "Send an echo (Brikk envelope v1.0)",
    "request": EnvelopeSerializer,
    "parameters": [
        *SIGNED_REQUEST_HEADERS,
        _header(
            "Idempotency-Key",
            "One operation per sender for 24 h; defaults to the envelope's message_id. 1 to 255 printable "
            "characters (422 otherwise).",
            type_=IDEMPOTENCY_KEY_SCHEMA,
        ),
        _header("Prefer", "respond-async: answer 202 at once and process in the background."),
        _header("X-Request-ID", "Correlation id; echoed back and in every error's request_id."),
        *RATE_LIMIT_HEADERS,
        _header(
            "Idempotent-Replayed", "true when the answer is the stored answer of an earlier request.", response=True
        ),
        _header("Retry-After", "Seconds to wait (429, 503).", response=[429, 503]),
        _header("Location", "The message's status URL (202).", response=[202]),
    ],
    "responses": {
        200: OpenApiResponse(EchoResponseSerializer, description="Delivered (status: delivered)."),
        202: OpenApiResponse(EchoResponseSerializer, description="Accepted for async processing (status: accepted)."),
        400: _error("protocol_error: the body is not valid JSON (or empty)."),
        **COMMON_ERRORS,
        409: _error("idempotency_in_progress: the first request with this key is still in flight."),
        413: _error("payload_too_large: the body exceeds BRIKK_MAX_BODY_BYTES."),
        415: _error("unsupported_media_type: only application/json."),
        422: _error(
            "validation_error (details name every bad field), idempotency_key_reused (same key, different body) "
            "or message_id_reused (this sender already sent another message with this message_id)."
        ),
        429: _error(
            "rate_limited: over the caller's or the organization's limit, or too many failed API key checks; "
            "see Retry-After."
        ),
        503: _error(
            "service_unavailable: rate limiting unavailable with BRIKK_RATE_LIMIT_FAIL_OPEN=false, or the database "
            "unavailable; see Retry-After."
        ),
    },
    "tags": ["coordination"],
}

BATCH = {
    "summary": "Send up to 100 envelopes at once, each answered on its own",
    "description": (
        "Each envelope is exactly the echo's and meets the echo's rules on its own (idempotency by its "
        "message_id, validation, authorization). The ones accepted are delivered as a synchronous echo delivers, "
        "committed together in one transaction with their idempotency records and audit rows before the answer; "
        "a refused one changes nothing and its result carries the error the echo would give (validation_error, "
        "forbidden, idempotency_key_reused, message_id_reused). A message_id sent before with the same content "
        "(or earlier in the same batch) is `replayed` with its original id. The batch counts one per envelope "
        "in the rate limits, all or nothing. Synchronous only: Prefer: respond-async is ignored."
    ),
    "request": BatchSendSerializer,
    "parameters": [
        *SIGNED_REQUEST_HEADERS,
        _header("X-Request-ID", "Correlation id; echoed back and in every error's request_id."),
        *RATE_LIMIT_HEADERS,
        _header("Retry-After", "Seconds to wait (429, 503).", response=[429, 503]),
    ],
    "responses": {
        200: OpenApiResponse(
            BatchResponseSerializer, description="A result per envelope, in order: delivered, replayed or refused."
        ),
        400: _error("protocol_error: the body is not valid JSON (or empty)."),
        **COMMON_ERRORS,
        409: _error(
            "idempotency_in_progress: another request kept sending the same message_ids while this batch ran; "
            "nothing of it was stored, retry shortly."
        ),
        413: _error("payload_too_large: the body exceeds BRIKK_MAX_BODY_BYTES."),
        415: _error("unsupported_media_type: only application/json."),
        422: _error(
            'validation_error: the body is not {"messages": [1 to 100 envelopes]} (details.messages), or an '
            "Idempotency-Key header was sent (each envelope's message_id is its key). Nothing is stored."
        ),
        429: _error(
            "rate_limited: the batch's envelopes do not all fit in the caller's or the organization's window "
            "(each counts one; nothing is counted or stored), or too many failed API key checks; see Retry-After."
        ),
        503: _error(
            "service_unavailable: rate limiting unavailable with BRIKK_RATE_LIMIT_FAIL_OPEN=false, or the database "
            "unavailable; see Retry-After."
        ),
    },
    "tags": ["coordination"],
}

MESSAGE_LIST = {
    "summary": "List the organization's messages",
    "responses": {200: MessageSerializer(many=True), **COMMON_ERRORS, 422: _error("validation_error: a bad filter.")},
    "tags": ["coordination"],
}

MESSAGE_DETAIL = {
    "summary": "A message's status, attempts, error, request and response, delivery and replies",
    "responses": {
        200: MessageDetailSerializer,
        **COMMON_ERRORS,
        404: _error("not_found (also for other organizations)."),
    },
    "tags": ["coordination"],
}

HEALTH = {
    "summary": "Service version and which security flags are on",
    "responses": {200: HealthSerializer},
    "tags": ["coordination"],
    "auth": [],
}

_INBOX_ERRORS = {
    400: _error("protocol_error: the body is not valid JSON."),
    **COMMON_ERRORS,
    403: _error("forbidden: only an agent key reaches an inbox."),
    413: _error("payload_too_large: the body exceeds BRIKK_MAX_BODY_BYTES."),
    415: _error("unsupported_media_type: only application/json."),
}


def _receipts_call(summary, request):
    return {
        "summary": summary,
        "request": request,
        "responses": {
            200: OpenApiResponse(
                ReceiptResultsSerializer,
                description="A result per receipt, in order: ok, stale (the lease ran out or passed to another "
                "consumer) or unknown (not a message of your inbox).",
            ),
            **_INBOX_ERRORS,
            422: _error("validation_error: details name every bad field."),
        },
        "tags": ["inbox"],
    }


INBOX_RECEIVE = {
    "summary": "Lease the oldest available messages of your inbox",
    "request": ReceiveSerializer,
    "responses": {
        200: ReceiveResponseSerializer,
        **_INBOX_ERRORS,
        422: _error("validation_error: a bad field."),
    },
    "tags": ["inbox"],
}


def _error_event(response: OpenApiResponse) -> OpenApiResponse:
    return OpenApiResponse(OpenApiTypes.OBJECT, description=f"{response.description} (as an `event: error`)")


INBOX_STREAM = {
    "summary": "Stream your inbox as Server-Sent Events",
    "description": (
        "Each available message is leased for `lease_seconds` and sent as an event: `id:` the message id, "
        "`event: message`, `data:` the same JSON object as a receive item. A comment line (`: heartbeat`) every "
        "15 seconds while idle. Reconnect with `Last-Event-ID`: the messages your streams leased after that one "
        "and did not ack are sent again at once. Ack, nack or extend through the inbox endpoints. The stream "
        "ends with `event: closed` when its key stops authenticating. Errors before the stream opens are the "
        "usual JSON body, or one `event: error` whose data is that body when only `text/event-stream` is "
        "accepted."
    ),
    "parameters": [
        OpenApiParameter(
            "Last-Event-ID", OpenApiTypes.UUID, OpenApiParameter.HEADER, description="Resume after this message."
        ),
        StreamQuerySerializer,
        OpenApiParameter("format", exclude=True),  # not a renderer switch here (AcceptOnlyNegotiation)
    ],
    "responses": {
        (200, "text/event-stream"): OpenApiResponse(
            response=OpenApiTypes.OBJECT, description="The event stream: events with id, event and data."
        ),
        # As JSON, or as one `event: error` whose data is that JSON body when only text/event-stream is accepted.
        **{
            (status, media_type): response if media_type == "application/json" else _error_event(response)
            for status, response in {
                **COMMON_ERRORS,
                403: _error("forbidden: only an agent key reaches an inbox."),
                422: _error("validation_error: a bad query parameter or Last-Event-ID."),
            }.items()
            for media_type in ("application/json", "text/event-stream")
        },
    },
    "tags": ["inbox"],
}
INBOX_ACK = _receipts_call("Acknowledge received messages (done with them)", ReceiptsSerializer)
INBOX_NACK = _receipts_call("Give received messages back, receivable again after delay_seconds", NackSerializer)
INBOX_EXTEND = _receipts_call("Extend leases to lease_seconds from now", ExtendSerializer)
INBOX_STATS = {
    "summary": "Your inbox: counts per state and the age of the oldest available message",
    "responses": {200: InboxStatsSerializer, **COMMON_ERRORS, 403: _error("forbidden: only an agent has an inbox.")},
    "tags": ["inbox"],
}
DEAD_LETTER_LIST = {
    "summary": "Dead letters: an agent's own, or the organization's for a person",
    "responses": {
        200: DeadLetterSerializer(many=True),
        **COMMON_ERRORS,
        400: _error("protocol_error: a cursor that does not decode."),
        422: _error("validation_error: a bad filter."),
    },
    "tags": ["inbox"],
}
DEAD_LETTER_REDRIVE = {
    "summary": "Send dead letters back to their recipient's inbox (owner or admin)",
    "request": RedriveSerializer,
    "responses": {
        200: RedriveResponseSerializer,
        400: _error("protocol_error: the body is not valid JSON."),
        **COMMON_ERRORS,
        403: _error("forbidden: owners and admins only (never an agent key)."),
        413: _error("payload_too_large: the body exceeds BRIKK_MAX_BODY_BYTES."),
        415: _error("unsupported_media_type: only application/json."),
        422: _error("validation_error: details name every bad field."),
    },
    "tags": ["inbox"],
}
