from django.core.management.base import BaseCommand

from agents import services
from agents.management.commands._helpers import get_agent, get_organization
from brikk.lib.context import update_context


class Command(BaseCommand):
    help = "Rotate an agent's API key; the old key keeps working for the grace period. Prints the new key once."

    def add_arguments(self, parser):
        parser.add_argument("agent", help="Agent id or name.")
        parser.add_argument("--org", help="Organization slug or id, to disambiguate a name.")
        parser.add_argument("--grace-seconds", type=int, help="Default: BRIKK_API_KEY_ROTATION_GRACE_SECONDS.")

    def handle(self, *args, agent, org, grace_seconds, **options):
        update_context(actor_kind="system", actor_id="manage.py")
        target = get_agent(agent, get_organization(org) if org else None)
        issued = services.rotate_key(target, grace_seconds=grace_seconds)
        self.stdout.write(self.style.SUCCESS(f"Rotated the key of {target.name}."))
        self.stdout.write(f"API key: {issued.plaintext}")
