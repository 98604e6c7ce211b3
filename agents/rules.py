"""The rules an agent's fields follow, in one place: the API's serializers, the dashboard's forms and
``manage.py`` all validate through these, with the same messages. They raise Django's
``ValidationError``, which both DRF serializers and Django forms report against the field."""

from django.core.exceptions import ValidationError
from django.db.models import Value
from django.db.models.functions import Lower

from agents.models import NAME_TAKEN, Agent
from brikk.lib.values import Problem, find_unacceptable

METADATA_NOT_OBJECT = 'Metadata must be a JSON object, like {"team": "billing"}.'

# The longest grace period a rotated-out key may keep working (API and dashboard).
MAX_ROTATION_GRACE_SECONDS = 30 * 86400


def check_name_free(organization_id, name: str, *, agent: Agent | None = None) -> str:
    """``name`` unless a live agent of the organization (other than ``agent``) already has it, ignoring
    case ("Billing-Bot" and "billing-bot" are the same name). It compares ``Lower(name)`` as the
    database's ``agent_name_unique_in_org`` constraint does, which is the backstop under concurrency."""
    clash = (
        Agent.objects.live()
        .alias(lower_name=Lower("name"))
        .filter(organization_id=organization_id, lower_name=Lower(Value(name)))
    )
    if agent is not None:
        clash = clash.exclude(pk=agent.pk)
    if clash.exists():
        raise ValidationError(NAME_TAKEN, code="name_taken")
    return name


def check_metadata(value) -> dict:
    """A JSON object, not a list or a scalar, holding nothing the database cannot store (no NUL, lone
    surrogate or non-finite number, nesting within BRIKK_MAX_JSON_DEPTH: brikk.lib.values). The API's
    parser already refuses such bodies; forms and commands get here with whatever they parsed."""
    if not isinstance(value, dict):
        raise ValidationError(METADATA_NOT_OBJECT, code="metadata_not_object")
    problem = find_unacceptable(value)
    if problem is not None:
        raise ValidationError(unstorable_message(problem), code=problem.reason)
    return value


def unstorable_message(problem: Problem) -> str:
    return f"Metadata cannot be stored: {problem.message}."
