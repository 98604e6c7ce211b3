"""Push delivery (coordination/push.py) against a real webhook receiver on 127.0.0.1 that verifies every
request with the standardwebhooks package. Time is driven with ``now=`` (the schedule's hours never slept).
Runs on SQLite (make test) and on PostgreSQL (make test-services)."""

import asyncio
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import crypto
from agents import services as agent_services
from audit.models import AuditLog
from coordination import inbox, push, push_endpoints
from coordination.models import DeliveryAttempt, MessageLog, PushEndpoint
from tests.support.coordination import envelope, post_echo
from tests.support.inbox import inbox_post, queue_messages
from tests.support.webhook_receiver import Reply, WebhookReceiver, closed_port_url, self_signed

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.BRIKK_WEBHOOK_ALLOW_HTTP = True
    settings.BRIKK_PUSH_TIMEOUT_SECONDS = 1


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def make_endpoint(agent, url, *, secret=None, **fields) -> tuple[PushEndpoint, str]:
    secret = secret or push_endpoints.new_secret()
    endpoint = PushEndpoint.objects.create(
        organization_id=agent.organization_id,
        agent=agent,
        url=url,
        secret_encrypted=crypto.encrypt(secret),
        **fields,
    )
    return endpoint, secret


def send(api_client, sender, recipient, **fields) -> dict:
    response = post_echo(api_client, envelope(sender.agent, recipient.agent, **fields), key=sender.key.plaintext)
    assert response.status_code == 200, response.content
    return response.json()


def attempts(message_id) -> list[DeliveryAttempt]:
    return list(DeliveryAttempt.objects.filter(message_id=message_id, kind="push").order_by("id"))


def test_a_message_is_pushed_signed_with_the_receive_body_and_a_2xx_acks_it(api_client, new_agent, peer):
    with WebhookReceiver([]) as receiver:
        endpoint, secret = make_endpoint(peer.agent, receiver.url)
        receiver.secrets.append(secret)
        sent = send(api_client, new_agent, peer, type="command", payload={"do": "it", "n": 1})
        before = time.time()
        assert push.push_due() == ["acked"]

    [request] = receiver.requests
    assert request.verified_by == [0]  # the standardwebhooks package accepts it
    headers = request.headers
    assert headers["webhook-id"] == sent["id"] and headers["content-type"] == "application/json"
    assert abs(int(headers["webhook-timestamp"]) - before) <= 2
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]
    assert headers["user-agent"].startswith("Brikk/") and headers["host"] == f"127.0.0.1:{receiver.port}"
    body = request.payload
    assert {key: body[key] for key in sent["envelope"]} == sent["envelope"]
    assert body["id"] == sent["id"] and body["delivery_count"] == 1 and body["accepted_at"] == sent["received_at"]
    assert body["receipt"].startswith(sent["id"] + ":") and body["leased_until"]

    message = MessageLog.objects.get(pk=sent["id"])
    assert message.delivery_state == "acked" and message.acked_at is not None and message.receipt == ""
    [attempt] = attempts(sent["id"])
    assert attempt.outcome == "acked" and attempt.status_code == 200 and attempt.endpoint_id == endpoint.pk
    assert attempt.latency_ms > 0 and attempt.ended_at is not None and attempt.response_excerpt == '{"ok": true}'
    assert attempt.consumer.startswith(f"push {endpoint.pk} from ") and attempt.error == ""
    endpoint.refresh_from_db()
    assert endpoint.last_success_at is not None and endpoint.failing_since is None
    # The pull inbox has nothing left, and nothing is pushed twice.
    assert inbox_post(api_client, peer.key.plaintext, "receive", {}).json() == {"messages": []}
    assert push.push_due() == []


