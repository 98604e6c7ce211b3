"""What one signed echo costs on the real services: Redis round trips and database transactions."""

import pytest

from agents import services as agent_services
from tests.support.coordination import envelope, post_echo
from tests.support.counting import database_transactions, inserted_tables, redis_round_trips

pytestmark = [pytest.mark.pg_redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def peer(org, owner):
    return agent_services.create_agent(org, name="beta", owner=owner)


def _signed_echo(api_client, new_agent, peer):
    return post_echo(
        api_client, envelope(new_agent.agent, peer.agent), key=new_agent.key.plaintext, secret=new_agent.signing_secret
    )


def test_a_warm_signed_echo_costs_one_redis_round_trip_and_reads_its_key_from_the_database(api_client, new_agent, peer):
    """Issue 9: the key's validity comes from PostgreSQL on every request (one indexed query), never from a
    cache; Redis is left with the rate limits only."""
    assert _signed_echo(api_client, new_agent, peer).status_code == 200  # the process remembers the key
    with redis_round_trips() as redis, database_transactions() as db:
        response = _signed_echo(api_client, new_agent, peer)
    assert response.status_code == 200, response.content
    assert response["RateLimit-Policy"]  # the rate limits were evaluated
    assert redis.trips == [["EVALSHA"]]  # both rate-limit windows; no key cache
    key_reads = [sql for sql in db.autocommit if '"agents_apikey"."hashed_secret"' in sql]
    assert len(key_reads) == 1 and "WHERE" in key_reads[0] and '"agents_apikey"."prefix" = %s' in key_reads[0]


def test_a_signed_echo_writes_its_rows_in_one_statement(api_client, new_agent, peer):
    assert _signed_echo(api_client, new_agent, peer).status_code == 200
    with database_transactions() as db:
        response = _signed_echo(api_client, new_agent, peer)
    assert response.status_code == 200, response.content
    # No transaction block: the key's row, then one statement (coordination/echo_statement.py) that takes the
    # idempotency lock, checks the key and the agents, and inserts the message, its completed idempotency
    # record and its audit row, committed together. Two round trips to PostgreSQL in all.
    assert db.committed == []
    key_read, echo = db.autocommit
    assert key_read.startswith("SELECT") and '"agents_apikey"."prefix" = %s' in key_read
    assert echo.startswith("WITH gate AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(%s::bigint)")
    assert inserted_tables(echo) == ["coordination_messagelog", "coordination_idempotencyrecord", "audit_auditlog"]
