from django.apps import AppConfig
from django.db.models.signals import post_save


class CoordinationConfig(AppConfig):
    name = "coordination"
    verbose_name = "Coordination"

    def ready(self):
        from agents.models import Agent, Organization
        from coordination import agent_context, openapi  # noqa: F401 - registers the schema extensions

        post_save.connect(agent_context.on_agent_saved, sender=Agent, dispatch_uid="coord-agent-context-agent")
        post_save.connect(
            agent_context.on_organization_saved, sender=Organization, dispatch_uid="coord-agent-context-org"
        )