def test_500s_then_success_follow_the_schedule_and_keep_the_webhook_id(api_client, new_agent, peer):
    script = [Reply(500, b"boom"), Reply(502), Reply(200)]
    with WebhookReceiver([], script) as receiver:
        endpoint, secret = make_endpoint(peer.agent, receiver.url)
        receiver.secrets.append(secret)
        sent = send(api_client, new_agent, peer, ttl_ms=3_600_000)
        now = timezone.now()
        assert push.push_due(now=now) == ["http_error"]
        message = MessageLog.objects.get(pk=sent["id"])
        assert message.delivery_state == "queued" and message.delivery_count == 1
        delay = (message.available_at - now).total_seconds()
        assert 4 <= delay <= 6  # 5 s ± 20 %
        assert push.push_due(now=now + timedelta(seconds=3)) == []  # not yet due
        later = message.available_at
        assert push.push_due(now=later) == ["http_error"]
        message.refresh_from_db()
        assert 240 <= (message.available_at - later).total_seconds() <= 360  # 5 min ± 20 %
        endpoint.refresh_from_db()
        assert endpoint.failing_since == now
        assert push.push_due(now=message.available_at) == ["acked"]

    assert [request.webhook_id for request in receiver.requests] == [sent["id"]] * 3
    assert all(request.verified_by == [0] for request in receiver.requests)
    assert [request.payload["delivery_count"] for request in receiver.requests] == [1, 2, 3]
    tried = attempts(sent["id"])
    assert [(item.status_code, item.outcome) for item in tried] == [(500, "failed"), (502, "failed"), (200, "acked")]
    assert tried[0].response_excerpt == "boom" and tried[0].error == "HTTP 500"
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.last_success_at is not None
    assert MessageLog.objects.get(pk=sent["id"]).delivery_state == "acked"


def test_the_whole_schedule_then_dead_lettered_push_exhausted_and_audited(api_client, new_agent, peer):
    with WebhookReceiver([], default=Reply(500)) as receiver:
        make_endpoint(peer.agent, receiver.url)
        sent = send(api_client, new_agent, peer, ttl_ms=14 * 86400 * 1000)
        now = timezone.now()
        delays = []
        for _ in range(push.ATTEMPTS):
            assert push.push_due(now=now) == ["http_error"]
            message = MessageLog.objects.get(pk=sent["id"])
            if message.delivery_state == "queued":
                delays.append((message.available_at - now).total_seconds())
                now = message.available_at
    assert len(receiver.requests) == push.ATTEMPTS == 8
    for delay, base in zip(delays, push.SCHEDULE[1:], strict=True):
        assert base * 0.8 <= delay <= base * 1.2, (delay, base)
    assert [round(base) for base in push.SCHEDULE[1:]] == [5, 300, 1800, 7200, 18000, 36000, 36000]
    message = MessageLog.objects.get(pk=sent["id"])
    assert message.delivery_state == "dead" and message.dead_reason == "push_exhausted"
    audit = AuditLog.objects.get(action="message.dead_lettered", resource_id=sent["id"])
    assert audit.details["reason"] == "push_exhausted" and audit.actor_id == "push-dispatcher"
    assert audit.details["delivery_count"] == 8
    assert len(attempts(sent["id"])) == 8


def test_a_timeout_a_redirect_and_a_refused_connection_are_failures(api_client, new_agent, peer, settings):
    with WebhookReceiver([], [Reply(200, delay=2.5), Reply(302, headers={"Location": "http://127.0.0.1:1/"})]) as r:
        make_endpoint(peer.agent, r.url)
        sent = send(api_client, new_agent, peer)
        started = time.monotonic()
        assert push.push_due() == ["timeout"]
        assert time.monotonic() - started < 2.4  # the timeout (1 s), not the receiver's 2.5 s
        [hung] = attempts(sent["id"])
        assert hung.outcome == "failed" and hung.status_code is None and "within 1 s" in hung.error
        MessageLog.objects.filter(pk=sent["id"]).update(available_at=timezone.now())
        assert push.push_due() == ["http_error"]
        redirected = attempts(sent["id"])[-1]
        assert redirected.status_code == 302 and redirected.outcome == "failed"
        assert len(r.requests) == 2  # the redirect was not followed
    other = agent_services.create_agent(peer.agent.organization, name="gamma")
    make_endpoint(other.agent, closed_port_url())
    refused = send(api_client, new_agent, other)
    assert push.push_due() == ["connection_error"]
    [attempt] = attempts(refused["id"])
    assert attempt.outcome == "failed" and attempt.status_code is None and "Connect" in attempt.error
    assert MessageLog.objects.get(pk=refused["id"]).delivery_state == "queued"


