"""A webhook receiver for the push benchmark: answers every POST with 204 at once and writes
``<webhook-id> <arrival unix time>`` per request to stdout. Served by uvicorn:

    uvicorn bench.push_receiver:app --port 8122
"""

import sys
import time


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                sys.stdout.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return
    arrived = time.time()
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = dict(scope["headers"])
    webhook_id = headers.get(b"webhook-id", b"-").decode()
    sys.stdout.write(f"{webhook_id} {arrived:.6f}\n")
    sys.stdout.flush()  # the benchmark reads the arrivals while the run goes on
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
