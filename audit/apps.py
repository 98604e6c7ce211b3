from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self):
        from audit import metrics, signals  # noqa: F401 - signals connects the login and admin-change receivers
        from audit.services import audit_recorded

        audit_recorded.connect(metrics.observe, dispatch_uid="audit-metrics")
