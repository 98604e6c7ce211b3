import pytest
from django.test import Client

from agents.models import Membership


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    """Templates use {% static %}; the manifest storage of production settings needs collectstatic."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def org_admin(org, make_user):
    return make_user("admin", org, Membership.Role.ADMIN)


@pytest.fixture
def other_org(make_org):
    return make_org("Globex")


@pytest.fixture
def other_agent(other_org, make_user, make_agent):
    stranger = make_user("stranger", other_org, Membership.Role.OWNER)
    return make_agent(other_org, name="globex-agent", owner=stranger).agent


@pytest.fixture
def login(db):
    """A test client logged in as the given user."""

    def make(user):
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def owner_client(login, owner):
    return login(owner)


@pytest.fixture
def member_client(login, member):
    return login(member)


@pytest.fixture
def org_admin_client(login, org_admin):
    return login(org_admin)


def htmx(client, url, **extra):
    return client.get(url, HTTP_HX_REQUEST="true", **extra)
