"""Project-level error pages: JSON for the API, plain pages elsewhere."""

from django.http import JsonResponse
from django.views import defaults

from brikk.errors import json_error_view

_api_not_found = json_error_view(404, "not_found", "Not found.")
_api_server_error = json_error_view(500, "internal_error", "An internal error occurred.")


def _is_api(request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def not_found(request, exception=None):
    if _is_api(request):
        return _api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return _api_server_error(request)
    return defaults.server_error(request)


def healthz(request):
    """Liveness: the process answers. No database, cache or broker is touched."""
    return JsonResponse({"status": "ok"})
