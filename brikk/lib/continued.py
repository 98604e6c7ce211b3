"""DRF views whose answer is finished on the event loop (the inbox's long poll and stream).

DRF is synchronous: the whole pipeline — request guards, authentication and HMAC, throttles, validation,
the error shape — runs as it does for every view, on a server thread. When such a view has to wait, it
returns its response with a ``continuation`` (an async callable taking and returning a response); the async
view here awaits it on the event loop, where waiting holds no thread. DRF renders the response afterwards
(its ``data`` may have been replaced meanwhile).
"""

from asgiref.sync import sync_to_async


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
