from audit.context import RequestContext, accept_request_id, reset_context, set_context
from audit.services import client_ip, user_agent_of

REQUEST_ID_HEADER = "X-Request-ID"


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
