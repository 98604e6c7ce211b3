from django.contrib import admin

from agents.models import Agent, APIKey, Membership, Organization


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "rate_limit_agent_per_minute",
        "rate_limit_org_per_minute",
        "max_deliveries",
        "created_at",
    ]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


class APIKeyInline(admin.TabularInline):
    model = APIKey
    extra = 0
    can_delete = False
    fields = ["prefix", "created_at", "expires_at", "rotated_at", "revoked_at", "last_used_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False  # keys are issued through the API, dashboard or manage.py, shown once


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "status", "last_activity_at", "created_at"]
    list_filter = ["status", "organization"]
    search_fields = ["name", "id"]
    list_select_related = ["organization"]
    readonly_fields = ["id", "last_activity_at", "created_at", "updated_at", "deleted_at"]
    exclude = ["signing_secret_encrypted", "previous_signing_secret_encrypted"]
    inlines = [APIKeyInline]

    def has_add_permission(self, request):
        return False  # creation issues secrets that must be shown once: use the dashboard or manage.py

    def has_delete_permission(self, request, obj=None):
        # Agents are soft-deleted (agents.services.soft_delete_agent): the row stays for audit and message history,
        # and the messages that name it rely on that (coordination/models.py, loose foreign keys).
        return False