def test_410_gone_disables_the_endpoint_and_returns_the_messages_to_the_pull_inbox(api_client, new_agent, peer):
    with WebhookReceiver([], default=Reply(410)) as receiver:
        endpoint, _ = make_endpoint(peer.agent, receiver.url)
        first = send(api_client, new_agent, peer)
        assert push.push_due() == ["gone"]
        second = send(api_client, new_agent, peer)
        assert push.push_due() == []  # the endpoint is disabled: nothing more is pushed
    assert len(receiver.requests) == 1
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "gone" and endpoint.disabled_at is not None
    audit = AuditLog.objects.get(action="push_endpoint.disabled", resource_id=endpoint.pk)
    assert audit.details["reason"] == "gone" and audit.details["status_code"] == 410
    assert audit.details["message_id"] == first["id"]
    received = inbox_post(api_client, peer.key.plaintext, "receive", {}).json()["messages"]
    assert [item["id"] for item in received] == [first["id"], second["id"]]
    assert received[0]["delivery_count"] == 2  # the push counted


@pytest.mark.parametrize(
    ("status", "retry_after", "low", "high"),
    [(429, "30", 30, 30), (503, "0", 1, 1), (429, "999999", 3600, 3600), (429, None, 4, 6)],
)
def test_429_and_503_retry_after_is_honoured_within_bounds(api_client, new_agent, peer, status, retry_after, low, high):
    headers = {"Retry-After": retry_after} if retry_after else {}
    with WebhookReceiver([], [Reply(status, headers=headers)]) as receiver:
        make_endpoint(peer.agent, receiver.url)
        sent = send(api_client, new_agent, peer)
        now = timezone.now()
        assert push.push_due(now=now) == ["http_error"]
    message = MessageLog.objects.get(pk=sent["id"])
    assert low <= (message.available_at - now).total_seconds() <= high


def test_retry_after_as_an_http_date():
    now = time.time()
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 120))
    assert 118 <= push.parse_retry_after(date, now=now) <= 121
    assert push.parse_retry_after("soon") is None and push.parse_retry_after(None) is None


def test_during_a_rotation_both_signatures_verify_one_with_each_secret(api_client, new_agent, peer):
    old, new = push_endpoints.new_secret(), push_endpoints.new_secret()
    with WebhookReceiver([old, new]) as receiver:
        make_endpoint(
            peer.agent,
            receiver.url,
            secret=new,
            previous_secret_encrypted=crypto.encrypt(old),
            previous_secret_expires_at=timezone.now() + timedelta(hours=1),
        )
        send(api_client, new_agent, peer)
        assert push.push_due() == ["acked"]
    [request] = receiver.requests
    assert request.verified_by == [0, 1]  # a receiver with either secret accepts it
    assert sorted(request.signatures_verified_by) == [[0], [1]]  # one signature per secret


def test_after_the_grace_period_only_the_new_secret_signs(api_client, new_agent, peer):
    old, new = push_endpoints.new_secret(), push_endpoints.new_secret()
    with WebhookReceiver([old, new]) as receiver:
        make_endpoint(
            peer.agent,
            receiver.url,
            secret=new,
            previous_secret_encrypted=crypto.encrypt(old),
            previous_secret_expires_at=timezone.now() - timedelta(seconds=1),
        )
        send(api_client, new_agent, peer)
        assert push.push_due() == ["acked"]
    assert receiver.requests[0].verified_by == [1]


def test_a_host_that_resolves_to_a_refused_address_gets_no_request(api_client, new_agent, peer, settings):
    """The SSRF check is at connect time: a row whose host resolves inside (here localhost, not allowed by the
    settings) is refused and no request is made."""
    settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = []
    with WebhookReceiver([]) as receiver:
        make_endpoint(peer.agent, receiver.url.replace("127.0.0.1", "localhost"))
        sent = send(api_client, new_agent, peer)
        assert push.push_due() == ["refused"]
        settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8"]
        MessageLog.objects.filter(pk=sent["id"]).update(available_at=timezone.now())
        assert push.push_due() == ["refused"]
    assert receiver.requests == []
    tried = attempts(sent["id"])
    assert all(item.outcome == "failed" and item.status_code is None for item in tried)
    assert "refused" in tried[0].error and "not a public address" in tried[0].error
    assert MessageLog.objects.get(pk=sent["id"]).delivery_state == "queued"


