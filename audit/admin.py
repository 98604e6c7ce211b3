from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from audit.actions import AuditAction
from audit.models import AuditLog
from brikk.lib.admin import ReadOnlyLargeTableAdmin

# Bulk deletion writes its LogEntry rows with bulk_create, which sends no signal, so it would escape
# the audit trail (audit.signals); deleting one object at a time is audited. Site-wide on purpose.
admin.site.disable_action("delete_selected")

MESSAGE_KINDS = {"message", "message_log", "messagelog"}


class ActionFilter(admin.SimpleListFilter):
    """Known actions, without a DISTINCT over millions of rows; any other ``?action=`` still filters."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return [(action.value, action.value) for action in AuditAction]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action=self.value())
        return queryset


def _admin_link(viewname: str, object_id: str, label: str):
    try:
        url = reverse(viewname, args=[object_id])
    except NoReverseMatch:
        return label
    return format_html('<a href="{}">{}</a>', url, label)


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyLargeTableAdmin):
    """Read-only browsing of the audit trail, for everyone including superusers; fast on millions of rows."""

    list_display = [
        "created_at",
        "action",
        "outcome",
        "actor_kind",
        "actor_id",
        "organization",
        "resource",
        "agent",
        "correlation_id",
        "sequence",
    ]
    list_filter = [
        ActionFilter,
        "outcome",
        "actor_kind",
        "organization",
        ("created_at", admin.DateFieldListFilter),
    ]
    # Exact matches use the indexes; a substring search would scan the whole table.
    search_fields = ["=correlation_id", "=resource_id", "=actor_id"]
    search_help_text = "Exact correlation id (X-Request-ID), resource id or actor id."
    list_select_related = ["organization"]
    readonly_fields = [field.name for field in AuditLog._meta.fields] + ["resource", "agent"]

    @admin.display(description="resource")
    def resource(self, obj):
        if not obj.resource_id:
            return obj.resource_kind or "-"
        label = f"{obj.resource_kind}:{obj.resource_id}"
        if obj.resource_kind in MESSAGE_KINDS:
            return _admin_link("admin:coordination_messagelog_change", obj.resource_id, label)
        if obj.resource_kind == "agent":
            return _admin_link("admin:agents_agent_change", obj.resource_id, label)
        return label

    @admin.display(description="agent")
    def agent(self, obj):
        """The agent involved: the acting agent, else the agent the event is about."""
        if obj.actor_kind == AuditLog.ActorKind.AGENT and obj.actor_id:
            return _admin_link("admin:agents_agent_change", obj.actor_id, obj.actor_id)
        if obj.resource_kind == "agent" and obj.resource_id:
            return _admin_link("admin:agents_agent_change", obj.resource_id, obj.resource_id)
        return "-"
