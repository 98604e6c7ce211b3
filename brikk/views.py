"""Project-level error pages: JSON for the API, plain pages elsewhere; liveness and readiness."""

import sys

from django.http import JsonResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.views import defaults

from brikk.lib.errors import DATABASE_UNAVAILABLE_ERRORS, ErrorCode, database_unavailable_response, json_error_view

_api_not_found = json_error_view(404, ErrorCode.NOT_FOUND, "Not found.")
_api_server_error = json_error_view(500, ErrorCode.INTERNAL_ERROR, "An internal error occurred.")


def _is_api(request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def not_found(request, exception=None):
    if _is_api(request):
        return _api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request):
    # Called while the exception is being handled: a database outage anywhere is a JSON 503.
    if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE_ERRORS):
        return database_unavailable_response(request)
    if _is_api(request):
        return _api_server_error(request)
    return defaults.server_error(request)


def favicon(request):
    """Browsers ask for /favicon.ico on pages that name no icon (the admin, Swagger UI): the dashboard's."""
    return redirect(static("favicon.svg"), permanent=True)


def healthz(request):
    """Liveness: the process answers. No database, cache or broker is touched."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: database, Redis and task broker, each with status and latency (brikk.health)."""
    from brikk import health

    report = health.readiness()
    return JsonResponse(report.as_dict(), status=200 if report.ready else 503)
