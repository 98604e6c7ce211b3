"""What one signed echo costs on the real services: Redis round trips and database transactions."""

import pytest

from agents import services as agent_services
from tests.support.coordination import envelope, post_echo
from tests.support.counting import database_transactions, redis_round_trips

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def _signed_echo(api_client, new_agent, peer):
    return post_echo(
        api_client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext, secret=new_agent.signing_secret
    )


def test_a_warm_signed_echo_costs_at_most_two_redis_round_trips(api_client, new_agent, peer):
    assert _signed_echo(api_client, new_agent, peer).status_code == 200  # warms the caches
    with redis_round_trips() as redis:
        response = _signed_echo(api_client, new_agent, peer)
    assert response.status_code == 200, response.content
    assert response["RateLimit-Policy"]  # the rate limits were evaluated
    assert redis.count <= 2, redis.trips
    assert redis.trips == [["GET"], ["EVALSHA"]]  # the key identity, then both rate-limit windows


def test_a_signed_echo_writes_its_rows_in_one_transaction(api_client, new_agent, peer):
    assert _signed_echo(api_client, new_agent, peer).status_code == 200
    with database_transactions() as db:
        response = _signed_echo(api_client, new_agent, peer)
    assert response.status_code == 200, response.content
    # The idempotency claim commits first, on its own, so that a concurrent duplicate sees it in
    # flight (409); then the message, its audit row and the completed idempotency record commit together.
    claim, echo = db.committed
    assert [_statement(sql) for sql in claim] == ["INSERT coordination_idempotencyrecord"]
    assert [_statement(sql) for sql in echo] == [
        "INSERT coordination_messagelog",
        "INSERT audit_auditlog",
        "UPDATE coordination_idempotencyrecord",
    ]
    assert all(sql.startswith("SELECT") for sql in db.autocommit), db.autocommit  # reads only, no writes


def _statement(sql: str) -> str:
    verb, _, rest = sql.partition(" ")
    table = rest.removeprefix("INTO ").split('"')[1]
    return f"{verb} {table}"
