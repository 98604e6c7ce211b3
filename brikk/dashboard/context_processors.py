"""Template context for every page that extends ``base.html``."""

from django.utils.functional import SimpleLazyObject

from brikk.dashboard.access import workspace_of


def workspace(request) -> dict:
    """The signed-in user's workspace, so that pages rendered outside the dashboard's views (Django's
    403 and 404 pages) keep the top bar and the tabs. A dashboard view has already resolved it
    (``dashboard_view``); otherwise it is looked up only if a template uses it."""
    resolved = getattr(request, "workspace", None)
    if resolved is not None:
        return {"workspace": resolved}

    def lookup():
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        return workspace_of(request)

    return {"workspace": SimpleLazyObject(lookup)}
