from django.contrib import admin

from audit.models import AuditLog


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    """Read-only browsing of the audit trail."""

    list_display = ["created_at", "action", "outcome", "actor_kind", "actor_id", "organization", "correlation_id"]
    list_filter = ["action", "outcome", "actor_kind"]
    search_fields = ["correlation_id", "resource_id", "actor_id"]
    list_select_related = ["organization"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
