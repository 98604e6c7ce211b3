"""Provisional MessageLogFilter for the dashboard; replaced by the coordination API's own on merge."""

import django_filters
from django.db.models import Q

from coordination.models import MessageLog


class MessageLogFilter(django_filters.FilterSet):
    agent = django_filters.UUIDFilter(method="filter_agent")
    status = django_filters.ChoiceFilter(choices=MessageLog.Status.choices)
    type = django_filters.ChoiceFilter(choices=MessageLog.Type.choices)
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = MessageLog
        fields = ["agent", "status", "type", "since", "until"]

    def filter_agent(self, queryset, name, value):
        return queryset.filter(Q(sender_id=value) | Q(recipient_id=value))
