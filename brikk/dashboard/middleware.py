from brikk.lib.middleware import BothModes


class DashboardReferrerPolicyMiddleware(BothModes):
    """``Referrer-Policy: same-origin`` for the dashboard's HTML pages.

    The site-wide ``no-referrer`` (SECURE_REFERRER_POLICY, which the API must send) makes browsers
    send ``Origin: null`` with form posts, which Django's CSRF origin check rightly refuses; so
    every dashboard form failed. ``same-origin`` still sends nothing to other sites. Placed after
    SecurityMiddleware, which only sets the header when a response has none.
    """

    @staticmethod
    def _mark(request, response):
        if not request.path.startswith("/api/"):
            response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    def handle(self, request):
        return self._mark(request, self.get_response(request))

    async def __acall__(self, request):
        return self._mark(request, await self.get_response(request))
