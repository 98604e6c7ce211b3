"""Which organization a request acts in. Every query of agent or user data goes through here."""

from rest_framework.exceptions import PermissionDenied

from agents.models import Membership
from brikk.lib.context import update_context

ORGANIZATION_HEADER = "X-Brikk-Organization"
SESSION_KEY = "brikk_organization_id"


def memberships_of(user):
    return Membership.objects.filter(user=user).select_related("organization").order_by("created_at")


def current_membership(request, user) -> Membership | None:
    """The user's membership for this request: the X-Brikk-Organization header, else the
    organization chosen in the session (dashboard), else the user's first organization."""
    memberships = list(memberships_of(user))
    header = request.headers.get(ORGANIZATION_HEADER)
    session = getattr(request, "session", None)
    wanted = header or (session.get(SESSION_KEY) if session is not None else None)
    if wanted:
        chosen = next((m for m in memberships if str(m.organization_id) == str(wanted)), None)
        if chosen is not None:
            return chosen
        if header:
            return None  # an explicit choice of an organization the user is not in
    return next(iter(memberships), None)


def resolve(request):
    """Set ``request.organization_id`` and ``request.membership`` (None for agents); 403 if none."""
    principal = request.user
    if getattr(principal, "kind", None) == "agent":
        request.organization_id = principal.organization_id
        request.membership = None
        return request.organization_id
    membership = current_membership(request, principal)
    if membership is None:
        raise PermissionDenied("You are not a member of this organization.")
    request.organization_id = str(membership.organization_id)
    request.membership = membership
    update_context(organization_id=request.organization_id)
    return request.organization_id


class OrganizationScopedMixin:
    """For API views: ``queryset`` narrowed to the request's organization (set by the permission
    classes through ``resolve``); empty while drf-spectacular generates the schema without a request."""

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset.none()
        return self.queryset.filter(organization_id=self.request.organization_id)
