"""Agents tab: list, live table, create (credentials once), edit, status, rotate, revoke, delete; permissions."""

import pytest
from django.urls import reverse

from agents import keys
from agents.models import Agent, APIKey
from audit.models import AuditLog
from tests.dashboard.conftest import htmx


@pytest.fixture
def agent(org, owner, make_agent):
    return make_agent(org, name="alpha", owner=owner, description="First agent").agent


def test_list_shows_agents_with_status_and_key_facts(owner_client, agent):
    body = owner_client.get(reverse("dashboard:agents")).content.decode()
    assert "<html" in body
    assert "alpha" in body and "First agent" in body
    assert "badge-success" in body  # the active status badge
    assert f"brk_{agent.api_keys.get().prefix}" in body
    assert "in 11\xa0months" in body  # default key lifetime: a year
    assert "New agent" in body


def test_list_is_an_htmx_partial_on_tab_switch(owner_client, agent):
    response = htmx(owner_client, reverse("dashboard:agents"))
    body = response.content.decode()
    assert "<html" not in body
    assert "<title>Agents · Brikk</title>" in body
    assert 'hx-swap-oob="true"' in body and 'aria-current="page"' in body
    assert "alpha" in body
    assert "HX-Request" in response["Vary"]


def test_history_restore_gets_the_whole_page(owner_client, agent):
    response = htmx(owner_client, reverse("dashboard:agents"), HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in response.content.decode()


def test_live_table_polls_only_while_visible(owner_client, agent):
    response = htmx(owner_client, reverse("dashboard:agent-table"))
    body = response.content.decode()
    assert "<html" not in body and "<title>" not in body
    assert 'id="agent-table"' in body and "alpha" in body
    # static/js/dashboard.js fires brikk-poll every 5 s while the tab is visible (no eval'd trigger filter: CSP).
    assert 'hx-trigger="brikk-poll" data-poll-seconds="5"' in body
    assert "no-store" in response["Cache-Control"]


def test_live_table_reflects_a_status_change(owner_client, agent):
    agent.status = Agent.Status.MAINTENANCE
    agent.save()
    body = htmx(owner_client, reverse("dashboard:agent-table")).content.decode()
    assert "badge-warning" in body and "Maintenance" in body


def test_empty_state_invites_writers_to_create(owner_client, member_client):
    assert "Create your first agent" in owner_client.get(reverse("dashboard:agents")).content.decode()
    body = member_client.get(reverse("dashboard:agents")).content.decode()
    assert "No agents yet" in body and "Create your first agent" not in body


def test_members_see_no_write_controls(member_client, agent):
    assert "New agent" not in member_client.get(reverse("dashboard:agents")).content.decode()
    body = member_client.get(reverse("dashboard:agent-detail", args=[agent.pk])).content.decode()
    for control in ("Rotate key", "Revoke keys", "Delete agent", "Change status", ">Edit<"):
        assert control not in body


def test_create_shows_key_and_secret_once(owner_client, org, owner):
    response = owner_client.post(
        reverse("dashboard:agent-create"),
        {"name": "beta", "description": "d", "status": "idle", "metadata": '{"team": "ops"}'},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert response["HX-Push-Url"] == "false"
    agent = Agent.objects.get(name="beta")
    assert agent.organization == org and agent.owner == owner and agent.status == "idle"
    assert agent.metadata == {"team": "ops"}
    body = response.content.decode()
    assert "shown only once" in body and "data-copy" in body and 'hx-history="false"' in body
    api_key = response.context["api_key"]
    assert f'value="{api_key}"' in body
    assert keys.verify(api_key).agent_id == str(agent.pk)
    assert response.context["signing_secret"] in body
    # Only a hash is kept, and the page cannot be fetched again.
    assert not APIKey.objects.filter(hashed_secret__contains=api_key.split(".")[-1]).exists()
    assert api_key not in owner_client.get(reverse("dashboard:agent-detail", args=[agent.pk])).content.decode()
    assert AuditLog.objects.filter(action="agent.created", resource_id=str(agent.pk), actor_id=str(owner.pk)).exists()


def test_create_form_keeps_input_on_error(owner_client, agent):
    response = owner_client.post(
        reverse("dashboard:agent-create"),
        {"name": "alpha", "description": "keep me", "status": "active", "metadata": "[1, 2"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "An agent with this name already exists" in body
    assert "Enter a valid JSON" in body
    assert "keep me" in body and 'value="alpha"' in body
    assert Agent.objects.filter(name="alpha").count() == 1


@pytest.mark.parametrize(
    ("metadata", "message"),
    [("[1]", "Metadata must be a JSON object"), ('"x"', "Metadata must be a JSON object")],
)
def test_create_rejects_non_object_metadata(owner_client, metadata, message):
    response = owner_client.post(
        reverse("dashboard:agent-create"), {"name": "x", "status": "active", "metadata": metadata}
    )
    assert message in response.content.decode()
    assert not Agent.objects.filter(name="x").exists()


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ('{"team": "a\\u0000b"}', "Metadata cannot be stored: NUL characters"),
        ('{"k\\u0000": 1}', "Metadata cannot be stored: NUL characters"),
        ('{"team": "\\ud800"}', "Metadata cannot be stored: Unpaired surrogates"),
        ('{"n": 1e999}', "Metadata cannot be stored: Numbers must be finite"),
        ('{"n": NaN}', "Enter a valid JSON"),
        ('{"n": ' + "[" * 100_000 + "]" * 100_000 + "}", "Metadata cannot be stored: Arrays and objects may nest"),
    ],
)
def test_create_rejects_metadata_the_database_cannot_store(owner_client, metadata, message):
    """The same rules as the API's parser (brikk/lib/values.py), through agents/rules.py: a form error,
    never a 500 (PostgreSQL's jsonb refuses NUL; Python's parser overflows its stack on deep nesting)."""
    response = owner_client.post(
        reverse("dashboard:agent-create"), {"name": "x", "status": "active", "metadata": metadata}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Agent.objects.filter(name="x").exists()


def test_create_rejects_a_past_key_expiry(owner_client):
    response = owner_client.post(
        reverse("dashboard:agent-create"), {"name": "x", "status": "active", "key_expires_at": "2001-01-01"}
    )
    assert "must be in the future" in response.content.decode()


def test_create_with_a_key_expiry(owner_client):
    owner_client.post(
        reverse("dashboard:agent-create"), {"name": "x", "status": "active", "key_expires_at": "2999-01-02"}
    )
    assert Agent.objects.get(name="x").api_keys.get().expires_at.year == 2999


def test_edit_changes_through_the_service_and_is_audited(owner_client, agent, owner):
    url = reverse("dashboard:agent-edit", args=[agent.pk])
    assert 'value="alpha"' in owner_client.get(url).content.decode()
    response = owner_client.post(url, {"name": "alpha-2", "description": "renamed", "metadata": "{}"})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard:agent-detail", args=[agent.pk])
    agent.refresh_from_db()
    assert (agent.name, agent.description) == ("alpha-2", "renamed")
    row = AuditLog.objects.get(action="agent.updated", resource_id=str(agent.pk))
    assert row.details["fields"] == ["description", "name"]
    assert "Saved alpha-2." in owner_client.get(response["Location"]).content.decode()


def test_edit_by_htmx_follows_to_the_detail_partial(owner_client, agent):
    url = reverse("dashboard:agent-edit", args=[agent.pk])
    response = owner_client.post(
        url, {"name": "alpha", "description": "x", "metadata": ""}, HTTP_HX_REQUEST="true", follow=True
    )
    body = response.content.decode()
    assert "<html" not in body and "Saved alpha." in body


def test_status_change(owner_client, agent):
    response = owner_client.post(reverse("dashboard:agent-status", args=[agent.pk]), {"status": "maintenance"})
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.status == "maintenance"
    assert AuditLog.objects.get(action="agent.updated").details["previous_status"] == "active"


def test_status_cannot_be_set_to_deleted(owner_client, agent):
    response = owner_client.post(reverse("dashboard:agent-status", args=[agent.pk]), {"status": "deleted"}, follow=True)
    agent.refresh_from_db()
    assert agent.status == "active"
    assert "Choose one of the listed statuses." in response.content.decode()


def test_rotate_asks_then_shows_the_new_key_once(owner_client, agent):
    old = agent.api_keys.get()
    url = reverse("dashboard:agent-rotate", args=[agent.pk])
    confirm = owner_client.get(url).content.decode()
    assert "Rotate the key of alpha?" in confirm
    assert agent.api_keys.count() == 1  # nothing happens on GET
    response = owner_client.post(url)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    new_key = response.context["api_key"]
    assert new_key in response.content.decode()
    assert keys.verify(new_key).agent_id == str(agent.pk)
    old.refresh_from_db()
    assert old.rotated_at is not None
    assert AuditLog.objects.filter(action="key.rotated", resource_id=str(agent.pk)).exists()


def test_revoke_asks_then_revokes_every_key(owner_client, agent):
    url = reverse("dashboard:agent-revoke", args=[agent.pk])
    assert "Revoke all keys of alpha?" in owner_client.get(url).content.decode()
    response = owner_client.post(url, follow=True)
    assert "Revoked 1 key of alpha; it stops working now." in response.content.decode()
    assert not agent.api_keys.filter(revoked_at__isnull=True).exists()


def test_delete_asks_then_soft_deletes(owner_client, agent):
    url = reverse("dashboard:agent-delete", args=[agent.pk])
    assert "Delete alpha?" in owner_client.get(url).content.decode()
    response = owner_client.post(url, follow=True)
    body = response.content.decode()
    assert "Deleted alpha" in body and 'data-agent="alpha"' not in body
    agent.refresh_from_db()
    assert agent.status == "deleted" and agent.deleted_at is not None
    assert owner_client.get(reverse("dashboard:agent-detail", args=[agent.pk])).status_code == 404


# --- Permission matrix ---------------------------------------------------------------------------

WRITE_VIEWS = [
    ("get", "dashboard:agent-create", False, None),
    ("post", "dashboard:agent-create", False, {"name": "new", "status": "active"}),
    ("get", "dashboard:agent-edit", True, None),
    ("post", "dashboard:agent-edit", True, {"name": "renamed"}),
    ("post", "dashboard:agent-status", True, {"status": "idle"}),
    ("get", "dashboard:agent-rotate", True, None),
    ("post", "dashboard:agent-rotate", True, {}),
    ("get", "dashboard:agent-revoke", True, None),
    ("post", "dashboard:agent-revoke", True, {}),
    ("get", "dashboard:agent-key-revoke", "key", None),
    ("post", "dashboard:agent-key-revoke", "key", {}),
    ("post", "dashboard:agent-rotate", True, {"grace_seconds": "0"}),
    ("get", "dashboard:agent-delete", True, None),
    ("post", "dashboard:agent-delete", True, {}),
]


def _call(client, method, name, needs_agent, data, agent):
    if needs_agent == "key":  # one of the agent's keys, by its prefix
        url = reverse(name, args=[agent.pk, agent.api_keys.get().prefix])
    else:
        url = reverse(name, args=[agent.pk]) if needs_agent else reverse(name)
    return getattr(client, method)(url, data) if method == "post" else client.get(url)


def _agent_state(agent):
    agent.refresh_from_db()
    return (agent.name, agent.status, sorted((k.prefix, k.revoked_at, k.rotated_at) for k in agent.api_keys.all()))


@pytest.mark.parametrize(("method", "name", "needs_agent", "data"), WRITE_VIEWS)
def test_members_are_refused_every_write_and_nothing_changes(member_client, agent, method, name, needs_agent, data):
    before = _agent_state(agent)
    response = _call(member_client, method, name, needs_agent, data, agent)
    assert response.status_code == 403
    assert "read-only" in response.content.decode()
    assert _agent_state(agent) == before
    assert Agent.objects.count() == 1


@pytest.mark.parametrize("role", ["owner", "org_admin"])
@pytest.mark.parametrize(("method", "name", "needs_agent", "data"), WRITE_VIEWS)
def test_owners_and_admins_may_write(request, login, role, agent, method, name, needs_agent, data):
    user = request.getfixturevalue(role)
    client = login(user)  # logging in is itself audited, so count after it
    audited_before = AuditLog.objects.filter(actor_id=str(user.pk)).count()
    response = _call(client, method, name, needs_agent, data, agent)
    assert response.status_code in (200, 302)
    changed = AuditLog.objects.filter(actor_id=str(user.pk)).count() - audited_before
    # Every POST changes something through agents.services, which audits it as this user; GETs change nothing.
    assert changed == (1 if method == "post" else 0)


@pytest.mark.parametrize("role_client", ["owner_client", "org_admin_client", "member_client"])
@pytest.mark.parametrize(
    ("method", "name", "needs", "data"),
    [("get", "dashboard:agent-detail", True, None)] + [w for w in WRITE_VIEWS if w[2]],
)
def test_another_organizations_agent_is_not_found(request, role_client, other_agent, method, name, needs, data):
    client = request.getfixturevalue(role_client)
    before = _agent_state(other_agent)
    response = _call(client, method, name, needs, data, other_agent)
    # Members are refused writes before the lookup (403); nobody learns the agent exists.
    assert response.status_code == (403 if role_client == "member_client" and name != "dashboard:agent-detail" else 404)
    assert _agent_state(other_agent) == before


def test_member_may_read_an_agent(member_client, agent):
    response = member_client.get(reverse("dashboard:agent-detail", args=[agent.pk]))
    assert response.status_code == 200
    assert "alpha" in response.content.decode()


# --- Issue 9: rotation with a grace period, one key revoked, names, metadata, wording -----------------


def _grace_left(key):
    key.refresh_from_db()
    return (key.expires_at - key.rotated_at).total_seconds()


def test_rotation_offers_a_grace_period_defaulting_to_the_configured_one(owner_client, agent, settings):
    settings.BRIKK_API_KEY_ROTATION_GRACE_SECONDS = 3600
    body = owner_client.get(reverse("dashboard:agent-rotate", args=[agent.pk])).content.decode()
    assert 'name="grace_seconds"' in body
    assert '<option value="3600" selected>1 hour (default)</option>' in body
    assert '<option value="0">None: the current key stops working now</option>' in body
    assert '<option value="604800">7 days</option>' in body
    assert "3600 seconds" not in body


@pytest.mark.parametrize(
    ("grace", "sentence"), [("300", "keeps working for 5 minutes"), ("86400", "keeps working for 1 day")]
)
def test_rotation_uses_the_chosen_grace_period(owner_client, agent, grace, sentence):
    old = agent.api_keys.get()
    response = owner_client.post(reverse("dashboard:agent-rotate", args=[agent.pk]), {"grace_seconds": grace})
    assert response.status_code == 200
    assert _grace_left(old) == int(grace)
    assert old.revoked_at is None
    body = response.content.decode()
    assert f"The previous key {sentence}" in body and "then expires." in body
    assert "Copy this key now: it is shown only once." in body and "they are shown" not in body
    row = AuditLog.objects.get(action="key.rotated", resource_id=str(agent.pk))
    assert row.details["grace_seconds"] == int(grace)


def test_rotation_without_grace_stops_the_old_key_now(owner_client, agent):
    old = agent.api_keys.get()
    response = owner_client.post(reverse("dashboard:agent-rotate", args=[agent.pk]), {"grace_seconds": "0"})
    old.refresh_from_db()
    assert old.revoked_at is not None
    assert "The previous key has stopped working." in response.content.decode()


def test_rotation_refuses_a_grace_period_not_offered(owner_client, agent):
    response = owner_client.post(reverse("dashboard:agent-rotate", args=[agent.pk]), {"grace_seconds": "99999999"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert agent.api_keys.count() == 1  # nothing rotated


def test_each_live_key_can_be_revoked_on_its_own(owner_client, agent):
    first = agent.api_keys.get()
    rotated = owner_client.post(reverse("dashboard:agent-rotate", args=[agent.pk]), {"grace_seconds": "3600"})
    second = agent.api_keys.exclude(pk=first.pk).get()
    detail = owner_client.get(reverse("dashboard:agent-detail", args=[agent.pk])).content.decode()
    for key in (first, second):
        assert reverse("dashboard:agent-key-revoke", args=[agent.pk, key.prefix]) in detail
    url = reverse("dashboard:agent-key-revoke", args=[agent.pk, first.prefix])
    confirm = owner_client.get(url).content.decode()
    assert f"Revoke key brk_{first.prefix}… of alpha?" in confirm
    assert "other keys keep working" in confirm
    response = owner_client.post(url, follow=True)
    assert "Revoked 1 key of alpha; it stops working now." in response.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.revoked_at is not None and second.revoked_at is None
    assert keys.verify(rotated.context["api_key"]).agent_id == str(agent.pk)  # the other key still works
    row = AuditLog.objects.get(action="key.revoked", resource_id=str(agent.pk))
    assert row.details["key_prefixes"] == [first.prefix]
    # A revoked key has no revoke control any more, and revoking it again is a 404.
    detail = owner_client.get(reverse("dashboard:agent-detail", args=[agent.pk])).content.decode()
    assert url not in detail
    assert owner_client.post(url).status_code == 404


def test_revoking_all_keys_counts_them(owner_client, agent):
    owner_client.post(reverse("dashboard:agent-rotate", args=[agent.pk]), {"grace_seconds": "3600"})
    response = owner_client.post(reverse("dashboard:agent-revoke", args=[agent.pk]), follow=True)
    assert "Revoked 2 keys of alpha; they stop working now." in response.content.decode()


def test_a_key_of_another_agent_is_not_found(owner_client, agent, org, make_agent):
    other = make_agent(org, name="other").agent
    prefix = other.api_keys.get().prefix
    assert owner_client.get(reverse("dashboard:agent-key-revoke", args=[agent.pk, prefix])).status_code == 404
    assert owner_client.post(reverse("dashboard:agent-key-revoke", args=[agent.pk, prefix])).status_code == 404
    assert other.api_keys.get().revoked_at is None


@pytest.mark.parametrize("name", ["ALPHA", "Alpha", " alpha "])
def test_create_refuses_a_name_differing_only_in_case(owner_client, agent, name):
    response = owner_client.post(reverse("dashboard:agent-create"), {"name": name, "status": "active"})
    assert "An agent with this name already exists" in response.content.decode()
    assert Agent.objects.count() == 1


def test_a_rename_to_another_agents_name_in_other_case_is_refused(owner_client, agent, org):
    beta = owner_client.post(reverse("dashboard:agent-create"), {"name": "beta", "status": "active"})
    assert beta.status_code == 200
    beta = Agent.objects.get(name="beta")
    refused = owner_client.post(reverse("dashboard:agent-edit", args=[beta.pk]), {"name": "ALPHA"})
    assert "An agent with this name already exists" in refused.content.decode()
    own = owner_client.post(reverse("dashboard:agent-edit", args=[agent.pk]), {"name": "Alpha", "description": ""})
    assert own.status_code == 302
    agent.refresh_from_db()
    assert agent.name == "Alpha"


def test_new_agent_form_starts_with_empty_metadata_not_null(owner_client):
    body = owner_client.get(reverse("dashboard:agent-create")).content.decode()
    textarea = body.split('name="metadata"')[1].split("</textarea>")[0]
    assert "null" not in textarea
    assert textarea.rstrip().endswith(">")  # empty, with a placeholder example
    assert 'placeholder="{&quot;team&quot;: &quot;billing&quot;}"' in body


def test_edit_form_shows_metadata_as_indented_json_and_an_unchanged_box_is_no_change(owner_client, agent):
    agent.metadata = {"team": "ops", "tags": ["a", "b"], "enabled": True, "note": None}
    agent.save()
    body = owner_client.get(reverse("dashboard:agent-edit", args=[agent.pk])).content.decode()
    assert "&quot;enabled&quot;: true" in body and "&quot;note&quot;: null" in body
    assert "True" not in body and "None" not in body and "&#x27;team&#x27;" not in body
    shown = body.split('name="metadata"')[1].split(">", 1)[1].split("</textarea>")[0]
    response = owner_client.post(
        reverse("dashboard:agent-edit", args=[agent.pk]),
        {"name": "alpha", "description": "First agent", "metadata": shown.replace("&quot;", '"')},
    )
    assert response.status_code == 302
    assert not AuditLog.objects.filter(action="agent.updated").exists()  # nothing changed, nothing audited


def test_agent_detail_shows_metadata_as_json_not_python(owner_client, agent):
    agent.metadata = {"enabled": True, "note": None, "name": "ünïcode"}
    agent.save()
    body = owner_client.get(reverse("dashboard:agent-detail", args=[agent.pk])).content.decode()
    shown = body.split('data-testid="metadata">')[1].split("</pre>")[0]
    expected = '{\n  "enabled": true,\n  "name": "ünïcode",\n  "note": null\n}'
    assert shown == expected.replace('"', "&quot;")


@pytest.mark.parametrize(
    ("status", "sentence"),
    [("maintenance", "alpha is now in maintenance."), ("idle", "alpha is now idle.")],
)
def test_status_change_is_said_in_words(owner_client, agent, status, sentence):
    response = owner_client.post(reverse("dashboard:agent-status", args=[agent.pk]), {"status": status}, follow=True)
    assert sentence in response.content.decode()


def test_the_agents_page_has_no_broken_possessive(owner_client, org, agent):
    org.name = "Acme Robotics"
    org.save()
    body = owner_client.get(reverse("dashboard:agents")).content.decode()
    assert "Robotics&#x27;s" not in body and "Robotics's" not in body
    assert "The agents of Acme Robotics" in body


def test_a_new_agents_credentials_page_speaks_of_both_secrets(owner_client):
    body = owner_client.post(reverse("dashboard:agent-create"), {"name": "x", "status": "active"}).content.decode()
    assert "Copy these now: they are shown only once." in body
    assert "I have stored them — continue" in body


def test_times_are_relative_with_just_now_and_absolute_in_utc(owner_client, agent):
    body = owner_client.get(reverse("dashboard:agents")).content.decode()
    assert "0\xa0minutes" not in body and "0 minutes" not in body
    assert ">just now</time>" in body  # the key was issued a moment ago
    detail = owner_client.get(reverse("dashboard:agent-detail", args=[agent.pk])).content.decode()
    created = agent.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f">{created}</time>" in detail  # absolute times name the zone
