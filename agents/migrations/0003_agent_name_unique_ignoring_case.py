"""Agent names become unique per organization ignoring case (``agent_name_unique_in_org`` on
``(organization, Lower(name))`` for live agents).

Existing data may hold live agents whose names differ only in case ("Alpha" and "alpha"), which the
new constraint refuses. Before adding it, this migration keeps the oldest agent of each such group
as it is and renames the others to "<name> (2)", "<name> (3)", ... (shortened to fit 120 characters),
writes an ``agent.updated`` audit row for each rename (actor ``system``/``migration``, with the
previous name) and prints what it renamed. Agents authenticate by key and are addressed by id, so a
rename breaks no caller. Reversing the migration restores the case-sensitive constraint and keeps
the new names.
"""

from django.db import migrations, models
from django.db.models import Count
from django.db.models.functions import Lower
from django.utils import timezone

MAX_NAME = 120
MIGRATION = "agents.0003_agent_name_unique_ignoring_case"


def _free_name(agents, organization_id, name: str) -> str:
    """``name (n)`` for the smallest n >= 2 that no live agent of the organization has, ignoring case."""
    live = agents.exclude(status="deleted").filter(organization_id=organization_id).alias(lower_name=Lower("name"))
    n = 2
    while True:
        suffix = f" ({n})"
        candidate = name[: MAX_NAME - len(suffix)] + suffix
        if not live.filter(lower_name=Lower(models.Value(candidate))).exists():
            return candidate
        n += 1


def rename_case_duplicates(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    AuditLog = apps.get_model("audit", "AuditLog")
    live = Agent.objects.exclude(status="deleted")
    groups = (
        live.annotate(lower_name=Lower("name"))
        .values("organization_id", "lower_name")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .order_by()
    )
    for group in list(groups):
        clashing = list(
            live.alias(lower_name=Lower("name"))
            .filter(organization_id=group["organization_id"], lower_name=group["lower_name"])
            .order_by("created_at", "id")
        )
        for agent in clashing[1:]:  # the oldest keeps its name
            previous = agent.name
            agent.name = _free_name(Agent.objects, agent.organization_id, previous)
            agent.save(update_fields=["name"])
            AuditLog.objects.create(
                created_at=timezone.now(),
                correlation_id="",
                actor_kind="system",
                actor_id="migration",
                organization_id=agent.organization_id,
                action="agent.updated",
                resource_kind="agent",
                resource_id=str(agent.pk),
                outcome="success",
                details={
                    "fields": ["name"],
                    "name": agent.name,
                    "previous_name": previous,
                    "reason": f"agent names are unique ignoring case ({MIGRATION})",
                },
            )
            print(
                f"  Renamed agent {agent.pk} from {previous!r} to {agent.name!r}: its name differed from another only in case."
            )


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0002_agent_name_rule_message"),
        ("audit", "0002_chain_anchor_and_guards"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="agent", name="agent_name_unique_in_org"),
        migrations.RunPython(rename_case_duplicates, migrations.RunPython.noop, elidable=False),
        migrations.AddConstraint(
            model_name="agent",
            constraint=models.UniqueConstraint(
                models.F("organization"),
                Lower("name"),
                condition=models.Q(("status", "deleted"), _negated=True),
                name="agent_name_unique_in_org",
                violation_error_message="An agent with this name already exists in this organization.",
            ),
        ),
    ]
