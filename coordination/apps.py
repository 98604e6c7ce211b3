from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "coordination"
    verbose_name = "Coordination"

    def ready(self):
        from audit.services import audit_recorded
        from coordination import metrics, retention

        retention.register()
        audit_recorded.connect(metrics.observe, dispatch_uid="coordination-metrics")