def test_plain_http_is_refused_where_it_is_not_allowed(api_client, new_agent, peer, settings):
    settings.BRIKK_WEBHOOK_ALLOW_HTTP = False
    with WebhookReceiver([]) as receiver:
        make_endpoint(peer.agent, receiver.url)
        sent = send(api_client, new_agent, peer)
        assert push.push_due() == ["refused"]
    assert receiver.requests == [] and "https only" in attempts(sent["id"])[0].error


def test_an_endpoint_of_another_organizations_agent_is_never_used(api_client, new_agent, peer, make_org):
    other_org = make_org("Globex")
    stranger = agent_services.create_agent(other_org, name="stranger")
    with WebhookReceiver([]) as receiver:
        make_endpoint(stranger.agent, receiver.url)  # another organization's agent has an endpoint
        # and a forged row: an endpoint of the other organization naming this organization's agent
        PushEndpoint.objects.create(
            organization=other_org,
            agent=peer.agent,
            url=receiver.url,
            secret_encrypted=crypto.encrypt(push_endpoints.new_secret()),
        )
        sent = send(api_client, new_agent, peer)
        assert push.push_due() == []
    assert receiver.requests == []
    assert MessageLog.objects.get(pk=sent["id"]).delivery_state == "queued"
    received = inbox_post(api_client, peer.key.plaintext, "receive", {}).json()["messages"]
    assert [item["id"] for item in received] == [sent["id"]]


def test_a_disabled_endpoint_is_not_used(api_client, new_agent, peer):
    with WebhookReceiver([]) as receiver:
        make_endpoint(peer.agent, receiver.url, enabled=False, disabled_reason="manual")
        send(api_client, new_agent, peer)
        assert push.push_due() == []
    assert receiver.requests == []


def test_a_deleted_agents_endpoint_is_not_used(api_client, new_agent, peer):
    with WebhookReceiver([]) as receiver:
        make_endpoint(peer.agent, receiver.url)
        sent = queue_messages(new_agent.agent, peer.agent, 1)
        peer.agent.status = "deleted"
        peer.agent.save(update_fields=["status"])
        assert push.push_due() == []
    assert receiver.requests == []
    assert MessageLog.objects.get(pk=sent[0].pk).delivery_state == "queued"


def test_the_ttl_wins_over_the_schedule(api_client, new_agent, peer):
    with WebhookReceiver([], default=Reply(500)) as receiver:
        make_endpoint(peer.agent, receiver.url)
        sent = send(api_client, new_agent, peer, ttl_ms=60_000)
        now = timezone.now()
        assert push.push_due(now=now) == ["http_error"]
        message = MessageLog.objects.get(pk=sent["id"])
        assert push.push_due(now=message.available_at) == ["http_error"]  # the next retry is in ~5 min
        message.refresh_from_db()
        assert message.available_at > message.expires_at
        assert push.push_due(now=message.available_at) == []  # expired before its retry was due
        assert inbox.sweep(now=message.expires_at).expired == 1
    assert len(receiver.requests) == 2
    message.refresh_from_db()
    assert message.delivery_state == "dead" and message.dead_reason == "expired"


def test_an_endpoint_failing_for_five_days_without_success_is_disabled(api_client, new_agent, peer):
    with WebhookReceiver([], default=Reply(500)) as receiver:
        endpoint, _ = make_endpoint(peer.agent, receiver.url)
        first = send(api_client, new_agent, peer, ttl_ms=14 * 86400 * 1000)
        start = timezone.now()
        assert push.push_due(now=start) == ["http_error"]
        endpoint.refresh_from_db()
        assert endpoint.enabled and endpoint.failing_since == start
        message = MessageLog.objects.get(pk=first["id"])
        MessageLog.objects.filter(pk=first["id"]).update(available_at=start + timedelta(days=4, hours=23))
        assert push.push_due(now=start + timedelta(days=4, hours=23)) == ["http_error"]
        endpoint.refresh_from_db()
        assert endpoint.enabled  # not five days yet
        later = start + timedelta(days=5, seconds=1)
        MessageLog.objects.filter(pk=first["id"]).update(available_at=later)
        assert push.push_due(now=later) == ["http_error"]
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == "failing"
    audit = AuditLog.objects.get(action="push_endpoint.disabled", resource_id=endpoint.pk)
    assert audit.details["reason"] == "failing" and audit.details["failing_since"] == start.isoformat()
    message.refresh_from_db()
    assert message.delivery_state == "queued" and message.available_at == later  # back to the inbox at once


