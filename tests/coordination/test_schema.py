"""The OpenAPI schema generates cleanly and documents the coordination endpoints, errors and headers."""

import pytest
import yaml
from django.core.management import call_command


@pytest.fixture(scope="module")
def schema(tmp_path_factory, django_db_blocker):
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    with django_db_blocker.unblock():
        # --fail-on-warn turns any warning (unresolvable type, name collision...) into an error.
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def test_echo_operation_documents_every_status_and_header(schema):
    echo = schema["paths"]["/api/v1/coordination"]["post"]
    assert set(echo["responses"]) == {
        "200", "202", "400", "401", "403", "406", "409", "413", "415", "422", "429", "503"
    }  # fmt: skip
    for status in ("400", "401", "403", "406", "409", "413", "415", "422", "429", "503"):
        assert echo["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    request_headers = {p["name"] for p in echo["parameters"] if p["in"] == "header"}
    assert {"Idempotency-Key", "Prefer", "X-Brikk-Timestamp", "X-Brikk-Signature", "X-Brikk-Key"} <= request_headers
    ok_headers = set(echo["responses"]["200"]["headers"])
    assert {
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "RateLimit-Policy",
        "RateLimit",
    } <= ok_headers
    assert "Idempotent-Replayed" in ok_headers
    for code in ("validation_error", "idempotency_key_reused", "message_id_reused"):
        assert code in echo["responses"]["422"]["description"]
    assert "idempotency_in_progress" in echo["responses"]["409"]["description"]
    assert "Retry-After" in echo["responses"]["429"]["headers"]
    assert "Location" in echo["responses"]["202"]["headers"]
    envelope = schema["components"]["schemas"]["EnvelopeRequest"]
    assert set(envelope["required"]) == {"message_id", "ts", "sender", "recipient", "payload"}
    assert set(schema["components"]["schemas"]["Error"]["properties"]) == {"code", "message", "request_id", "details"}
    schemes = schema["components"]["securitySchemes"]
    assert {"agentKey", "agentTimestamp", "agentSignature", "jwtAuth", "cookieAuth"} <= set(schemes)


def test_every_agent_operation_offers_the_key_alone_or_signed_and_documents_the_canonical_string(schema):
    """Issue 9: one authentication class for every endpoint; the signature covers the query string."""
    signed = {"agentKey": [], "agentTimestamp": [], "agentSignature": []}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security")
            if not security or security == [{}] or not any("agentKey" in option for option in security):
                continue
            assert signed in security, (method, path)
    for path in ("/api/v1/agents/", "/api/v1/coordination/messages", "/api/v1/coordination"):
        assert any("agentKey" in option for option in next(iter(schema["paths"][path].values()))["security"])
    signature = schema["components"]["securitySchemes"]["agentSignature"]
    assert signature["name"] == "X-Brikk-Signature"
    assert "plus '?' and the raw query string" in signature["description"]
    echo_signature = next(
        p for p in schema["paths"]["/api/v1/coordination"]["post"]["parameters"] if p["name"] == "X-Brikk-Signature"
    )
    assert "raw query string" in echo_signature["description"]


def test_with_hmac_required_the_schema_offers_only_signed_agent_requests(tmp_path, settings, django_db_blocker):
    settings.BRIKK_HMAC_REQUIRED = True
    path = tmp_path / "schema.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--file", str(path))
    required = yaml.safe_load(path.read_text())
    for operation in (
        required["paths"]["/api/v1/agents/"]["get"],
        required["paths"]["/api/v1/coordination/messages/{id}"]["get"],
    ):
        agent_options = [option for option in operation["security"] if "agentKey" in option]
        assert agent_options == [{"agentKey": [], "agentTimestamp": [], "agentSignature": []}]


def test_messages_and_health_are_documented(schema):
    paths = schema["paths"]
    assert "/api/v1/coordination/" not in paths  # the trailing-slash alias is documented once
    listed = paths["/api/v1/coordination/messages"]["get"]
    assert {"agent", "status", "type", "since", "until", "cursor"} <= {p["name"] for p in listed["parameters"]}
    assert "404" in paths["/api/v1/coordination/messages/{id}"]["get"]["responses"]
    health = paths["/api/v1/coordination/health"]["get"]
    assert health.get("security") in (None, [], [{}])  # no authentication needed
    assert "/Health" in str(health["responses"]["200"])


