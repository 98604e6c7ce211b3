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
    assert set(echo["responses"]) == {"200", "202", "400", "401", "403", "409", "413", "415", "422", "429", "503"}
    for status in ("400", "401", "403", "409", "413", "415", "422", "429", "503"):
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


def test_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
