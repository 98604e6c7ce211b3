from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from brikk.lib.admin import ReadOnlyLargeTableAdmin
from coordination.models import MessageLog


@admin.register(MessageLog)
class MessageLogAdmin(ReadOnlyLargeTableAdmin):
    """Read-only: a message log is evidence of what was asked and answered."""

    list_display = ["created_at", "id", "organization", "sender", "recipient", "type", "status", "http_status", "audit"]
    list_filter = ["status", "type", "organization", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=id", "=message_id", "=correlation_id"]
    search_help_text = "Exact message log id, envelope message_id or correlation id."
    list_select_related = ["organization", "sender", "recipient"]
    readonly_fields = [field.name for field in MessageLog._meta.fields] + ["audit"]

    @admin.display(description="audit rows")
    def audit(self, obj):
        if not obj.correlation_id:
            return "-"
        url = reverse("admin:audit_auditlog_changelist") + f"?q={obj.correlation_id}"
        return format_html('<a href="{}">audit</a>', url)
