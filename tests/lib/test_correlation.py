"""Correlation ids: kept when valid, made when not, returned, and written into audit rows and logs."""

import json
import logging

import pytest

from audit.models import AuditLog

pytestmark = pytest.mark.django_db


def test_valid_incoming_request_id_is_kept_and_lands_in_the_audit_row(api_client, new_agent):
    response = api_client.get(
        "/api/v1/agents/", HTTP_X_API_KEY="brk_badbadbadbad." + "x" * 43, HTTP_X_REQUEST_ID="trace-abc-123"
    )
    assert response.status_code == 401
    assert response["X-Request-ID"] == "trace-abc-123"
    assert response.json()["request_id"] == "trace-abc-123"
    assert AuditLog.objects.get(correlation_id="trace-abc-123").action == "auth.failed"


@pytest.mark.parametrize("incoming", [None, "short", "has spaces in it", "x" * 200, "<script>alert(1)</script>"])
def test_missing_or_invalid_request_id_is_replaced(api_client, owner, incoming):
    api_client.force_authenticate(owner)
    extra = {"HTTP_X_REQUEST_ID": incoming} if incoming else {}
    response = api_client.post("/api/v1/agents/", {"name": "traced"}, format="json", **extra)
    assert response.status_code == 201
    request_id = response["X-Request-ID"]
    assert request_id != incoming and len(request_id) == 32
    assert AuditLog.objects.get(action="agent.created").correlation_id == request_id


def test_every_log_line_of_a_request_carries_its_id(api_client, new_agent, caplog):
    from brikk.lib.logging import JsonFormatter, RequestContextFilter

    caplog.set_level(logging.INFO)
    handler_filter = RequestContextFilter()
    response = api_client.get(
        "/api/v1/agents/", HTTP_X_API_KEY="brk_badbadbadbad." + "x" * 43, HTTP_X_REQUEST_ID="trace-log-0001"
    )
    audit_records = [r for r in caplog.records if r.name == "brikk.audit"]
    assert audit_records
    formatter = JsonFormatter()
    for record in audit_records:
        handler_filter.filter(record)
        line = json.loads(formatter.format(record))
        assert line["request_id"] == "trace-log-0001"
        assert line["action"] == "auth.failed"
    assert response.status_code == 401


def test_audit_rows_written_inside_services_carry_the_client_address(api_client, owner):
    """Service functions audit without a request object; the address comes from the request context."""
    from agents import services
    from brikk.lib.context import RequestContext, reset_context, set_context

    token = set_context(RequestContext(request_id="ctx-ip-000001", client_ip="203.0.113.7", user_agent="bot/1.0"))
    try:
        agent = services.create_agent(owner.memberships.get().organization, name="ctx").agent
    finally:
        reset_context(token)
    row = AuditLog.objects.get(action="agent.created", resource_id=str(agent.pk))
    assert (row.client_ip, row.user_agent, row.correlation_id) == ("203.0.113.7", "bot/1.0", "ctx-ip-000001")


def test_echo_style_audit_through_http_has_the_client_address(api_client, new_agent):
    response = api_client.get(
        "/api/v1/agents/", HTTP_X_API_KEY="brk_badbadbadbad." + "x" * 43, REMOTE_ADDR="198.51.100.9"
    )
    assert response.status_code == 401
    assert AuditLog.objects.get(action="auth.failed").client_ip == "198.51.100.9"
