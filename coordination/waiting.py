"""Consumers that wait: the long poll (``wait_seconds``) and the stream (Server-Sent Events).

Both run on the event loop of the ASGI server (brikk/asgi.py) and hold no thread and no database connection
while they wait: each database step runs on one of the server's threads and returns, and ``wakeup`` wakes
them when a message for their agent commits. Under a WSGI server they work too, holding that server's
thread (route /api/v1/inbox/ to the ASGI server in production: deploy/nginx.conf).
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from agents import keys
from coordination import inbox, leasing, wakeup

logger = logging.getLogger("brikk.inbox")


@dataclass(frozen=True)
class Request:
    """What a waiting consumer asked for, as its DRF view validated it."""

    agent_id: str
    organization_id: str
    max_messages: int
    lease_seconds: int
    consumer: leasing.Consumer


def step(function):
    """A database step of a waiting consumer, on a server thread: its connection goes back to the pool when
    the step ends, so that a thousand waiting consumers hold none."""

    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:  # only a test wraps a request in a transaction
                close_old_connections()

    return sync_to_async(run)


def _receive(ask: Request) -> tuple[list[dict], float | None]:
    """Lease what is available, else say when something will be without a write."""
    messages = inbox.receive(
        ask.agent_id,
        ask.organization_id,
        max_messages=ask.max_messages,
        lease_seconds=ask.lease_seconds,
        consumer=ask.consumer,
    )
    return messages, (None if messages else inbox.next_available_in(ask.agent_id))


async def receive(ask: Request, wait_seconds: float) -> list[dict]:
    """The long poll: messages as soon as one is available, or [] when ``wait_seconds`` end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    async with wakeup.subscription(ask.agent_id) as waiter:
        while True:
            messages, next_in = await step(_receive)(ask)
            remaining = deadline - loop.time()
            if messages or remaining <= 0:
                return messages
            await waiter.wait(remaining if next_in is None else min(remaining, next_in))


def event(message: dict) -> str:
    return f"id: {message['id']}\nevent: message\ndata: {json.dumps(message, separators=(',', ':'))}\n\n"


async def stream(ask: Request, identity: keys.KeyIdentity, last_event_id=None) -> AsyncIterator[str]:
    """The stream of ``events()``; a database failure once it is open (its status already sent) ends it with
    ``event: closed``, reason ``service_unavailable``: the client reconnects, as after any end."""
    try:
        async for chunk in events(ask, identity, last_event_id):
            yield chunk
    except DatabaseError as error:
        logger.warning("inbox stream ended: database unavailable (%s)", error.__class__.__name__)
        yield closed("service_unavailable")


async def events(ask: Request, identity: keys.KeyIdentity, last_event_id=None) -> AsyncIterator[str]:
    """Server-Sent Events: each message an event as soon as it is available, a comment as a heartbeat. Ends
    with ``event: closed`` when the key that opened it no longer authenticates (checked every
    BRIKK_STREAM_KEY_CHECK_SECONDS; the client's reconnect then gets the 401) or after BRIKK_STREAM_MAX_SECONDS
    (the client reconnects, with Last-Event-ID). An idle stream looks at the inbox only when woken or when a
    lease or nack delay ends, never at a heartbeat: a thousand idle streams cost the database next to nothing."""
    heartbeat, key_check = settings.BRIKK_STREAM_HEARTBEAT_SECONDS, settings.BRIKK_STREAM_KEY_CHECK_SECONDS
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + settings.BRIKK_STREAM_MAX_SECONDS
    yield f"retry: 1000\n: stream for agent {ask.agent_id}\n\n"
    async with wakeup.subscription(ask.agent_id) as waiter:
        if last_event_id is not None:
            await step(inbox.release_stream_leases_after)(ask.agent_id, last_event_id)
        beat_at, check_key_at = loop.time() + heartbeat, loop.time() + key_check
        look, look_at = True, None
        while True:
            if loop.time() >= ends_at:
                yield closed("max_duration")
                return
            if look:
                messages, next_in = await step(_receive)(ask)
                for message in messages:
                    yield event(message)
                if messages:
                    continue
                look_at = None if next_in is None else loop.time() + next_in
            woken = await waiter.wait(min(beat_at, ends_at, look_at or ends_at) - loop.time())
            now = loop.time()
            look = woken or (look_at is not None and now >= look_at)
            if now < beat_at:
                continue
            if now >= check_key_at:
                if not await step(keys.still_valid)(identity):
                    yield closed("key_no_longer_valid")
                    return
                check_key_at = now + key_check
            yield ": heartbeat\n\n"
            beat_at = now + heartbeat


def closed(reason: str) -> str:
    return f'event: closed\ndata: {{"reason": "{reason}"}}\n\n'
