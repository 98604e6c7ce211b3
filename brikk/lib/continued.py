"""DRF views whose answer is finished on the event loop (the inbox's long poll and stream).

DRF is synchronous: the whole pipeline — request guards, authentication and HMAC, throttles, validation,
the error shape — runs as it does for every view, on a server thread. When such a view has to wait, it
returns its response with a ``continuation`` (an async callable taking and returning a response); the async
view here awaits it on the event loop, where waiting holds no thread. DRF renders the response afterwards
(its ``data`` may have been replaced meanwhile).
"""

import asyncio
import contextvars
import queue
import threading

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest


def continued_view(view_class, **initkwargs):
    drf_view = view_class.as_view(**initkwargs)

    async def view(request, *args, **kwargs):
        response = await sync_to_async(drf_view)(request, *args, **kwargs)
        continuation = getattr(response, "continuation", None)
        if continuation is None:
            return response
        return await continuation(response)

    # What drf-spectacular, the URL walkers of the tests and CsrfViewMiddleware read from DRF's own view.
    view.cls, view.initkwargs, view.csrf_exempt = drf_view.cls, drf_view.initkwargs, True
    view.__name__ = view.__qualname__ = view_class.__name__
    view.__doc__ = view_class.__doc__
    return view


class _Done:
    pass


class ThreadedStream:
    """An async iterator served by a WSGI server (runserver, gunicorn), chunk by chunk.

    Django serves an async iterator under WSGI by collecting all of it before it sends a byte — for an endless
    stream, nothing ever. Here it runs on an event loop in a thread of its own and each chunk is handed over as
    it comes; ``close()`` (the server calls it when the response ends or the client is gone) cancels it. Under
    WSGI a stream holds that thread and the server's: fine for development; production serves streams on ASGI.
    """

    def __init__(self, iterable):
        self._chunks: queue.SimpleQueue = queue.SimpleQueue()
        self._loop = asyncio.new_event_loop()
        # A context of its own: the request's would send the stream's thread-sensitive calls to the request's
        # thread (asgiref), which has finished with them by the time the stream runs.
        self._task = self._loop.create_task(self._pump(iterable), context=contextvars.Context())
        threading.Thread(target=self._loop.run_until_complete, args=(self._task,), daemon=True).start()

    async def _pump(self, iterable) -> None:
        try:
            async for chunk in iterable:
                self._chunks.put(chunk)
        except asyncio.CancelledError:
            pass
        except Exception as error:  # noqa: BLE001 - handed to the server's thread, raised there
            self._chunks.put(error)
        finally:
            self._chunks.put(_Done)

    def __iter__(self):
        return self

    def __next__(self):
        chunk = self._chunks.get()
        if chunk is _Done:
            raise StopIteration
        if isinstance(chunk, Exception):
            raise chunk
        return chunk

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._task.cancel)


def streaming_content(request, iterable):
    """What a StreamingHttpResponse should stream for this request: the async iterator itself under ASGI,
    a ThreadedStream of it under WSGI."""
    return iterable if isinstance(request, ASGIRequest) else ThreadedStream(iterable)
