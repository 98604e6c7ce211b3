from rest_framework import permissions

from agents import scoping


class OrganizationRole(permissions.BasePermission):
    """Members and agents may read within their organization; owners and admins may write."""

    message = "Your role in this organization does not allow this change."

    def has_permission(self, request, view):
        scoping.resolve(request)
        if request.method in permissions.SAFE_METHODS:
            return True
        membership = request.membership
        return membership is not None and membership.can_write


class InOrganization(permissions.IsAuthenticated):
    """An authenticated agent, or a user acting in one of their organizations (scoping.resolve)."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        scoping.resolve(request)
        return True


class MaySendAsAgent(InOrganization):
    """Sending a message: an agent sends as itself; a user sends as an agent of the organization only as
    its owner or admin. Members read; they never send (403 forbidden)."""

    message = "Members may read; sending as an agent needs the owner or admin role."

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        return request.membership is None or request.membership.can_write
