"""The dashboard is an installed app; each live panel is a named partial of its page's template."""

import pytest
from django.apps import apps
from django.template.loader import get_template


def test_the_dashboard_is_an_installed_app():
    config = apps.get_app_config("dashboard")
    assert (config.name, config.verbose_name) == ("brikk.dashboard", "Dashboard")


@pytest.mark.parametrize(
    "name",
    [
        "dashboard/overview.html#overview_live",
        "dashboard/agents.html#agent_table",
        "dashboard/messages.html#message_table",
    ],
)
def test_each_live_panel_is_a_partial_of_its_page(name):
    assert get_template(name).template.name == name.partition("#")[2]
