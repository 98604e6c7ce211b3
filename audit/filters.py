"""The one definition of how the audit trail is filtered (dashboard, and any API that lists it)."""

import django_filters
from django import forms
from django.db.models import Q

from audit.models import AuditLog
from brikk.lib.filters import IsoDateTimeFilter


class AuditLogFilter(django_filters.FilterSet):
    """Filters on an organization's audit rows; the caller scopes the queryset to the organization."""

    q = django_filters.CharFilter(
        method="search",
        label="Search",
        widget=forms.TextInput(attrs={"placeholder": "action, resource id, actor id or correlation id"}),
    )
    action = django_filters.CharFilter(lookup_expr="istartswith", label="Action")
    outcome = django_filters.ChoiceFilter(choices=AuditLog.Outcome.choices, empty_label="Any outcome")
    actor_kind = django_filters.ChoiceFilter(choices=AuditLog.ActorKind.choices, empty_label="Any actor", label="Actor")
    resource_kind = django_filters.CharFilter(label="Resource kind")
    since = IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        label="From",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    until = IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="lt",
        label="Until",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    class Meta:
        model = AuditLog
        fields = ["q", "action", "outcome", "actor_kind", "resource_kind", "since", "until"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(action__icontains=value) | Q(resource_id=value) | Q(actor_id=value) | Q(correlation_id=value)
        )
