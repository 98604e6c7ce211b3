class DashboardReferrerPolicyMiddleware:
    """``Referrer-Policy: same-origin`` for the dashboard's HTML pages.

    The site-wide ``no-referrer`` (SECURE_REFERRER_POLICY, which the API must send) makes browsers
    send ``Origin: null`` with form posts, which Django's CSRF origin check rightly refuses; so
    every dashboard form failed. ``same-origin`` still sends nothing to other sites. Placed after
    SecurityMiddleware, which only sets the header when a response has none.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith("/api/"):
            response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
