import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from agents import services
from agents.models import Membership, Organization
from brikk.lib.context import update_context

DEMO_SLUG = "demo"
DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "Seed a demo organization, a staff user (password printed) and two agents (keys printed once)."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="Demo user's password; default: generated and printed.")

    def handle(self, *args, password, **options):
        update_context(actor_kind="system", actor_id="manage.py")
        User = get_user_model()
        password = password or secrets.token_urlsafe(12)
        with transaction.atomic():
            organization = Organization.objects.filter(slug=DEMO_SLUG).first()
            created_org = organization is None
            if created_org:
                organization = services.create_organization("Demo Organization", slug=DEMO_SLUG)
            user, _ = User.objects.get_or_create(username=DEMO_USERNAME, defaults={"email": "demo@example.com"})
            user.is_staff = True
            user.is_superuser = True
            user.set_password(password)
            user.save()
            services.add_member(organization, user, Membership.Role.OWNER)
            new_agents = []
            for name, description in (
                ("demo-sender", "Sends demo echoes."),
                ("demo-receiver", "Receives demo echoes."),
            ):
                if not organization.agents.live().filter(name__iexact=name).exists():
                    new_agents.append(
                        services.create_agent(organization, name=name, owner=user, description=description)
                    )

        self.stdout.write(self.style.SUCCESS(f"Demo organization: {organization.name} ({organization.slug})"))
        for created in new_agents:
            self.stdout.write(f"Agent {created.agent.name} (id {created.agent.pk})")
            self.stdout.write(f"  API key:        {created.key.plaintext}")
            self.stdout.write(f"  Signing secret: {created.signing_secret}")
        if not new_agents:
            self.stdout.write("Demo agents already exist; rotate their keys with: manage.py rotate_key demo-sender")
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Log in at http://localhost:8000/"))
        self.stdout.write(f"  username: {user.username}")
        self.stdout.write(f"  password: {password}")
