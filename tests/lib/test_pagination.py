"""API cursors (brikk/lib/pagination.py): the server's own cursors walk every row; any other is a 400."""

from base64 import b64encode
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from audit.models import AuditLog
from tests.support.coordination import envelope, post_echo

pytestmark = pytest.mark.django_db

LISTS = ["/api/v1/agents/", "/api/v1/coordination/messages"]


def cursor_of(text: str) -> str:
    return quote(b64encode(text.encode()).decode())


TAMPERED = [
    "not-base64!",
    "%00",
    "%F2%89%BA%A9",  # not ASCII
    cursor_of("p=not-a-date"),
    cursor_of("p=2026-01-01"),  # a date without time zone
    cursor_of("p=2026-01-01 00:00:00"),  # naive
    cursor_of("p=0001-01-01 00:00:00+23:59"),  # out of range once in UTC
    cursor_of("p=2026-01-01 00:00:00+00:00\x00"),
    cursor_of("o=-1"),
    cursor_of("o=abc"),
    cursor_of("r=2"),
    cursor_of("x=1"),
    cursor_of("o=1&o=2"),
    cursor_of("garbage"),
]


@pytest.fixture
def client(client):
    client.raise_request_exception = False
    return client


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("cursor", TAMPERED)
def test_a_cursor_that_does_not_decode_is_a_400(client, new_agent, path, cursor):
    response = client.get(f"{path}?cursor={cursor}", HTTP_X_BRIKK_KEY=new_agent.key.plaintext)
    assert response.status_code in (400, 422), response.content  # 422 only for a NUL, refused by the guards
    body = response.json()
    assert set(body) == {"code", "message", "request_id", "details"}
    if response.status_code == 400:
        assert body["code"] == "protocol_error"
        assert body["details"] == {"reason": "invalid_cursor"}
    row = AuditLog.objects.filter(action="request.rejected").latest("created_at")
    # A cursor is checked after authentication (the caller is known); a NUL anywhere before it.
    assert row.actor_kind == ("agent" if response.status_code == 400 else "anonymous")


def test_the_servers_own_cursors_walk_every_row_both_ways(client, org, owner, make_agent, new_agent):
    peer = make_agent(org, name="peer", owner=owner)
    key = new_agent.key.plaintext
    sent = {post_echo(client, envelope(new_agent.agent, peer.agent), key=key).json()["id"] for _ in range(5)}
    seen, url, pages = [], "/api/v1/coordination/messages?page_size=2", 0
    while url:
        page = client.get(url, HTTP_X_BRIKK_KEY=key).json()
        seen += [message["id"] for message in page["results"]]
        url, pages = page["next"], pages + 1
        if url:
            assert parse_qs(urlsplit(url).query)["cursor"]
    assert set(seen) == sent and len(seen) == 5 and pages == 3
    first = client.get("/api/v1/coordination/messages?page_size=2", HTTP_X_BRIKK_KEY=key).json()
    second = client.get(first["next"], HTTP_X_BRIKK_KEY=key).json()
    back = client.get(second["previous"], HTTP_X_BRIKK_KEY=key).json()
    assert back["results"] == first["results"]
    assert client.get("/api/v1/agents/?cursor=", HTTP_X_BRIKK_KEY=key).status_code == 200  # empty: first page
