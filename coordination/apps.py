from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "coordination"
    verbose_name = "Coordination"

    def ready(self):
        from audit.services import audit_recorded
        from coordination import metrics, retention, wakeup

        retention.register()
        audit_recorded.connect(metrics.observe, dispatch_uid="coordination-metrics")
        if start_push_in_process not in wakeup.announced_hooks:
            wakeup.announced_hooks.append(start_push_in_process)


def start_push_in_process(recipient: str) -> None:
    """The embedded defaults push from this process (coordination/push.py, InProcess); imported only then."""
    from django.conf import settings

    if settings.BRIKK_PUSH_IN_PROCESS:
        from coordination import push

        push.on_announced(recipient)
