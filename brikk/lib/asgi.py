"""Django's ASGI handler with a fixed set of threads for the synchronous part of requests.

Django's own handler gives every request a thread of its own (a ThreadSensitiveContext) for its synchronous
work — middleware, DRF's authentication, database calls — kept until the response ends. For a request that
waits (a long poll, an open stream) that is an idle thread per waiting consumer: 1,000 consumers, 1,000
threads. Here each request runs its synchronous work on one of ``threads`` lanes, each a single thread (so a
request keeps Django's guarantee of one thread, and one database connection, for its synchronous calls);
waiting on the event loop holds none of them.
"""

import itertools
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler


class LanedASGIHandler(ASGIHandler):
    def __init__(self, threads: int):
        super().__init__()
        self.lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"asgi-lane-{n}") for n in range(threads)]
        self._turn = itertools.cycle(self.lanes)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # Django refuses it, as it always has
            return
        async with ThreadSensitiveContext(executor=next(self._turn)):
            await self.handle(scope, receive, send)


async def _lifespan(receive, send) -> None:
    """Nothing to set up or tear down; answering the protocol keeps servers from logging it as unsupported."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
