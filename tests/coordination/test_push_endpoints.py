"""Push endpoint management (coordination/push_endpoints.py): the URL rule against server-side request forgery,
secrets shown once and rotated with a grace period, one enabled endpoint per agent, resend and recover."""

import socket
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from agents import crypto
from audit.models import AuditLog
from coordination import push_endpoints
from coordination.exceptions import Conflict
from coordination.models import DeliveryAttempt, MessageLog, PushEndpoint
from tests.support.inbox import queue_messages

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://8.8.8.8/brikk/hook"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.BRIKK_WEBHOOK_ALLOW_HTTP = False
    settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = []
    settings.BRIKK_WEBHOOK_SECRET_GRACE_HOURS = 24


@pytest.fixture
def agent(new_agent):
    return new_agent.agent


@pytest.fixture
def sender(org, make_agent, owner):
    return make_agent(org, name="sender", owner=owner).agent


def audit_rows(action):
    return list(AuditLog.objects.filter(action=action).order_by("id"))


# --- URLs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
        ("https://127.1/hook", "127.1 resolves to 127.0.0.1, which is a loopback address"),
        ("https://2130706433/hook", "2130706433 resolves to 127.0.0.1, which is a loopback address"),
        ("https://0x7f000001/hook", "resolves to 127.0.0.1, which is a loopback address"),
        ("https://[::1]/hook", "::1 is a loopback address"),
        ("https://[::ffff:127.0.0.1]/hook", "an IPv4-mapped IPv6 address (of 127.0.0.1, a loopback address)"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("https://10.1.2.3/hook", "10.1.2.3 is a private address"),
        ("https://192.168.0.10:8443/hook", "192.168.0.10 is a private address"),
        ("https://0.0.0.0/hook", "0.0.0.0 is the unspecified address"),
        ("https://[fd00::1]/hook", "fd00::1 is a private address"),
        ("https://[fe80::1]/hook", "fe80::1 is a link-local address"),
        ("https://224.0.0.1/hook", "224.0.0.1 is a multicast address"),
        ("https://100.64.0.1/hook", "100.64.0.1 is a shared (carrier-grade NAT) address"),
        ("https://240.0.0.1/hook", "240.0.0.1 is a reserved address"),
    ],
)
def test_inside_addresses_are_refused_naming_their_class(url, words):
    with pytest.raises(ValidationError) as refused:
        push_endpoints.check_url(url)
    (message,) = refused.value.messages
    assert words in message
    assert "BRIKK_WEBHOOK_ALLOWED_NETWORKS" in message
    assert refused.value.code == "url_refused"


def test_a_name_that_resolves_to_loopback_is_refused():
    with pytest.raises(ValidationError, match="localhost resolves to (127.0.0.1|::1), which is a loopback address"):
        push_endpoints.check_url("https://localhost:8443/hook")


def test_a_name_with_one_inside_address_among_public_ones_is_refused(monkeypatch):
    def getaddrinfo(host, port, *args, **kwargs):
        assert host == "hooks.example.com"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(ValidationError, match="hooks.example.com resolves to 10.0.0.7, which is a private address"):
        push_endpoints.check_url("https://hooks.example.com/hook")


def test_a_name_with_only_public_addresses_is_accepted(monkeypatch):
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))],
    )
    assert push_endpoints.check_url("https://hooks.example.com/hook?x=1") == "https://hooks.example.com/hook?x=1"