def test_a_push_ack_after_an_api_ack_changes_nothing_and_a_lapsed_lease_is_pushed_again(api_client, new_agent, peer):
    with WebhookReceiver([]) as receiver:
        make_endpoint(peer.agent, receiver.url)
        sent = send(api_client, new_agent, peer)
        now = timezone.now()
        [delivery] = push.lease_due(now=now, limit=10)  # a dispatcher that dies here leaves it leased
        assert push.lease_due(now=now, limit=10) == []  # leased: no second dispatcher takes it
        later = now + timedelta(seconds=push.lease_seconds() + 1)
        assert push.push_due(now=later) == ["acked"]
        # The dead dispatcher's settle (had it lived) finds its lease gone and changes nothing.
        assert push.settle(delivery, push.Result(status_code=500, outcome="http_error"), now=later) == "http_error"
    message = MessageLog.objects.get(pk=sent["id"])
    assert message.delivery_state == "acked" and message.delivery_count == 2
    assert [request.payload["delivery_count"] for request in receiver.requests] == [2]


def test_answers_settled_as_a_group_ack_each_held_message_and_leave_one_acked_elsewhere(new_agent, peer):
    endpoint, _ = make_endpoint(peer.agent, "http://127.0.0.1:9/hook")
    queued = queue_messages(new_agent.agent, peer.agent, 3)
    now = timezone.now()
    deliveries = push.lease_due(now=now, limit=10)
    assert len(deliveries) == 3
    # One of them is acked through the API with its receipt before the dispatcher writes its answers.
    taken = deliveries[1]
    [result] = inbox.ack(peer.agent.pk, [inbox.receipt_of(taken.lease.id, taken.lease.token)], now=now)
    assert result["result"] == "ok"
    answers = [(delivery, push.Result(status_code=204, latency_ms=3.5, outcome="acked")) for delivery in deliveries]
    later = now + timedelta(milliseconds=5)
    push.settle_acked(answers, now=later)

    messages = {item.pk: item for item in MessageLog.objects.filter(pk__in=[item.pk for item in queued])}
    assert {message.delivery_state for message in messages.values()} == {"acked"}
    assert [messages[delivery.lease.id].acked_at == later for delivery in deliveries] == [True, False, True]
    recorded = [attempts(delivery.lease.id)[0] for delivery in deliveries]
    assert [(item.outcome, item.status_code, item.latency_ms) for item in recorded] == [
        ("acked", 204, 3.5),
        ("acked", None, None),  # closed by the API's ack; the late answer changes nothing
        ("acked", 204, 3.5),
    ]
    assert [item.ended_at for item in recorded] == [later, now, later]
    endpoint.refresh_from_db()
    assert endpoint.last_success_at == later and endpoint.failing_since is None


def test_an_endpoints_checked_address_is_remembered_for_a_while_and_not_across_settings(settings, monkeypatch):
    resolved = []

    def counting_target_of(url):
        resolved.append(url)
        return push.Target(url, "127.0.0.1", "127.0.0.1", None)

    monkeypatch.setattr(push, "target_of", counting_target_of)
    clients = push.Clients()

    async def twice():
        await clients.target("http://127.0.0.1:9/a")
        await clients.target("http://127.0.0.1:9/a")

    asyncio.run(twice())
    assert resolved == ["http://127.0.0.1:9/a"]
    settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.2/32"]  # another rule: checked again
    asyncio.run(twice())
    assert len(resolved) == 2
    monkeypatch.setattr(push, "TARGET_TTL_SECONDS", 0.0)  # past its time: resolved and checked again
    clients = push.Clients()
    asyncio.run(twice())
    assert len(resolved) == 4


