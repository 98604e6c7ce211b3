"""Maintainers' manage.py commands."""

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from agents import keys
from agents.models import Agent, Membership, Organization
from audit.models import AuditLog

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def printed_key(output):
    return re.search(r"API key:\s+(brk_\S+)", output).group(1)


def test_create_organization_user_and_agent():
    assert "Created organization" in run("create_organization", "Globex", "--slug", "globex")
    output = run("create_user", "hank", "--org", "globex", "--role", "admin")
    password = re.search(r"Password: (\S+)", output).group(1)
    user = get_user_model().objects.get(username="hank")
    assert user.check_password(password)
    assert Membership.objects.get(user=user).role == "admin"

    output = run("create_agent", "scout", "--org", "globex", "--owner", "hank")
    key = printed_key(output)
    secret = re.search(r"Signing secret:\s+(bss_\S+)", output).group(1)
    agent = Agent.objects.get(name="scout")
    assert keys.verify(key).agent_id == str(agent.pk)
    assert secret not in agent.signing_secret_encrypted
    assert AuditLog.objects.get(action="agent.created").actor_kind == "system"


def test_rotate_and_revoke_commands():
    run("create_organization", "Initech", "--slug", "initech")
    old = printed_key(run("create_agent", "stapler", "--org", "initech"))
    new = printed_key(run("rotate_key", "stapler", "--grace-seconds", "0"))
    assert keys.verify(new)
    with pytest.raises(keys.KeyRejected):
        keys.verify(old)
    assert "Revoked 1 key of stapler" in run("revoke_key", "stapler", "--org", "initech")
    with pytest.raises(keys.KeyRejected) as rejected:
        keys.verify(new)
    assert rejected.value.reason == "revoked"


def test_commands_refuse_unknown_names():
    with pytest.raises(CommandError, match="No organization"):
        run("create_agent", "x", "--org", "nope")
    with pytest.raises(CommandError, match="No live agent"):
        run("rotate_key", "ghost")


def test_seed_demo_prints_login_and_is_rerunnable():
    output = run("seed_demo", "--password", "demo-pass-123")
    assert "username: demo" in output and "password: demo-pass-123" in output
    assert len(re.findall(r"API key:\s+brk_", output)) == 2
    organization = Organization.objects.get(slug="demo")
    assert organization.agents.count() == 2
    user = get_user_model().objects.get(username="demo")
    assert user.is_staff and user.check_password("demo-pass-123")
    assert Membership.objects.get(user=user, organization=organization).role == "owner"

    # Run again (make run does, each time): the password, and so every browser's session, is kept.
    again = run("seed_demo")
    assert organization.agents.count() == 2
    assert "password: unchanged" in again and "demo-pass-123" not in again
    user.refresh_from_db()
    assert user.check_password("demo-pass-123")

    # Asked for: a new one.
    reset = run("seed_demo", "--reset-password")
    new_password = re.search(r"password: (\S+)", reset).group(1)
    user.refresh_from_db()
    assert new_password != "demo-pass-123" and user.check_password(new_password)


def test_seed_demo_keeps_existing_sessions_valid(client):
    run("seed_demo", "--password", "demo-pass-123")
    assert client.login(username="demo", password="demo-pass-123")
    assert client.get("/api/v1/agents/").status_code == 200
    run("seed_demo")
    assert client.get("/api/v1/agents/").status_code == 200  # still logged in
    run("seed_demo", "--reset-password")
    assert client.get("/api/v1/agents/").status_code in (401, 403)  # a new password ends the sessions
