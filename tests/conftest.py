import os

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from agents import failures, keys, services
from agents.models import Membership
from brikk.lib import outage
from coordination import wakeup

pytest_plugins = ["tests.factories"]


def pytest_collection_modifyitems(config, items):
    """Tests marked `pg_redis` need the real PostgreSQL and Redis; without them they cannot mean anything."""
    have_services = os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")
    if have_services:
        return
    skip = pytest.mark.skip(reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL: run `make test-services`")
    for item in items:
        if "pg_redis" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def inbox_listener_stopped(django_db_setup):
    """The inbox's LISTEN connection (coordination/wakeup.py) closes before the test database is dropped."""
    yield
    wakeup.listener.stop()


@pytest.fixture(autouse=True)
def push_not_in_process(settings):
    """No test starts the in-process push dispatcher (coordination/push.py) unless it turns it on itself."""
    settings.BRIKK_PUSH_IN_PROCESS = False
    yield
    from coordination import push

    push.in_process.stop()


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    """Users' passwords with a test-friendly hasher (API keys use the production work factor, already cheap)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def clean_cache():
    """Each test starts with an empty cache (Redis too), no failed-key counts, no verified-key memo and no
    pause of Redis after an earlier test's outage."""
    outage.redis.reset()
    cache.clear()
    failures.local_counters.clear()
    keys.verified_keys.clear()
    yield
    outage.redis.reset()
    cache.clear()
    failures.local_counters.clear()
    keys.verified_keys.clear()


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def org(make_org):
    return make_org("Acme")


@pytest.fixture
def owner(org, make_user):
    return make_user("owner", org, Membership.Role.OWNER)


@pytest.fixture
def member(org, make_user):
    return make_user("member", org, Membership.Role.MEMBER)


@pytest.fixture
def new_agent(org, owner):
    """An agent with its plaintext key and signing secret (a services.NewAgent)."""
    return services.create_agent(org, name="alpha", owner=owner)
