"""The batch send, POST /api/v1/coordination/batch: per-envelope results, one transaction, the echo's rules,
on the embedded defaults and (pg_redis) PostgreSQL + Redis with real concurrency."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import services as agent_services
from audit.models import AuditLog
from coordination import throttling
from coordination.answers import answer_of
from coordination.models import IdempotencyRecord, MessageLog
from tests.support.coordination import encode, envelope, post_echo, signed_headers
from tests.support.counting import database_transactions, redis_round_trips
from tests.support.live import concurrently, http_post, meta_to_http

BATCH_PATH = "/api/v1/coordination/batch"


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


@pytest.fixture(autouse=True)
def empty_windows():
    throttling.local_window.clear()


def post_batch(client, agent, envelopes, *, signed=True, **headers):
    body = envelopes if isinstance(envelopes, dict | bytes) else {"messages": envelopes}
    secret = agent.signing_secret if signed else None
    return post_echo(client, body, key=agent.key.plaintext, secret=secret, path=BATCH_PATH, **headers)


def _error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "request_id", "details"} and body["code"] == code
    return body


def _jwt(api_client, username) -> str:
    token = api_client.post(
        "/api/v1/auth/token/", {"username": username, "password": "correct-horse-battery"}, format="json"
    )
    return f"Bearer {token.json()['access']}"


@pytest.mark.django_db
def test_a_batch_delivers_each_envelope_as_a_sync_echo_does(api_client, new_agent, peer, caplog):
    bodies = [envelope(new_agent.agent, peer.agent, payload={"n": n}, ttl_ms=60000 + n) for n in range(3)]
    response = post_batch(api_client, new_agent, bodies, HTTP_X_REQUEST_ID="req-batch-0001")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["delivered"], answer["replayed"], answer["refused"]) == (3, 0, 0)
    assert [result["index"] for result in answer["results"]] == [0, 1, 2]
    assert [result["message_id"] for result in answer["results"]] == [body["message_id"] for body in bodies]
    assert response["X-RateLimit-Remaining"] == "597"  # three envelopes counted
    for body, result in zip(bodies, answer["results"], strict=True):
        assert result["status"] == "delivered" and set(result) == {"index", "message_id", "status", "id", "delivery"}
        message = MessageLog.objects.get(pk=result["id"])
        assert message.status == "delivered" and message.http_status == 200 and message.attempts == 1
        assert (message.sender_id, message.recipient_id) == (new_agent.agent.pk, peer.agent.pk)
        assert message.delivery_state == "queued" and message.available_at == message.responded_at
        assert message.expires_at == message.received_at + timedelta(milliseconds=body["ttl_ms"])
        assert result["delivery"]["state"] == "queued" and result["delivery"]["expires_at"]
        assert message.request_body == body and message.correlation_id == "req-batch-0001"
        # Its answer is not stored but built again from the row (a single echo of the same envelope replays it).
        assert message.response_body is None
        assert answer_of(message)["envelope"] == body and answer_of(message)["id"] == result["id"]
        record = IdempotencyRecord.objects.get(key=body["message_id"])
        assert record.scope == f"agent:{new_agent.agent.pk}" and record.message_id == message.pk
        assert record.response_body is None and record.response_status == 200  # the message keeps the answer
        audit = AuditLog.objects.get(action="echo.delivered", resource_id=result["id"])
        assert audit.correlation_id == "req-batch-0001" and audit.actor_id == str(new_agent.agent.pk)
    # One log line for the three audit rows, naming them.
    (line,) = [record for record in caplog.records if record.getMessage() == "audit echo.delivered success x3"]
    assert line.resource_ids == [result["id"] for result in answer["results"]] and line.count == 3
    replay = post_echo(api_client, bodies[1], key=new_agent.key.plaintext, secret=new_agent.signing_secret)
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == answer["results"][1]["id"]


@pytest.mark.django_db
def test_refused_envelopes_change_nothing_and_say_why(api_client, new_agent, peer, make_org, make_agent):
    other_org = make_org("Other")
    stranger = make_agent(other_org, name="stranger")
    good = [envelope(new_agent.agent, peer.agent, payload={"n": n}) for n in range(2)]
    bodies = [
        good[0],
        {**envelope(new_agent.agent, peer.agent), "ttl_ms": 0, "extra": 1},  # invalid
        envelope(peer.agent, new_agent.agent),  # not the caller
        envelope(new_agent.agent, stranger.agent),  # another organization's recipient
        envelope(new_agent.agent, peer.agent, recipient={"agent_id": str(peer.agent.pk), "org_id": str(other_org.pk)}),
        "not an envelope",
        good[1],
    ]
    response = post_batch(api_client, new_agent, bodies)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert [result["status"] for result in answer["results"]] == ["delivered"] + ["refused"] * 5 + ["delivered"]
    assert (answer["delivered"], answer["replayed"], answer["refused"]) == (2, 0, 5)
    errors = [result.get("error") for result in answer["results"]]
    assert errors[1]["code"] == "validation_error" and set(errors[1]["details"]) == {"ttl_ms", "extra"}
    assert errors[2] == {
        "code": "forbidden",
        "message": "The sender must be the authenticated agent.",
        "details": {"sender": {"agent_id": ["Must be the authenticated agent."]}},
    }
    assert errors[3]["code"] == "validation_error"
    assert errors[3]["details"] == {"recipient": {"agent_id": ["Not an active agent of your organization."]}}
    assert errors[4]["code"] == "forbidden" and errors[4]["details"] == {
        "recipient": {"org_id": ["Not your organization."]}
    }
    assert errors[5]["code"] == "validation_error" and answer["results"][5]["message_id"] is None
    # The good ones are committed; the refused ones delivered nothing and left no key behind...
    delivered = MessageLog.objects.filter(status="delivered")
    assert sorted(str(m.message_id) for m in delivered) == sorted(body["message_id"] for body in good)
    assert IdempotencyRecord.objects.count() == 2
    # ...and are kept as a refused echo is: a rejected row and its audit row each.
    rejected = MessageLog.objects.filter(status="rejected")
    assert sorted(m.http_status for m in rejected) == [403, 403, 422, 422, 422]
    assert rejected.get(http_status=403, sender=peer.agent).response_body["code"] == "forbidden"
    assert rejected.get(recipient=None, message_id=bodies[3]["message_id"]).error.startswith("validation_error")
    assert AuditLog.objects.filter(action="echo.rejected").count() == 5
    assert AuditLog.objects.filter(action="echo.rejected", outcome="denied").count() == 2
    # A corrected envelope with a refused one's message_id goes through.
    fixed = {**bodies[1], "ttl_ms": 1000}
    fixed.pop("extra")
    assert post_batch(api_client, new_agent, [fixed]).json()["results"][0]["status"] == "delivered"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "x"}, "messages"),
        ({}, "messages"),
        ({"messages": [{}], "more": 1}, "more"),
        (b"[]", "non_field_errors"),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_as_a_whole(api_client, new_agent, peer, body, field):
    refused = post_batch(api_client, new_agent, body)
    assert field in _error(refused, 422, "validation_error")["details"]
    assert not MessageLog.objects.exists() and not IdempotencyRecord.objects.exists()
    audit = AuditLog.objects.get(action="echo.rejected")
    assert audit.resource_kind == "batch" and audit.details["code"] == "validation_error"


@pytest.mark.django_db
def test_over_a_hundred_envelopes_is_refused_and_stores_nothing(api_client, new_agent, peer):
    bodies = [envelope(new_agent.agent, peer.agent) for _ in range(101)]
    details = _error(post_batch(api_client, new_agent, bodies), 422, "validation_error")["details"]
    assert details == {"messages": ["Send 1 to 100 envelopes (got 101)."]}
    assert not MessageLog.objects.exists()
    assert AuditLog.objects.get(action="echo.rejected").details["messages"] == 101
    assert post_batch(api_client, new_agent, bodies[:100]).json()["delivered"] == 100


@pytest.mark.django_db
def test_replays_and_reused_keys(api_client, new_agent, peer):
    bodies = [envelope(new_agent.agent, peer.agent, payload={"n": n}) for n in range(2)]
    first = post_batch(api_client, new_agent, bodies).json()
    # The same envelopes again (a retry, with a new ts and nonce: the same operation) are replayed.
    retried = [{**body, "ts": "2030-01-01T00:00:00Z", "nonce": "again"} for body in bodies]
    changed = {**bodies[0], "payload": {"n": "other"}}
    fresh = envelope(new_agent.agent, peer.agent)
    again = post_batch(api_client, new_agent, [*retried, changed, fresh], HTTP_X_REQUEST_ID="req-batch-again")
    answer = again.json()
    assert [result["status"] for result in answer["results"]] == ["replayed", "replayed", "refused", "delivered"]
    assert [result["id"] for result in answer["results"][:2]] == [result["id"] for result in first["results"]]
    assert set(answer["results"][0]) == {"index", "message_id", "status", "id"}
    assert answer["results"][2]["error"]["code"] == "idempotency_key_reused"
    assert answer["results"][2]["error"]["details"] == {"idempotency_key": bodies[0]["message_id"]}
    assert MessageLog.objects.filter(status="delivered").count() == 3
    replays = AuditLog.objects.filter(action="idempotency.replayed", correlation_id="req-batch-again")
    assert sorted(audit.resource_id for audit in replays) == sorted(r["id"] for r in first["results"])
    assert AuditLog.objects.filter(action="idempotency.conflict").count() == 1
    assert MessageLog.objects.get(status="rejected").http_status == 422
    # A key the single echo used is replayed by a batch, too.
    single = envelope(new_agent.agent, peer.agent)
    echoed = post_echo(api_client, single, key=new_agent.key.plaintext).json()
    assert post_batch(api_client, new_agent, [single]).json()["results"][0] == {
        "index": 0,
        "message_id": single["message_id"],
        "status": "replayed",
        "id": echoed["id"],
    }


@pytest.mark.django_db
def test_an_expired_key_is_free_again(api_client, new_agent, peer):
    body = envelope(new_agent.agent, peer.agent)
    first = post_batch(api_client, new_agent, [body]).json()["results"][0]
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    changed = envelope(new_agent.agent, peer.agent, message_id=body["message_id"], payload={"other": True})
    # The key is free, but the message_id is still its sender's: refused as the echo refuses it, and the
    # expired record stays for retention to archive.
    result = post_batch(api_client, new_agent, [changed]).json()["results"][0]
    assert result["status"] == "refused" and result["error"]["code"] == "message_id_reused"
    assert MessageLog.objects.filter(status="delivered").get().pk.hex == first["id"].replace("-", "")
    assert IdempotencyRecord.objects.get().message_id.hex == first["id"].replace("-", "")
    # An echo's own Idempotency-Key that an envelope of a batch later uses as its message_id: once expired,
    # the new message replaces the record.
    echoed = envelope(new_agent.agent, peer.agent)
    key = envelope(new_agent.agent, peer.agent)["message_id"]
    assert post_echo(api_client, echoed, key=new_agent.key.plaintext, HTTP_IDEMPOTENCY_KEY=key).status_code == 200
    reusing = envelope(new_agent.agent, peer.agent, message_id=key, payload={"new": 1})
    assert (
        post_batch(api_client, new_agent, [reusing]).json()["results"][0]["error"]["code"] == "idempotency_key_reused"
    )
    IdempotencyRecord.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))
    result = post_batch(api_client, new_agent, [reusing]).json()["results"][0]
    assert result["status"] == "delivered"
    assert str(IdempotencyRecord.objects.get(key=key).message_id) == result["id"]


@pytest.mark.django_db
def test_a_record_whose_message_is_gone_frees_its_key(api_client, new_agent, peer):
    """A delivered message's record replays the message's own answer; with the message gone (retention never
    removes it while the record lives) there is no answer left, so the key is free, as past its window."""
    body = envelope(new_agent.agent, peer.agent)
    first = post_batch(api_client, new_agent, [body]).json()["results"][0]
    other = {**body, "payload": {"other": True}}
    assert post_batch(api_client, new_agent, [body, other]).json()["results"] == [
        {"index": 0, "message_id": body["message_id"], "status": "replayed", "id": first["id"]},
        {
            "index": 1,
            "message_id": body["message_id"],
            "status": "refused",
            "error": {
                "code": "idempotency_key_reused",
                "message": "This idempotency key was already used with a different request body.",
                "details": {"idempotency_key": body["message_id"]},
            },
        },
    ]
    MessageLog.objects.filter(pk=first["id"]).delete()
    again = post_batch(api_client, new_agent, [body]).json()["results"][0]
    assert again["status"] == "delivered" and again["id"] != first["id"]
    record = IdempotencyRecord.objects.get(key=body["message_id"])
    assert str(record.message_id) == again["id"] and record.response_body is None


@pytest.mark.django_db
def test_a_message_id_repeated_within_one_batch(api_client, new_agent, peer):
    body = envelope(new_agent.agent, peer.agent)
    same = {**body, "nonce": "second send"}
    other = {**body, "payload": {"different": True}}
    answer = post_batch(api_client, new_agent, [body, same, other]).json()
    assert [result["status"] for result in answer["results"]] == ["delivered", "replayed", "refused"]
    assert answer["results"][1]["id"] == answer["results"][0]["id"]
    assert answer["results"][2]["error"]["code"] == "idempotency_key_reused"
    assert MessageLog.objects.filter(status="delivered").count() == 1
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db
def test_without_idempotency_a_repeated_message_id_is_refused(api_client, new_agent, peer, settings):
    settings.BRIKK_IDEMPOTENCY_ENABLED = False
    body = envelope(new_agent.agent, peer.agent)
    answer = post_batch(api_client, new_agent, [body, {**body, "nonce": "again"}]).json()
    assert [result["status"] for result in answer["results"]] == ["delivered", "refused"]
    assert answer["results"][1]["error"]["code"] == "message_id_reused"
    # Sent again later: the unique constraint refuses it (the batch runs again and answers it).
    later = post_batch(api_client, new_agent, [body, envelope(new_agent.agent, peer.agent)]).json()
    assert [result["status"] for result in later["results"]] == ["refused", "delivered"]
    assert later["results"][0]["error"]["code"] == "message_id_reused"
    assert MessageLog.objects.filter(status="delivered").count() == 2
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_a_person_batches_as_agents_with_replies_linked_within_the_batch(api_client, owner, new_agent, peer):
    bearer = _jwt(api_client, "owner")
    question = envelope(new_agent.agent, peer.agent, type="command")
    answer_ = envelope(peer.agent, new_agent.agent, type="result", reply_to=question["message_id"])
    response = post_echo(api_client, {"messages": [question, answer_]}, path=BATCH_PATH, HTTP_AUTHORIZATION=bearer)
    assert response.status_code == 200, response.content
    first, second = (MessageLog.objects.get(pk=result["id"]) for result in response.json()["results"])
    assert second.in_reply_to_id == first.pk and first.in_reply_to_id is None
    assert first.actor_kind == second.actor_kind == "user"
    # A reply in a later batch is linked by the INSERT's own subquery.
    later = envelope(peer.agent, new_agent.agent, reply_to=question["message_id"])
    result = post_echo(api_client, {"messages": [later]}, path=BATCH_PATH, HTTP_AUTHORIZATION=bearer).json()
    assert MessageLog.objects.get(pk=result["results"][0]["id"]).in_reply_to_id == first.pk
    # Each agent's window counted its own envelopes.
    assert response["RateLimit-Policy"].count('"caller"') == 2


@pytest.mark.django_db
def test_members_may_not_send_a_batch(api_client, member, new_agent, peer):
    refused = post_echo(
        api_client,
        {"messages": [envelope(new_agent.agent, peer.agent)]},
        path=BATCH_PATH,
        HTTP_AUTHORIZATION=_jwt(api_client, "member"),
    )
    _error(refused, 403, "forbidden")
    assert not MessageLog.objects.exists()
    assert AuditLog.objects.filter(action="permission.denied").count() == 1


def _rate_limit_counts_each_envelope(api_client, org, new_agent, peer):
    org.rate_limit_agent_per_minute = 5
    org.save()
    three = post_batch(api_client, new_agent, [envelope(new_agent.agent, peer.agent) for _ in range(3)])
    assert three.status_code == 200 and three["X-RateLimit-Remaining"] == "2"
    too_many = post_batch(api_client, new_agent, [envelope(new_agent.agent, peer.agent) for _ in range(3)])
    _error(too_many, 429, "rate_limited")
    assert too_many["X-RateLimit-Remaining"] == "2" and 1 <= int(too_many["Retry-After"]) <= 60
    assert MessageLog.objects.filter(status="delivered").count() == 3  # the refused batch stored nothing
    assert AuditLog.objects.get(action="rate_limit.refused").resource_kind == "batch"
    two = post_batch(api_client, new_agent, [envelope(new_agent.agent, peer.agent) for _ in range(2)])
    assert two.status_code == 200 and two["X-RateLimit-Remaining"] == "0"
    # The refusal counted nothing: the organization's window holds the five sent.
    assert two["RateLimit-Policy"] == '"caller";q=5;w=60, "organization";q=6000;w=60'
    single = post_echo(api_client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext)
    _error(single, 429, "rate_limited")


@pytest.mark.django_db
def test_the_rate_limit_counts_each_envelope_all_or_nothing(api_client, org, new_agent, peer):
    _rate_limit_counts_each_envelope(api_client, org, new_agent, peer)


@pytest.mark.django_db
def test_hmac_is_required_like_on_the_echo(api_client, new_agent, peer, settings):
    settings.BRIKK_HMAC_REQUIRED = True
    bodies = [envelope(new_agent.agent, peer.agent)]
    _error(post_batch(api_client, new_agent, bodies, signed=False), 401, "invalid_signature")
    raw = encode({"messages": bodies})
    wrong = signed_headers(new_agent.key.plaintext, new_agent.signing_secret, raw + b" ", path=BATCH_PATH)
    _error(api_client.generic("POST", BATCH_PATH, raw, content_type="application/json", **wrong), 401,
           "invalid_signature")  # fmt: skip
    assert not MessageLog.objects.exists()
    assert post_batch(api_client, new_agent, bodies).status_code == 200


@pytest.mark.django_db
def test_headers_the_batch_does_not_take(api_client, new_agent, peer):
    bodies = [envelope(new_agent.agent, peer.agent)]
    refused = post_batch(api_client, new_agent, bodies, HTTP_IDEMPOTENCY_KEY="op-1")
    assert "Idempotency-Key" in _error(refused, 422, "validation_error")["details"]
    # Synchronous only: a preference for async is ignored, and the answer says none was applied.
    answer = post_batch(api_client, new_agent, bodies, HTTP_PREFER="respond-async")
    assert answer.status_code == 200 and answer.json()["results"][0]["status"] == "delivered"
    assert "Preference-Applied" not in answer
    _error(post_batch(api_client, new_agent, b"not json"), 400, "protocol_error")


# --- PostgreSQL and Redis ------------------------------------------------------------------------------------


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_the_rate_limit_counts_each_envelope_in_redis(api_client, org, new_agent, peer):
    _rate_limit_counts_each_envelope(api_client, org, new_agent, peer)


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_a_batch_costs_the_same_round_trips_whatever_its_size(api_client, new_agent, peer):
    post_batch(api_client, new_agent, [envelope(new_agent.agent, peer.agent)])  # the process remembers the key
    costs = []
    for size in (1, 50):
        bodies = [envelope(new_agent.agent, peer.agent, payload={"n": n}) for n in range(size)]
        with redis_round_trips() as redis, database_transactions() as db:
            response = post_batch(api_client, new_agent, bodies)
        assert response.status_code == 200 and response.json()["delivered"] == size, response.content
        assert redis.trips == [["EVALSHA"]]
        (batch,) = db.committed
        costs.append((len(db.autocommit), [_statement(sql) for sql in batch]))
    assert costs[0] == costs[1]
    assert costs[0][1] == [
        "SELECT coordination_idempotencyrecord",
        "SELECT agents_agent",
        "INSERT coordination_messagelog",
        "INSERT coordination_idempotencyrecord",
        "INSERT audit_auditlog",
    ]


def _statement(sql: str) -> str:
    verb, _, rest = sql.partition(" ")
    table = rest.split(" FROM ", 1)[1] if verb == "SELECT" else rest.removeprefix("INTO ")
    return f"{verb} {table.split(chr(34))[1]}"


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_two_identical_batches_at_once_store_each_message_once(live_server, new_agent, peer):
    bodies = [envelope(new_agent.agent, peer.agent, payload={"n": n}) for n in range(20)]
    raw = encode({"messages": bodies})

    def send(_):
        headers = meta_to_http(signed_headers(new_agent.key.plaintext, new_agent.signing_secret, raw, path=BATCH_PATH))
        return http_post(live_server.url, BATCH_PATH, raw, headers)

    results = concurrently(4, send)
    assert [status for status, _, _ in results] == [200] * 4, results
    answers = [body for _, _, body in results]
    assert sum(answer["delivered"] for answer in answers) == 20  # each message delivered by exactly one batch
    assert all(answer["refused"] == 0 and answer["delivered"] + answer["replayed"] == 20 for answer in answers)
    for index in range(20):
        assert len({answer["results"][index]["id"] for answer in answers}) == 1
    assert MessageLog.objects.filter(status="delivered").count() == 20
    assert IdempotencyRecord.objects.count() == 20
    assert AuditLog.objects.filter(action="echo.delivered").count() == 20
    assert json.loads(raw)["messages"][0]["message_id"] == answers[0]["results"][0]["message_id"]
