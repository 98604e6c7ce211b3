"""A database outage answers 503 with the JSON error body, on every path, never an HTML 500."""

import logging

from django.db import InterfaceError, OperationalError

from brikk.errors import json_error_view

logger = logging.getLogger("brikk.db")

DATABASE_ERRORS = (OperationalError, InterfaceError)

database_unavailable = json_error_view(503, "service_unavailable", "The database is unavailable; retry later.")


def unavailable_response(request):
    response = database_unavailable(request)
    response["Retry-After"] = "5"
    return response


class DatabaseUnavailableMiddleware:
    """Turns OperationalError/InterfaceError raised by a view into the JSON 503.

    Errors raised outside views (session or user loading in other middleware) reach Django's
    handler500, which ``brikk.views.server_error`` maps to the same response. DRF views map them
    in ``brikk.errors.exception_handler``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_ERRORS):
            logger.error("database unavailable: %s", exception.__class__.__name__)
            return unavailable_response(request)
        return None
