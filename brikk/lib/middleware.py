"""Project-wide middleware: the correlation id of every request, and a JSON 503 for a database outage."""

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware

from brikk.lib.context import RequestContext, accept_request_id, client_ip, reset_context, set_context, user_agent_of
from brikk.lib.errors import DATABASE_UNAVAILABLE_ERRORS, database_unavailable_response

REQUEST_ID_HEADER = "X-Request-ID"


class BothModes:
    """A middleware that runs natively under WSGI and ASGI alike: under ASGI a synchronous-only middleware
    would put everything after it, waiting views included, on a thread (Django's adaptation)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return self.handle(request)

    def handle(self, request):
        return self.get_response(request)

    async def __acall__(self, request):
        return await self.get_response(request)


logger = logging.getLogger("brikk.db")


class CorrelationIdMiddleware(BothModes):
    """Gives each request a correlation id, exposes it as ``request.request_id`` and returns it.

    Runs first so that every log line and audit row of the request carries the id.
    """

    @staticmethod
    def _begin(request):
        request.request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        return set_context(
            RequestContext(
                request_id=request.request_id,
                client_ip=client_ip(request),
                user_agent=user_agent_of(request),
            )
        )

    def handle(self, request):
        token = self._begin(request)
        try:
            response = self.get_response(request)
        finally:
            reset_context(token)
        response[REQUEST_ID_HEADER] = request.request_id
        return response

    async def __acall__(self, request):
        token = self._begin(request)
        try:
            response = await self.get_response(request)
        finally:
            reset_context(token)
        response[REQUEST_ID_HEADER] = request.request_id
        return response


class DatabaseUnavailableMiddleware(BothModes):
    """A database outage answers 503 with the JSON error body, on every path, never an HTML 500.

    Errors raised outside views (session or user loading in other middleware) reach Django's
    handler500, which ``brikk.views.server_error`` maps to the same response. DRF views map them
    in ``brikk.lib.errors.render_exception``.
    """

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_UNAVAILABLE_ERRORS):
            logger.error("database unavailable: %s", exception.__class__.__name__)
            return database_unavailable_response(request)
        return None


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise (static files, compressed and cached forever) under WSGI and ASGI: WhiteNoise 6's
    middleware is synchronous only. Under ASGI a path that is no static file costs one dictionary lookup
    (a file-system look-up with autorefresh, in development) before the rest of the chain, on the loop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None):
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)
