from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agents import rules, services
from agents.management.commands._helpers import get_organization, get_user
from brikk.lib.context import update_context


class Command(BaseCommand):
    help = "Create an agent; prints its API key and signing secret once."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--org", required=True, help="Organization slug or id.")
        parser.add_argument("--owner", help="Username of the owning user.")
        parser.add_argument("--description", default="")

    def handle(self, *args, name, org, owner, description, **options):
        update_context(actor_kind="system", actor_id="manage.py")
        organization = get_organization(org)
        try:
            rules.check_name_free(organization.pk, name)
        except ValidationError as error:
            raise CommandError(f"{name!r}: {' '.join(error.messages)}") from None
        created = services.create_agent(
            organization, name=name, owner=get_user(owner) if owner else None, description=description
        )
        self.stdout.write(self.style.SUCCESS(f"Created agent {name} (id {created.agent.pk})."))
        self.stdout.write(f"API key:        {created.key.plaintext}")
        self.stdout.write(f"Signing secret: {created.signing_secret}")
        self.stdout.write(self.style.WARNING("Store both now: they are shown only once."))