def test_a_name_that_does_not_resolve_is_refused(monkeypatch):
    def getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(ValidationError, match="nowhere.invalid does not resolve"):
        push_endpoints.check_url("https://nowhere.invalid/hook")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://8.8.8.8/hook", "must start with https://"),
        ("ftp://8.8.8.8/hook", "must start with https://"),
        ("https://user:secret@8.8.8.8/hook", "may not carry a user name or password"),
        ("https://user@8.8.8.8/hook", "may not carry a user name or password"),
        ("https:///hook", "has no host"),
        ("https://8.8.8.8/hook#part", "may not have a #fragment"),
        ("https://8.8.8.8:99999/hook", "not a valid URL"),
        ("https://8.8.8.8/a b", "spaces or control characters"),
        ("", "Enter the endpoint's URL"),
        ("https://8.8.8.8/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_malformed_urls_are_refused(url, words):
    with pytest.raises(ValidationError, match=words):
        push_endpoints.check_url(url)


def test_a_refusal_never_repeats_the_user_info():
    with pytest.raises(ValidationError) as refused:
        push_endpoints.check_url("https://user:hunter2@8.8.8.8/hook")
    assert "hunter2" not in " ".join(refused.value.messages)


def test_public_addresses_pass_and_http_only_where_allowed(settings):
    assert push_endpoints.check_url(PUBLIC_URL) == PUBLIC_URL
    assert push_endpoints.check_url("https://[2606:4700:4700::1111]/hook")
    settings.BRIKK_WEBHOOK_ALLOW_HTTP = True
    assert push_endpoints.check_url("http://8.8.8.8/hook") == "http://8.8.8.8/hook"


def test_allowed_networks_open_exactly_their_range(settings):
    settings.BRIKK_WEBHOOK_ALLOW_HTTP = True
    settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    assert push_endpoints.check_url("http://127.0.0.1:8080/hook")
    assert push_endpoints.check_url("http://2130706433:8080/hook")  # the same address, spelled otherwise
    with pytest.raises(ValidationError, match="127.0.0.2 is a loopback address"):
        push_endpoints.check_url("http://127.0.0.2:8080/hook")
    with pytest.raises(ValidationError, match="10.0.0.1 is a private address"):
        push_endpoints.check_url("http://10.0.0.1/hook")


# --- Lifecycle ---------------------------------------------------------------------------------------------


def test_create_returns_the_secret_once_and_stores_it_encrypted(agent, owner):
    issued = push_endpoints.create(agent, PUBLIC_URL + "?token=abc", "billing hook", actor_id=owner.pk)
    endpoint = PushEndpoint.objects.get()
    assert issued.secret.startswith("whsec_") and len(issued.secret) > 40
    assert issued.secret not in endpoint.secret_encrypted
    assert crypto.decrypt(endpoint.secret_encrypted) == issued.secret
    assert (endpoint.agent_id, endpoint.organization_id, endpoint.enabled) == (agent.pk, agent.organization_id, True)
    (row,) = audit_rows("push_endpoint.created")
    assert row.details == {"agent_id": str(agent.pk), "host": "8.8.8.8", "enabled": True}
    assert (row.actor_kind, row.actor_id, row.resource_id) == ("user", str(owner.pk), str(endpoint.pk))
    assert issued.secret not in str(row.details) and "token=abc" not in str(row.details)


def test_create_refuses_a_refused_url_and_writes_nothing(agent, owner):
    with pytest.raises(ValidationError, match="loopback"):
        push_endpoints.create(agent, "https://127.0.0.1/hook", actor_id=owner.pk)
    assert not PushEndpoint.objects.exists()
    assert not audit_rows("push_endpoint.created")


def test_an_agent_has_at_most_one_enabled_endpoint(agent, owner):
    first = push_endpoints.create(agent, PUBLIC_URL, actor_id=owner.pk).endpoint
    with pytest.raises(Conflict) as conflict:
        push_endpoints.create(agent, "https://1.1.1.1/hook", actor_id=owner.pk)
    assert conflict.value.status_code == 409
    second = push_endpoints.create(agent, "https://1.1.1.1/hook", actor_id=owner.pk, enabled=False).endpoint
    assert (second.enabled, second.disabled_reason) == (False, "manual")
    with pytest.raises(Conflict):
        push_endpoints.enable(second, actor_id=owner.pk)
    assert push_endpoints.disable_by_person(first, actor_id=owner.pk) is True
    assert push_endpoints.enable(second, actor_id=owner.pk) is True
    assert push_endpoints.enable(second, actor_id=owner.pk) is False  # already enabled: nothing happens
    assert list(PushEndpoint.objects.filter(enabled=True).values_list("pk", flat=True)) == [second.pk]
    assert len(audit_rows("push_endpoint.enabled")) == 1


def test_enabling_clears_the_disabled_reason_and_the_failure_count(agent, owner):
    endpoint = push_endpoints.create(agent, PUBLIC_URL, actor_id=owner.pk).endpoint
    endpoint.failing_since = timezone.now() - timedelta(days=6)
    endpoint.save()
    push_endpoints.disable(endpoint, PushEndpoint.DisabledReason.FAILING)
    endpoint.refresh_from_db()
    push_endpoints.enable(endpoint, actor_id=owner.pk)
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at, endpoint.failing_since) == (
        True,
        "",
        None,
        None,
    )
    (row,) = audit_rows("push_endpoint.enabled")
    assert row.details["previous_reason"] == "failing"


