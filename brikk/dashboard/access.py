"""Who is looking at the dashboard, and in which organization.

Every dashboard view is wrapped in ``dashboard_view``: it requires a login, resolves the current
organization the same way the API does (agents.scoping, session key ``brikk_organization_id``)
and refuses writes and the audit trail to roles that may not have them.
"""

from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from agents import scoping
from agents.models import Membership, Organization
from brikk.lib.context import update_context


@dataclass(frozen=True)
class Workspace:
    """The current organization of a dashboard request and what the user may do in it."""

    membership: Membership
    memberships: list[Membership]

    @property
    def organization(self) -> Organization:
        return self.membership.organization

    @property
    def organization_id(self):
        return self.membership.organization_id

    @property
    def role(self) -> str:
        return self.membership.role

    @property
    def can_write(self) -> bool:
        return self.membership.can_write

    @property
    def can_audit(self) -> bool:
        # The audit trail is for the organization's owners and admins, the same roles that may write.
        return self.membership.can_write


def workspace_of(request) -> Workspace | None:
    memberships = list(scoping.memberships_of(request.user))
    membership = scoping.current_membership(request, request.user)
    if membership is None:
        return None
    return Workspace(membership=membership, memberships=memberships)


def dashboard_view(*, write: bool = False, audit: bool = False):
    """Login required, organization resolved onto ``request.workspace``. ``write``: the view changes
    something (its forms and confirmations included), so owners and admins only; ``audit``: the audit
    trail, owners and admins only. Others get 403."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            workspace = workspace_of(request)
            if workspace is None:
                return render(request, "dashboard/no_organization.html", status=403)
            request.workspace = workspace
            request.organization_id = str(workspace.organization_id)
            update_context(organization_id=request.organization_id, actor_kind="user", actor_id=str(request.user.pk))
            if audit and not workspace.can_audit:
                raise PermissionDenied("The audit trail is for the organization's owners and admins.")
            if write and not workspace.can_write:
                raise PermissionDenied("Your role in this organization is read-only.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
