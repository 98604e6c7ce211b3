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


@pytest.fixture
def make_message(db):
    """A MessageLog row as the coordination API writes it (status, bodies, timing)."""
    import uuid

    from django.utils import timezone

    from coordination.models import MessageLog

    def make(organization, sender=None, recipient=None, status="delivered", type="message", **fields):
        now = timezone.now()
        defaults = {
            "message_id": uuid.uuid4(),
            "http_status": 200 if status == "delivered" else 422,
            "request_body": {"payload": {"hello": "world"}},
            "response_body": {"status": status},
            "latency_ms": 3.2,
            "received_at": now,
            "responded_at": now,
            "auth_method": "api_key",
        }
        defaults.update(fields)
        return MessageLog.objects.create(
            organization=organization, sender=sender, recipient=recipient, status=status, type=type, **defaults
        )

    return make
