from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self):
        from agents import keys, metrics
        from agents.models import Agent, APIKey, Organization
        from audit.services import audit_recorded

        audit_recorded.connect(metrics.observe, dispatch_uid="agents-metrics")

        # A cached key identity carries fields of all three rows: any change drops it at once.
        post_save.connect(keys.on_api_key_changed, sender=APIKey, dispatch_uid="keys-cache-key-saved")
        post_delete.connect(keys.on_api_key_changed, sender=APIKey, dispatch_uid="keys-cache-key-deleted")
        post_save.connect(keys.on_agent_saved, sender=Agent, dispatch_uid="keys-cache-agent")
        post_save.connect(keys.on_organization_saved, sender=Organization, dispatch_uid="keys-cache-org")
