"""Fixtures that build organizations, users and agents through the real services."""

import itertools

import pytest
from django.contrib.auth import get_user_model

from agents import services
from agents.models import Membership

_counter = itertools.count()


@pytest.fixture
def make_org(db):
    def make(name=None):
        name = name or f"Org {next(_counter)}"
        return services.create_organization(name, slug=f"{name.lower().replace(' ', '-')}-{next(_counter)}")

    return make


@pytest.fixture
def make_user(db):
    def make(username, organization=None, role=Membership.Role.MEMBER, password="correct-horse-battery"):
        user = get_user_model().objects.create_user(username=username, password=password)
        if organization is not None:
            services.add_member(organization, user, role)
        return user

    return make


@pytest.fixture
def make_agent(db):
    def make(organization, name=None, owner=None, **kwargs):
        return services.create_agent(organization, name=name or f"agent-{next(_counter)}", owner=owner, **kwargs)

    return make