def test_schema_and_docs_are_served(client, settings):
    # Swagger UI links drf-spectacular-sidecar's static files; the manifest storage needs collectstatic.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def test_every_operation_documents_the_errors_of_the_shared_layers(schema):
    """brikk/openapi.py: the statuses schemathesis found answered but undocumented (401, 403, 404, 415, 413,
    400, 422) are listed wherever the layer that answers them applies, with the one error body."""
    error = {"$ref": "#/components/schemas/Error"}
    operations = {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert len(operations) == 34  # 22 before push endpoints (issue 11): 9 of them, resend and attempts; batch
    for (method, path), operation in operations.items():
        responses = operation["responses"]
        expected = {"406", "422", "503"}
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
        if operation.get("security"):
            expected |= {"401", "403"}
        if path.startswith("/api/v1/auth/token/"):
            expected |= {"401"}
        if "{id}" in path:
            expected |= {"404"}
        if any(parameter["name"] == "cursor" for parameter in operation.get("parameters", [])):
            expected |= {"400"}
        assert expected <= set(responses), (method, path, expected - set(responses))
        for status in expected:
            assert responses[status]["content"]["application/json"]["schema"] == error, (method, path, status)
    assert "BRIKK_MAX_JSON_DEPTH" in operations[("post", "/api/v1/agents/")]["responses"]["422"]["description"]


def test_links_lead_from_created_resources_to_their_operations(schema):
    created = schema["paths"]["/api/v1/agents/"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in created.values()} == {
        "v1_agents_retrieve",
        "v1_agents_partial_update",
        "v1_agents_destroy",
        "v1_agents_rotate_key_create",
        "v1_agents_revoke_key_create",
    }
    assert {link["parameters"]["id"] for link in created.values()} == {"$response.body#/agent/id"}
    echoed = schema["paths"]["/api/v1/coordination"]["post"]["responses"]
    for status in ("200", "202"):
        (link,) = echoed[status]["links"].values()
        assert link == {"operationId": "v1_coordination_messages_retrieve", "parameters": {"id": "$response.body#/id"}}


def test_push_endpoint_operations_document_their_errors_and_show_the_secret_only_when_issued(schema):
    paths = schema["paths"]
    base = "/api/v1/agents/{agent_id}/endpoints/"
    create = paths[base]["post"]["responses"]
    assert {"201", "403", "404", "409", "422"} <= set(create)
    assert "IPv4-mapped" in create["422"]["description"]
    assert "conflict" in create["409"]["description"]
    issued = create["201"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "secret" in schema["components"]["schemas"][issued]["properties"]
    listed = paths[base]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"]
    assert "secret" not in schema["components"]["schemas"][listed.rsplit("/", 1)[1]]["properties"]
    assert set(paths[base + "{id}"]) >= {"get", "patch", "delete"} and "put" not in paths[base + "{id}"]
    for action in ("rotate-secret", "enable", "disable", "recover"):
        assert {"200", "403", "404"} <= set(paths[f"{base}{{id}}/{action}"]["post"]["responses"]), action
    assert "409" in paths[base + "{id}/enable"]["post"]["responses"]
    assert "409" in paths["/api/v1/coordination/messages/{id}/resend"]["post"]["responses"]
    attempts = paths["/api/v1/coordination/messages/{id}/attempts"]["get"]["responses"]["200"]
    item = attempts["content"]["application/json"]["schema"]["items"]["$ref"].rsplit("/", 1)[1]
    assert {"endpoint_id", "status_code", "latency_ms", "error", "response_excerpt"} <= set(
        schema["components"]["schemas"][item]["properties"]
    )


def test_the_batch_send_documents_its_bodies_and_errors(schema):
    batch = schema["paths"]["/api/v1/coordination/batch"]["post"]
    request = batch["requestBody"]["content"]["application/json"]["schema"]
    assert request == {"$ref": "#/components/schemas/BatchSendRequest"}
    messages = schema["components"]["schemas"]["BatchSendRequest"]["properties"]["messages"]
    assert (messages["minItems"], messages["maxItems"]) == (1, 100)
    assert messages["items"] == {"$ref": "#/components/schemas/EnvelopeRequest"}
    answer = batch["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/BatchResponse"}
    result = schema["components"]["schemas"]["BatchResult"]["properties"]
    assert set(result) == {"index", "message_id", "status", "id", "delivery", "error"}
    assert {"400", "401", "403", "409", "413", "415", "422", "429", "503"} <= set(batch["responses"])
    assert "each counts one" in batch["responses"]["429"]["description"]
    assert "X-Brikk-Signature" in {parameter["name"] for parameter in batch["parameters"]}
    assert "X-RateLimit-Remaining" in batch["responses"]["200"]["headers"]
    assert "Retry-After" in batch["responses"]["429"]["headers"]
