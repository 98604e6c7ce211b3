"""Django admin for the audit trail: read-only for everyone, filters, exact search, links, cheap pages."""

import re
import uuid
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditLog
from brikk.lib.admin import COUNT_CAP
from coordination.models import MessageLog

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:audit_auditlog_changelist")


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    """Tests run with DEBUG off but without collectstatic: no manifest to look names up in."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "correct-horse-battery")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def audit_rows(organizations, agents, count):
    rows = []
    now = timezone.now()
    for number in range(count):
        org = organizations[number % len(organizations)]
        agent = agents[number % len(agents)]
        rows.append(
            AuditLog(
                created_at=now - timedelta(seconds=number),
                correlation_id=f"corr-{number}",
                actor_kind="agent",
                actor_id=str(agent.pk),
                organization=org,
                action="echo.delivered" if number % 2 else "auth.failed",
                outcome="success" if number % 2 else "failure",
                resource_kind="message",
                resource_id=str(uuid.uuid4()),
                details={"n": number},
            )
        )
    AuditLog.objects.bulk_create(rows, batch_size=2000)


def whole_table_counts(queries):
    """COUNT(*) statements over the audit table that are not bounded by a LIMIT-ed subquery."""
    return [
        q["sql"]
        for q in queries
        if "COUNT(" in q["sql"].upper() and "audit_auditlog" in q["sql"] and "LIMIT" not in q["sql"].upper()
    ]


def test_nobody_can_add_change_or_delete_audit_rows(admin_client, new_agent):
    row = AuditLog.objects.filter(action="agent.created").get()
    change_url = reverse("admin:audit_auditlog_change", args=[row.pk])
    assert admin_client.get(reverse("admin:audit_auditlog_add")).status_code == 403
    assert admin_client.post(change_url, {"action": "nothing"}).status_code == 403
    assert admin_client.post(reverse("admin:audit_auditlog_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    row.refresh_from_db()
    assert row.action == "agent.created"
    # The detail page is a read-only view with no save button.
    detail = admin_client.get(change_url)
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert str(row.correlation_id).encode() in detail.content
    # No bulk actions (and so no "delete selected") on the changelist.
    assert b'name="action"' not in admin_client.get(CHANGELIST).content


def test_filters_and_exact_search(admin_client, make_org, make_agent):
    acme, other = make_org("Acme"), make_org("Other")
    agent = make_agent(acme).agent
    audit_rows([acme, other], [agent], 20)

    def listed(query):
        response = admin_client.get(CHANGELIST + query)
        assert response.status_code == 200, query
        return set(re.findall(r"corr-\d+", response.content.decode()))

    assert listed("?action=auth.failed") == {f"corr-{n}" for n in range(0, 20, 2)}
    assert listed("?outcome=success") == {f"corr-{n}" for n in range(1, 20, 2)}
    assert listed(f"?organization__id__exact={other.pk}") == {f"corr-{n}" for n in range(1, 20, 2)}
    assert listed("?actor_kind=agent") == {f"corr-{n}" for n in range(20)}
    assert listed("?actor_kind=user") == set()
    now = timezone.now()
    window = {"created_at__gte": now - timedelta(days=1), "created_at__lt": now + timedelta(days=1)}
    assert len(listed("?" + urlencode(window))) == 20  # what the "Past 7 days"/"Today" links send
    assert listed("?" + urlencode({"created_at__gte": now + timedelta(hours=1)})) == set()
    assert listed("?q=corr-7") == {"corr-7"}
    resource = AuditLog.objects.get(correlation_id="corr-3").resource_id
    assert listed(f"?q={resource}") == {"corr-3"}
    assert listed(f"?q={agent.pk}") == {f"corr-{n}" for n in range(20)}


def test_rows_link_to_their_message_log_and_agent(admin_client, org, new_agent):
    message = MessageLog.objects.create(
        organization=org,
        sender=new_agent.agent,
        recipient=new_agent.agent,
        status="delivered",
        received_at=timezone.now(),
        correlation_id="corr-msg-1",
    )
    AuditLog.objects.create(
        created_at=timezone.now(),
        correlation_id="corr-msg-1",
        actor_kind="agent",
        actor_id=str(new_agent.agent.pk),
        organization=org,
        action="echo.delivered",
        outcome="success",
        resource_kind="message",
        resource_id=str(message.pk),
    )
    page = admin_client.get(CHANGELIST + "?q=corr-msg-1").content.decode()
    message_url = reverse("admin:coordination_messagelog_change", args=[message.pk])
    agent_url = reverse("admin:agents_agent_change", args=[new_agent.agent.pk])
    assert f'href="{message_url}"' in page
    assert f'href="{agent_url}"' in page
    # And the message log page (read-only) links back to its audit rows.
    message_page = admin_client.get(message_url)
    assert message_page.status_code == 200
    assert "?q=corr-msg-1" in message_page.content.decode()
    assert admin_client.post(message_url, {"status": "failed"}).status_code == 403


def test_changelist_query_count_does_not_grow_with_rows_and_never_counts_the_table(
    admin_client, make_org, make_agent, django_assert_max_num_queries
):
    orgs = [make_org() for _ in range(5)]
    agents = [make_agent(org).agent for org in orgs]
    audit_rows(orgs, agents, 400)
    for query in ("", "?action=echo.delivered", f"?organization__id__exact={orgs[0].pk}", "?q=corr-5"):
        with django_assert_max_num_queries(8), CaptureQueriesContext(connection) as queries:
            response = admin_client.get(CHANGELIST + query)
        assert response.status_code == 200
        assert whole_table_counts(queries) == [], query
    # The page shows 100 rows out of many pages.
    response = admin_client.get(CHANGELIST)
    assert response.content.decode().count('class="field-outcome"') == 100  # list_per_page rows
    assert "?p=2" in response.content.decode()


@pytest.mark.pg_redis
def test_a_large_table_is_paginated_on_the_planner_estimate(admin_client, org, new_agent):
    audit_rows([org], [new_agent.agent], COUNT_CAP + 2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditlog")
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST + "?p=50")
    assert response.status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "audit_auditlog" in q["sql"]]
    assert counts == []  # unfiltered: pg_class.reltuples, no COUNT at all
    assert any("reltuples" in q["sql"] for q in queries)
    assert "corr-" in response.content.decode()


def test_the_action_filter_offers_every_registered_action(admin_client):
    from audit.actions import AuditAction

    page = admin_client.get(reverse("admin:audit_auditlog_changelist")).content.decode()
    for action in AuditAction:
        assert f"?action={action.value}" in page, action
    assert "?action=auth.login_throttled" in page  # recorded by the dashboard, once missing from the filter


def test_agents_and_organizations_named_by_messages_are_never_deleted(admin_client, org, owner, new_agent):
    """Messages name their agents and organization without a constraint in PostgreSQL (coordination/models.py,
    loose foreign keys): agents are only soft-deleted, and PROTECT refuses the rest in the ORM."""
    from django.db.models import ProtectedError

    from agents import services as agent_services

    peer = agent_services.create_agent(org, name="beta", owner=owner).agent
    assert admin_client.post(reverse("admin:agents_agent_delete", args=[peer.pk]), {"post": "yes"}).status_code == 403
    change_page = admin_client.get(reverse("admin:agents_agent_change", args=[peer.pk])).content.decode()
    assert reverse("admin:agents_agent_delete", args=[peer.pk]) not in change_page
    message = MessageLog.objects.create(
        organization=org, sender=new_agent.agent, recipient=peer, status="delivered", received_at=timezone.now()
    )
    with pytest.raises(ProtectedError):
        peer.delete()
    refused = admin_client.post(reverse("admin:agents_organization_delete", args=[org.pk]), {"post": "yes"})
    assert refused.status_code == 200 and b"<title>Cannot delete organization" in refused.content
    assert MessageLog.objects.filter(pk=message.pk, sender=new_agent.agent, organization=org).exists()
