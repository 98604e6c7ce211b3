from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self):
        from agents import metrics, openapi  # noqa: F401 - openapi registers the authentication schemes
        from audit.services import audit_recorded

        audit_recorded.connect(metrics.observe, dispatch_uid="agents-metrics")
