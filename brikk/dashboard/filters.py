"""The dashboard's form on top of the coordination API's MessageLogFilter: the same filtering
rules, plus a search box and the organization's agents as choices."""

import django_filters
from django import forms
from django.db.models import Q

from agents.models import Agent
from coordination.filters import MessageLogFilter


class DashboardMessageFilter(MessageLogFilter):
    q = django_filters.CharFilter(
        method="search",
        label="Search",
        widget=forms.TextInput(attrs={"placeholder": "message id, correlation id or error text", "type": "search"}),
    )

    def __init__(self, *args, organization_id, **kwargs):
        super().__init__(*args, **kwargs)
        agents = Agent.objects.filter(organization_id=organization_id).order_by("name")
        self.agent_choices = [(str(agent.pk), agent.name) for agent in agents]

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
