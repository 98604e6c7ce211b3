from django.core.management.base import BaseCommand, CommandError

from agents import services
from agents.management.commands._helpers import get_user
from agents.models import Organization
from brikk.lib.context import update_context


class Command(BaseCommand):
    help = "Create an organization, optionally with an existing user as its owner."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--slug", help="URL-safe identifier; derived from the name by default.")
        parser.add_argument("--owner", help="Username of an existing user to make owner.")

    def handle(self, *args, name, slug, owner, **options):
        update_context(actor_kind="system", actor_id="manage.py")
        owner_user = get_user(owner) if owner else None
        if Organization.objects.filter(slug=slug).exists() if slug else False:
            raise CommandError(f"An organization with slug {slug!r} already exists.")
        organization = services.create_organization(name, slug=slug, owner=owner_user)
        self.stdout.write(
            self.style.SUCCESS(f"Created organization {organization.name} ({organization.slug}, id {organization.pk}).")
        )
