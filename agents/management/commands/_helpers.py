"""Shared lookups for the maintainers' commands."""

import uuid

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from agents.models import Agent, Organization


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def get_organization(value: str) -> Organization:
    organization = Organization.objects.filter(slug=value).first()
    if organization is None and _as_uuid(value):
        organization = Organization.objects.filter(pk=_as_uuid(value)).first()
    if organization is None:
        raise CommandError(f"No organization with slug or id {value!r}.")
    return organization


def get_agent(value: str, organization: Organization | None = None) -> Agent:
    agents = Agent.objects.live()
    if organization is not None:
        agents = agents.filter(organization=organization)
    if _as_uuid(value):
        agent = agents.filter(pk=_as_uuid(value)).first()
        if agent is not None:
            return agent
    matches = list(agents.filter(name=value)[:2]) or list(agents.filter(name__iexact=value)[:2])
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CommandError(f"Several agents are named {value!r}; pass --org or the agent id.")
    raise CommandError(f"No live agent with id or name {value!r}.")


def get_user(username: str):
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user named {username!r}.")
    return user