def test_disabling_by_a_person_returns_waiting_messages_to_the_inbox(agent, sender, owner):
    endpoint = push_endpoints.create(agent, PUBLIC_URL, actor_id=owner.pk).endpoint
    (message,) = queue_messages(sender, agent, 1)
    later = timezone.now() + timedelta(minutes=30)  # waiting for a push retry
    MessageLog.objects.filter(pk=message.pk).update(available_at=later)
    assert push_endpoints.disable_by_person(endpoint, actor_id=owner.pk) is True
    assert push_endpoints.disable_by_person(endpoint, actor_id=owner.pk) is False
    message.refresh_from_db()
    assert message.available_at < later - timedelta(minutes=29)
    (row,) = audit_rows("push_endpoint.disabled")
    assert (row.actor_kind, row.actor_id, row.details["reason"], row.details["returned_to_inbox"]) == (
        "user",
        str(owner.pk),
        "manual",
        1,
    )


def test_rotation_keeps_the_previous_secret_signing_for_the_grace_period(agent, owner, settings):
    issued = push_endpoints.create(agent, PUBLIC_URL, actor_id=owner.pk)
    now = timezone.now()
    rotated = push_endpoints.rotate_secret(issued.endpoint, actor_id=owner.pk, now=now)
    assert rotated.secret != issued.secret and rotated.secret.startswith("whsec_")
    endpoint = PushEndpoint.objects.get()
    assert endpoint.previous_secret_expires_at == now + timedelta(hours=24)
    assert push_endpoints.signing_secrets(endpoint, now=now + timedelta(hours=23)) == [rotated.secret, issued.secret]
    assert push_endpoints.signing_secrets(endpoint, now=now + timedelta(hours=25)) == [rotated.secret]
    (row,) = audit_rows("push_endpoint.secret_rotated")
    assert row.details["grace_hours"] == 24
    assert issued.secret not in str(row.details) and rotated.secret not in str(row.details)

    settings.BRIKK_WEBHOOK_SECRET_GRACE_HOURS = 0
    third = push_endpoints.rotate_secret(endpoint, actor_id=owner.pk, now=now)
    endpoint.refresh_from_db()
    assert push_endpoints.signing_secrets(endpoint, now=now) == [third.secret]
    assert endpoint.previous_secret_expires_at is None


def test_update_checks_a_new_url_and_audits_the_fields(agent, owner):
    endpoint = push_endpoints.create(agent, PUBLIC_URL, actor_id=owner.pk).endpoint
    with pytest.raises(ValidationError, match="private"):
        push_endpoints.update(endpoint, actor_id=owner.pk, url="https://10.0.0.1/hook")
    endpoint.refresh_from_db()
    assert endpoint.url == PUBLIC_URL
    push_endpoints.update(endpoint, actor_id=owner.pk, url="https://1.1.1.1/new", description="moved")
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.description) == ("https://1.1.1.1/new", "moved")
    (row,) = audit_rows("push_endpoint.updated")
    assert row.details == {
        "agent_id": str(agent.pk),
        "host": "1.1.1.1",
        "fields": ["description", "url"],
        "previous_host": "8.8.8.8",
    }


def test_delete_keeps_the_attempts_and_returns_waiting_messages(agent, sender, owner):
    endpoint = push_endpoints.create(agent, PUBLIC_URL, actor_id=owner.pk).endpoint
    (message,) = queue_messages(sender, agent, 1)
    MessageLog.objects.filter(pk=message.pk).update(available_at=timezone.now() + timedelta(hours=1))
    attempt = DeliveryAttempt.objects.create(
        message=message, kind="push", started_at=timezone.now(), endpoint=endpoint, status_code=500, outcome="failed"
    )
    push_endpoints.delete(endpoint, actor_id=owner.pk)
    assert not PushEndpoint.objects.exists()
    attempt.refresh_from_db()
    assert (attempt.endpoint_id, attempt.status_code) == (None, 500)
    message.refresh_from_db()
    assert message.available_at <= timezone.now()
    (row,) = audit_rows("push_endpoint.deleted")
    assert (row.details["was_enabled"], row.details["returned_to_inbox"]) == (True, 1)