def test_a_large_or_binary_answer_is_kept_as_its_first_kilobyte(api_client, new_agent, peer):
    body = b"\xff\x00" + b"x" * 5000
    with WebhookReceiver([], [Reply(500, body)]) as receiver:
        make_endpoint(peer.agent, receiver.url)
        sent = send(api_client, new_agent, peer)
        assert push.push_due() == ["http_error"]
    excerpt = attempts(sent["id"])[0].response_excerpt
    assert excerpt.startswith("\ufffd\ufffd") and len(excerpt) == 1024 and "\x00" not in excerpt


def test_secrets_never_appear_in_attempts_audit_or_errors(api_client, new_agent, peer):
    with WebhookReceiver([], default=Reply(410)) as receiver:
        endpoint, secret = make_endpoint(peer.agent, receiver.url + "?token=hush")
        sent = send(api_client, new_agent, peer)
        assert push.push_due() == ["gone"]
    delivery = push.Delivery(None, endpoint.pk, None, None, endpoint.url, "{}", (secret,))
    stored = json.dumps(list(DeliveryAttempt.objects.filter(message_id=sent["id"]).values()), default=str)
    stored += json.dumps(list(AuditLog.objects.values("details")), default=str) + repr(delivery)
    raw = secret.removeprefix("whsec_")
    assert raw not in stored and "whsec_" not in stored


def test_several_messages_go_out_oldest_first_and_queued_ones_of_a_pull_agent_stay(new_agent, peer, org):
    pull_only = agent_services.create_agent(org, name="pull")
    with WebhookReceiver([]) as receiver:
        make_endpoint(peer.agent, receiver.url)
        queued = queue_messages(new_agent.agent, peer.agent, 5)
        waiting = queue_messages(new_agent.agent, pull_only.agent, 2)
        assert push.push_due() == ["acked"] * 5
    assert sorted(request.webhook_id for request in receiver.requests) == sorted(str(item.pk) for item in queued)
    assert set(
        MessageLog.objects.filter(pk__in=[item.pk for item in waiting]).values_list("delivery_state", flat=True)
    ) == {"queued"}


def test_the_per_endpoint_cap_limits_one_lease(new_agent, peer, settings):
    settings.BRIKK_PUSH_CONCURRENCY_PER_ENDPOINT = 3
    with WebhookReceiver([]) as receiver:
        endpoint, _ = make_endpoint(peer.agent, receiver.url)
        queue_messages(new_agent.agent, peer.agent, 5)
        assert len(push.lease_due(limit=100)) == 3
        assert push.lease_due(limit=100, busy={endpoint.pk: 3}) == []
        assert len(push.lease_due(limit=100, busy={endpoint.pk: 1})) == 2


def test_https_connects_to_the_checked_address_and_verifies_the_certificate_against_the_name(
    api_client, new_agent, peer, tmp_path, monkeypatch
):
    """https://localhost: resolved and checked (127.0.0.1), connected to by address, TLS with SNI ``localhost`` and
    the certificate verified against that name (the test's own CA instead of the system's)."""
    server_tls, trust = self_signed(tmp_path, "localhost")
    monkeypatch.setattr(push, "_tls_context", lambda: trust)
    with WebhookReceiver([], tls=server_tls) as receiver:
        _, secret = make_endpoint(peer.agent, receiver.url)
        receiver.secrets.append(secret)
        sent = send(api_client, new_agent, peer)
        assert push.push_due() == ["acked"]
    [request] = receiver.requests
    assert request.verified_by == [0] and request.webhook_id == sent["id"]
    assert request.headers["host"] == f"localhost:{receiver.port}" and receiver.sni_names == ["localhost"]


def test_https_with_a_certificate_for_another_name_is_a_failed_attempt(
    api_client, new_agent, peer, tmp_path, monkeypatch
):
    server_tls, trust = self_signed(tmp_path, "elsewhere.example")
    monkeypatch.setattr(push, "_tls_context", lambda: trust)
    with WebhookReceiver([], tls=server_tls) as receiver:
        make_endpoint(peer.agent, receiver.url)
        sent = send(api_client, new_agent, peer)
        assert push.push_due() == ["connection_error"]
    assert receiver.requests == [] and receiver.sni_names == ["localhost"]
    assert "CERTIFICATE_VERIFY_FAILED" in attempts(sent["id"])[0].error
