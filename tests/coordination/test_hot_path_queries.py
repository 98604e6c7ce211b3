"""The echo's lean lookups (QuerySet.raw) answer exactly what the equivalent filter() would."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Agent
from coordination.models import IdempotencyRecord

pytestmark = pytest.mark.django_db


def _with_status(new_agent, status):
    agent = new_agent.agent
    agent.status = status
    agent.save()
    return agent


def test_authenticating_ids_are_active_or_idle_agents_of_the_organization(org, make_org, make_agent):
    active = make_agent(org, name="active").agent
    idle = _with_status(make_agent(org, name="idle"), Agent.Status.IDLE)
    maintenance = _with_status(make_agent(org, name="maintenance"), Agent.Status.MAINTENANCE)
    deleted = _with_status(make_agent(org, name="deleted"), Agent.Status.DELETED)
    foreign = make_agent(make_org("Elsewhere"), name="foreign").agent
    unknown = uuid.uuid4()
    asked = [a.pk for a in (active, idle, maintenance, deleted, foreign)] + [unknown]

    found = Agent.objects.authenticating_ids(org.pk, asked)

    assert found == {active.pk, idle.pk}
    assert found == set(
        Agent.objects.filter(organization=org, pk__in=asked, status__in=Agent.AUTHENTICATING_STATUSES).values_list(
            "pk", flat=True
        )
    )
    assert Agent.objects.authenticating_ids(str(org.pk), [str(active.pk)]) == {active.pk}  # strings work too
    assert Agent.objects.authenticating_ids(org.pk, []) == set()
    # The batch send's view of the same: every agent of the organization asked for, with its status, as UUIDs.
    assert Agent.objects.statuses(org.pk, asked) == {
        active.pk: "active",
        idle.pk: "idle",
        maintenance.pk: "maintenance",
        deleted.pk: "deleted",
    }
    assert all(type(pk) is uuid.UUID for pk in Agent.objects.statuses(str(org.pk), [str(active.pk)]))


def test_for_key_loads_the_whole_record_or_none(org):
    record = IdempotencyRecord.objects.create(
        organization=org,
        scope="agent:x",
        key="k-1",
        request_hash="a" * 64,
        response_status=200,
        response_body={"id": "m", "nested": {"n": [1, 2]}},
        expires_at=timezone.now() + timedelta(hours=1),
    )
    IdempotencyRecord.objects.create(
        organization=org, scope="agent:y", key="k-1", request_hash="b" * 64, expires_at=timezone.now()
    )

    found = IdempotencyRecord.objects.for_key("agent:x", "k-1")

    expected = IdempotencyRecord.objects.get(pk=record.pk)
    assert found.pk == record.pk
    names = [field.attname for field in IdempotencyRecord._meta.concrete_fields]
    assert {name: getattr(found, name) for name in names} == {name: getattr(expected, name) for name in names}
    assert found.get_deferred_fields() == set()  # nothing is fetched again later
    assert IdempotencyRecord.objects.for_key("agent:x", "k-2") is None
    assert IdempotencyRecord.objects.for_key("agent:z", "k-1") is None


@pytest.mark.pg_redis
def test_for_keys_looks_each_key_up_on_the_unique_index_even_without_statistics(org):
    """A sender with thousands of records and no statistics yet (autovacuum has not analyzed the table): the
    batch's lookup of 100 keys must still go to the index per key, never read all of the sender's records."""
    from django.db import connection

    later = timezone.now() + timedelta(hours=1)
    IdempotencyRecord.objects.bulk_create(
        IdempotencyRecord(organization=org, scope="agent:busy", key=f"k-{n}", request_hash="a" * 64, expires_at=later)
        for n in range(5000)
    )
    keys = [f"k-{n}" for n in range(0, 10000, 100)]  # half of them stored
    queryset = IdempotencyRecord.objects.for_keys("agent:busy", keys)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + queryset.query.sql, queryset.params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Index Scan using idempotency_scope_key_unique" in plan and "Hash" not in plan and "Bitmap" not in plan
    assert sorted(record.key for record in queryset) == sorted(keys[:50])


def test_a_sender_disabled_behind_the_application_cannot_send(api_client, org, owner, new_agent):
    """A status change made without the services (no signal, no cache to drop) is seen at once: the key's
    agent is read with the key on every request."""
    from agents import services as agent_services
    from tests.support.coordination import envelope, post_echo

    peer = agent_services.create_agent(org, name="peer", owner=owner).agent
    key, secret = new_agent.key.plaintext, new_agent.signing_secret
    assert post_echo(api_client, envelope(new_agent.agent, peer), key=key, secret=secret).status_code == 200
    # .update() sends no signal.
    Agent.objects.filter(pk=new_agent.agent.pk).update(status=Agent.Status.MAINTENANCE)

    response = post_echo(api_client, envelope(new_agent.agent, peer), key=key, secret=secret)

    assert response.status_code == 401, response.content
    assert response.json()["message"] == "The agent is not active."
