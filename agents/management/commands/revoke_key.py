from django.core.management.base import BaseCommand

from agents import services
from agents.management.commands._helpers import get_agent, get_organization
from brikk.lib.context import update_context


class Command(BaseCommand):
    help = "Revoke an agent's API keys (all, or one by prefix) with immediate effect."

    def add_arguments(self, parser):
        parser.add_argument("agent", help="Agent id or name.")
        parser.add_argument("--org", help="Organization slug or id, to disambiguate a name.")
        parser.add_argument("--prefix", help="Revoke only the key with this prefix.")

    def handle(self, *args, agent, org, prefix, **options):
        update_context(actor_kind="system", actor_id="manage.py")
        target = get_agent(agent, get_organization(org) if org else None)
        revoked = services.revoke_keys(target, prefix=prefix)
        self.stdout.write(
            self.style.SUCCESS(
                f"Revoked {len(revoked)} {'key' if len(revoked) == 1 else 'keys'} of {target.name}: "
                f"{', '.join(revoked) or '-'}"
            )
        )
