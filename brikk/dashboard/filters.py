"""The dashboard's filter forms, on top of the shared filter definitions (the coordination API's
MessageLogFilter, audit.filters.AuditLogFilter): the same filtering rules, plus what a form in a
browser needs.

A filter form's defaults ("Any status", "Any type", an empty search or date) are submitted as empty
values; to the dashboard they mean "no filter" for every field, so ``BlankMeansAny`` drops them
before any field sees them (a choice field would otherwise refuse "" as "Select a valid choice")."""

import django_filters
from django import forms
from django.db.models import Q
from django.http import QueryDict

from agents.models import Agent
from audit.filters import AuditLogFilter
from coordination.filters import MessageLogFilter


def without_blanks(data) -> QueryDict | None:
    """``data`` without empty (or blank) values; None when nothing is left, so the filter is unbound."""
    if data is None:
        return None
    kept = QueryDict(mutable=True)
    for name, values in data.lists():
        values = [value for value in values if value.strip()]
        if values:
            kept.setlist(name, values)
    return kept or None


class BlankMeansAny:
    """A FilterSet mixin: a field submitted empty is not filtered on."""

    def __init__(self, data=None, *args, **kwargs):
        super().__init__(without_blanks(data), *args, **kwargs)


class DashboardMessageFilter(BlankMeansAny, MessageLogFilter):
    q = django_filters.CharFilter(
        method="search",
        label="Search",
        widget=forms.TextInput(attrs={"placeholder": "message id, correlation id or error text", "type": "search"}),
    )

    def __init__(self, *args, organization_id, **kwargs):
        super().__init__(*args, **kwargs)
        agents = Agent.objects.filter(organization_id=organization_id).order_by("name")
        self.agent_choices = [
            (str(agent.pk), f"{agent.name} (deleted)" if agent.status == Agent.Status.DELETED else agent.name)
            for agent in agents
        ]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        condition = Q(error__icontains=value) | Q(correlation_id=value) | Q(idempotency_key=value)
        try:
            as_uuid = forms.UUIDField().clean(value)
        except forms.ValidationError:
            return queryset.filter(condition)
        return queryset.filter(condition | Q(id=as_uuid) | Q(message_id=as_uuid))


class DashboardAuditFilter(BlankMeansAny, AuditLogFilter):
    pass
