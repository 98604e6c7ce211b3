"""Message filters shared by the API list and the dashboard."""

import django_filters
from django.db.models import Q

from brikk.lib.filters import IsoDateTimeFilter
from coordination.models import MessageLog


class MessageLogFilter(django_filters.FilterSet):
    """?agent=<uuid> (sender or recipient), sender, recipient, status, type, since/until (created_at)."""

    agent = django_filters.UUIDFilter(method="filter_agent", label="Agent (sender or recipient)")
    sender = django_filters.UUIDFilter(field_name="sender_id")
    recipient = django_filters.UUIDFilter(field_name="recipient_id")
    status = django_filters.MultipleChoiceFilter(choices=MessageLog.Status.choices)
    type = django_filters.MultipleChoiceFilter(choices=MessageLog.Type.choices)
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    correlation_id = django_filters.CharFilter(field_name="correlation_id")

    class Meta:
        model = MessageLog
        fields = ["agent", "sender", "recipient", "status", "type", "since", "until", "correlation_id"]

    def filter_agent(self, queryset, name, value):
        return queryset.filter(Q(sender_id=value) | Q(recipient_id=value))


class DeadLetterFilter(django_filters.FilterSet):
    """?recipient=<uuid>, sender, reason (expired, max_deliveries)."""

    sender = django_filters.UUIDFilter(field_name="sender_id")
    recipient = django_filters.UUIDFilter(field_name="recipient_id")
    reason = django_filters.ChoiceFilter(field_name="dead_reason", choices=MessageLog.DeadReason.choices)

    class Meta:
        model = MessageLog
        fields = ["sender", "recipient", "reason"]
