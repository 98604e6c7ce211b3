"""The error answers every API operation can give, added to the OpenAPI schema in one place.

drf-spectacular documents what a view declares; the layers every view shares (the request guards in
brikk/lib/parsers.py, authentication, organization scoping, the database) answer too, on every endpoint.
``document_errors`` (a SPECTACULAR_SETTINGS postprocessing hook) adds each such status, with the one error
body, to every operation it applies to, unless the view documented it already (coordination/schema.py).
The schemathesis run (tests/project/test_schemathesis.py) fails on any status the schema does not list.
``document_links`` adds the OpenAPI links from a created agent or message to the operations on it.
"""

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error: a stable code, a message, the request's correlation id and optional details.",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "details": {"nullable": True},
    },
    "required": ["code", "message", "request_id", "details"],
}

BODY_400 = "protocol_error: the body is not JSON (NaN and Infinity included), or is empty; details.reason says which."
CURSOR_400 = "protocol_error: the cursor does not decode (details.reason invalid_cursor); start without one."
UNAUTHORIZED_401 = "unauthorized: no credentials, or an unknown, expired or revoked key or token."
TOKEN_401 = "unauthorized: wrong username or password, or an invalid or expired refresh token."
FORBIDDEN_403 = (
    "forbidden: your role does not allow this, or X-Brikk-Organization names an organization you are not in."
)
NOT_FOUND_404 = "not_found: no such resource in your organization."
NOT_ACCEPTABLE_406 = "not_acceptable: the Accept header asks for something other than JSON."
TOO_LARGE_413 = "payload_too_large: the body exceeds BRIKK_MAX_BODY_BYTES."
MEDIA_TYPE_415 = "unsupported_media_type: only application/json."
UNACCEPTABLE_422 = (
    "validation_error: details name every bad field; also a value the service cannot take (NUL, an unpaired "
    "surrogate, a number beyond a double's range, nesting past BRIKK_MAX_JSON_DEPTH), a header with a control "
    "character or a query parameter with a NUL."
)
UNAVAILABLE_503 = "service_unavailable: the database cannot be reached; see Retry-After."

METHODS = ("get", "put", "post", "patch", "delete")

AGENT_ID = {"id": "$response.body#/agent/id"}
MESSAGE_ID = {"id": "$response.body#/id"}
AGENT_PATHS = [
    ("get", "/api/v1/agents/{id}/"),
    ("patch", "/api/v1/agents/{id}/"),
    ("delete", "/api/v1/agents/{id}/"),
    ("post", "/api/v1/agents/{id}/rotate-key/"),
    ("post", "/api/v1/agents/{id}/revoke-key/"),
]
# OpenAPI links (what a response's ids lead to), for clients and for schemathesis' stateful run:
# (operation, status) -> [(target operation, parameters)].
LINKS = {
    ("post", "/api/v1/agents/", "201"): [(target, AGENT_ID) for target in AGENT_PATHS],
    ("post", "/api/v1/agents/{id}/rotate-key/", "201"): [(target, AGENT_ID) for target in AGENT_PATHS],
    ("post", "/api/v1/coordination", "200"): [(("get", "/api/v1/coordination/messages/{id}"), MESSAGE_ID)],
    ("post", "/api/v1/coordination", "202"): [(("get", "/api/v1/coordination/messages/{id}"), MESSAGE_ID)],
}


def _errors_of(path: str, operation: dict) -> dict[str, str]:
    """The shared layers' statuses that apply to ``operation``, with their descriptions."""
    errors = {}
    names = {parameter.get("name") for parameter in operation.get("parameters", []) if parameter.get("in") == "query"}
    if "requestBody" in operation:
        errors["400"] = BODY_400
    elif "cursor" in names:
        errors["400"] = CURSOR_400
    if path.startswith("/api/v1/auth/token/"):
        errors["401"] = TOKEN_401
    elif operation.get("security"):
        errors["401"] = UNAUTHORIZED_401
        errors["403"] = FORBIDDEN_403
    if "{" in path:
        errors["404"] = NOT_FOUND_404
    errors["406"] = NOT_ACCEPTABLE_406
    if "requestBody" in operation:
        errors["413"] = TOO_LARGE_413
        errors["415"] = MEDIA_TYPE_415
    errors["422"] = UNACCEPTABLE_422
    errors["503"] = UNAVAILABLE_503
    return errors


def document_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation lists the error statuses it can answer."""
    result.setdefault("components", {}).setdefault("schemas", {}).setdefault("Error", ERROR_SCHEMA)
    for path, item in result.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in _errors_of(path, operation).items():
                responses.setdefault(
                    status, {"content": {"application/json": {"schema": ERROR_REF}}, "description": description}
                )
    document_links(result)
    return result


def document_links(result) -> None:
    paths = result.get("paths", {})
    for (method, path, status), targets in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        links = response.setdefault("links", {})
        for (target_method, target_path), parameters in targets:
            target = paths.get(target_path, {}).get(target_method)
            if target is None or "operationId" not in target:
                continue
            links[target["operationId"]] = {"operationId": target["operationId"], "parameters": parameters}
