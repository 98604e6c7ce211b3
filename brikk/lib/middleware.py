"""Project-wide middleware: the correlation id of every request, and a JSON 503 for a database outage."""

import logging

from brikk.lib.context import RequestContext, accept_request_id, client_ip, reset_context, set_context, user_agent_of
from brikk.lib.errors import DATABASE_UNAVAILABLE_ERRORS, database_unavailable_response

REQUEST_ID_HEADER = "X-Request-ID"

logger = logging.getLogger("brikk.db")


class CorrelationIdMiddleware:
    """Gives each request a correlation id, exposes it as ``request.request_id`` and returns it.

    Runs first so that every log line and audit row of the request carries the id.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        token = set_context(
            RequestContext(
                request_id=request_id,
                client_ip=client_ip(request),
                user_agent=user_agent_of(request),
            )
        )
        try:
            response = self.get_response(request)
        finally:
            reset_context(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class DatabaseUnavailableMiddleware:
    """A database outage answers 503 with the JSON error body, on every path, never an HTML 500.

    Errors raised outside views (session or user loading in other middleware) reach Django's
    handler500, which ``brikk.views.server_error`` maps to the same response. DRF views map them
    in ``brikk.lib.errors.render_exception``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_UNAVAILABLE_ERRORS):
            logger.error("database unavailable: %s", exception.__class__.__name__)
            return database_unavailable_response(request)
        return None
