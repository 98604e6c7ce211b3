from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The staff dashboard: views, forms and pagination here, templates in ``templates/dashboard/``."""

    name = "brikk.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"
