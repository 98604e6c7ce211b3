"""Agent names are unique per organization ignoring case: the rule (agents/rules.py), the API, the
database constraint and the migration that introduced it."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from agents import rules
from agents.models import NAME_TAKEN, Agent

AGENTS_URL = "/api/v1/agents/"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["ALPHA", "Alpha", "aLpHa"])
def test_the_rule_refuses_a_name_differing_only_in_case(org, new_agent, name):
    with pytest.raises(ValidationError) as refused:
        rules.check_name_free(org.pk, name)
    assert refused.value.messages == [NAME_TAKEN]
    # The agent itself may change the case of its own name.
    assert rules.check_name_free(org.pk, name, agent=new_agent.agent) == name


@pytest.mark.django_db
def test_the_rule_ignores_other_organizations_and_deleted_agents(org, new_agent, make_org, make_agent):
    other = make_org("Other")
    assert rules.check_name_free(other.pk, "ALPHA") == "ALPHA"
    Agent.objects.filter(pk=new_agent.agent.pk).update(status=Agent.Status.DELETED)
    assert rules.check_name_free(org.pk, "ALPHA") == "ALPHA"


@pytest.mark.django_db
def test_the_api_refuses_a_name_differing_only_in_case(api_client, owner, new_agent):
    api_client.force_authenticate(owner)
    response = api_client.post(AGENTS_URL, {"name": "ALPHA"}, format="json")
    assert response.status_code == 422
    assert response.json()["details"]["name"] == [NAME_TAKEN]
    second = api_client.post(AGENTS_URL, {"name": "beta"}, format="json").json()["agent"]
    renamed = api_client.patch(f"{AGENTS_URL}{second['id']}/", {"name": "Alpha"}, format="json")
    assert renamed.status_code == 422
    assert renamed.json()["details"]["name"] == [NAME_TAKEN]
    own = api_client.patch(f"{AGENTS_URL}{new_agent.agent.pk}/", {"name": "Alpha"}, format="json")
    assert own.status_code == 200 and own.json()["name"] == "Alpha"
    assert sorted(Agent.objects.values_list("name", flat=True)) == ["Alpha", "beta"]


@pytest.mark.django_db
def test_the_database_refuses_a_case_duplicate_among_live_agents(org, new_agent, make_agent):
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(organization=org, name="ALPHA", signing_secret_encrypted="x")
    deleted = make_agent(org, name="gone").agent
    Agent.objects.filter(pk=deleted.pk).update(status=Agent.Status.DELETED)
    Agent.objects.create(organization=org, name="GONE", signing_secret_encrypted="x")  # a deleted agent frees it


@pytest.mark.django_db
def test_create_agent_command_refuses_a_case_duplicate(org, new_agent):
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_agent", "Alpha", "--org", org.slug)


@pytest.fixture
def back_to_the_latest_migrations():
    """This test leaves the schema at agents 0003: the later migrations (of every app that depends on it) are
    applied again, or the tests after it would meet a schema without their columns."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_the_latest_migrations")
def test_the_migration_renames_case_duplicates_and_audits_each_rename():
    before, after = ("agents", "0002_agent_name_rule_message"), ("agents", "0003_agent_name_unique_ignoring_case")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    old_apps = executor.loader.project_state([before]).apps
    Organization = old_apps.get_model("agents", "Organization")
    OldAgent = old_apps.get_model("agents", "Agent")
    acme = Organization.objects.create(name="Acme", slug="acme-migration")
    globex = Organization.objects.create(name="Globex", slug="globex-migration")
    now = timezone.now()

    def agent(organization, name, minutes_ago, status="active"):
        pk = OldAgent.objects.create(
            organization=organization, name=name, status=status, signing_secret_encrypted="x"
        ).pk
        # created_at is auto_now_add: set the age afterwards (the oldest of a group keeps its name).
        OldAgent.objects.filter(pk=pk).update(created_at=now - timedelta(minutes=minutes_ago))
        return pk

    oldest = agent(acme, "Alpha", 30)
    newer = agent(acme, "alpha", 20)
    newest = agent(acme, "ALPHA", 10)
    taken = agent(acme, "alpha (2)x", 5)  # not a clash with "alpha (2)"
    long_first = agent(acme, "b" * 120, 4)
    long_second = agent(acme, "B" * 120, 3)
    elsewhere = agent(globex, "alpha", 1)  # another organization: no clash
    deleted = agent(acme, "aLpHa", 2, status="deleted")  # deleted agents do not count

    executor = MigrationExecutor(connection)
    executor.migrate([after])
    names = dict(Agent.objects.values_list("pk", "name"))
    assert names[oldest] == "Alpha"
    assert names[newer] == "alpha (2)" and names[newest] == "ALPHA (3)"
    assert names[taken] == "alpha (2)x" and names[elsewhere] == "alpha" and names[deleted] == "aLpHa"
    assert names[long_first] == "b" * 120
    assert names[long_second] == "B" * 116 + " (2)" and len(names[long_second]) == 120

    from audit.models import AuditLog

    renames = {row.resource_id: row.details for row in AuditLog.objects.filter(action="agent.updated")}
    assert set(renames) == {str(newer), str(newest), str(long_second)}
    assert renames[str(newer)]["previous_name"] == "alpha" and renames[str(newer)]["name"] == "alpha (2)"
    assert AuditLog.objects.get(resource_id=str(newest)).actor_kind == "system"

    # Now the database itself refuses a case duplicate.
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(organization_id=acme.pk, name="alpha (3)", signing_secret_encrypted="x")