# --- Resend and recover ------------------------------------------------------------------------------------


def test_resend_sends_an_acked_a_dead_or_a_queued_message_again(agent, sender, owner):
    acked, dead, queued = queue_messages(sender, agent, 3, ttl=timedelta(seconds=5))
    past = timezone.now() - timedelta(hours=1)
    MessageLog.objects.filter(pk=acked.pk).update(delivery_state="acked", acked_at=past, delivery_count=1)
    MessageLog.objects.filter(pk=dead.pk).update(
        delivery_state="dead", dead_reason="push_exhausted", dead_at=past, delivery_count=8
    )
    MessageLog.objects.filter(pk=queued.pk).update(available_at=timezone.now() + timedelta(hours=2))
    before = timezone.now()
    assert [push_endpoints.resend(m, actor_id=owner.pk) for m in (acked, dead, queued)] == ["acked", "dead", "queued"]
    for message in (acked, dead, queued):
        message.refresh_from_db()
        assert message.delivery_state == "queued"
        assert message.delivery_count == 0
        assert (message.acked_at, message.dead_at, message.dead_reason) == (None, None, "")
        assert before <= message.available_at <= timezone.now()
        assert message.expires_at >= before + timedelta(milliseconds=30000)  # the envelope's default ttl, anew
    rows = {row.resource_id: row.details for row in audit_rows("message.resent")}
    assert {pk: details["previous_state"] for pk, details in rows.items()} == {
        str(acked.pk): "acked",
        str(dead.pk): "dead",
        str(queued.pk): "queued",
    }
    assert rows[str(dead.pk)]["previous_reason"] == "push_exhausted"


def test_resend_refuses_a_leased_message_and_one_that_never_entered_an_inbox(agent, sender, owner):
    leased, refused = queue_messages(sender, agent, 2)
    MessageLog.objects.filter(pk=leased.pk).update(
        delivery_state="leased", leased_until=timezone.now() + timedelta(seconds=30), receipt="t"
    )
    MessageLog.objects.filter(pk=refused.pk).update(delivery_state="", status="rejected")
    with pytest.raises(Conflict, match="leased to a consumer"):
        push_endpoints.resend(leased, actor_id=owner.pk)
    with pytest.raises(Conflict, match="never entered an inbox"):
        push_endpoints.resend(refused, actor_id=owner.pk)
    leased.refresh_from_db()
    assert leased.delivery_state == "leased"
    assert not audit_rows("message.resent")


def test_recover_requeues_only_this_agents_push_exhausted_dead_letters_since_then(
    org, agent, sender, owner, make_agent
):
    other = make_agent(org, name="other", owner=owner).agent
    endpoint = push_endpoints.create(agent, PUBLIC_URL, actor_id=owner.pk).endpoint
    now = timezone.now()
    since = now - timedelta(hours=2)
    recent_a, recent_b, old, expired = queue_messages(sender, agent, 4)
    (someone_else,) = queue_messages(sender, other, 1)
    for message, reason, at in (
        (recent_a, "push_exhausted", now - timedelta(hours=1)),
        (recent_b, "push_exhausted", since),
        (old, "push_exhausted", now - timedelta(hours=3)),
        (expired, "expired", now - timedelta(hours=1)),
        (someone_else, "push_exhausted", now - timedelta(hours=1)),
    ):
        MessageLog.objects.filter(pk=message.pk).update(
            delivery_state="dead", dead_reason=reason, dead_at=at, delivery_count=8
        )
    assert push_endpoints.recover(endpoint, since, actor_id=owner.pk, now=now) == 2
    states = dict(MessageLog.objects.values_list("pk", "delivery_state"))
    assert states[recent_a.pk] == states[recent_b.pk] == "queued"
    assert states[old.pk] == states[expired.pk] == states[someone_else.pk] == "dead"
    recovered = MessageLog.objects.get(pk=recent_a.pk)
    assert (recovered.delivery_count, recovered.available_at, recovered.dead_reason) == (0, now, "")
    (row,) = audit_rows("push_endpoint.recovered")
    assert row.details["recovered"] == 2
    assert row.details["since"] == since.isoformat()
