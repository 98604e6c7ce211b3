import os
import secrets
import shlex
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from agents import services
from agents.models import Membership, Organization
from brikk.lib.context import update_context

DEMO_SLUG = "demo"
DEMO_USERNAME = "demo"
DEFAULT_URL = "http://localhost:8000/"


def manage_command(*args: str) -> str:
    """How to run ``manage.py <args>`` the way this command was run (same interpreter, same debug flag),
    so that a printed hint works when pasted into the same shell."""
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd() + os.sep) else "python"
    prefix = "DJANGO_DEBUG=true " if settings.DEBUG else ""
    return prefix + shlex.join([python, "manage.py", *args])


class Command(BaseCommand):
    help = (
        "Seed a demo organization, a staff user and two agents (keys printed once). The user's password is "
        "printed when the user is created and kept on later runs unless --password or --reset-password is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password", help="Set the demo user's password to this one.")
        parser.add_argument(
            "--reset-password", action="store_true", help="Give an existing demo user a new generated password."
        )
        parser.add_argument("--url", default=DEFAULT_URL, help="Where the server answers (printed).")

    def handle(self, *args, password, reset_password, url, **options):
        update_context(actor_kind="system", actor_id="manage.py")
        User = get_user_model()
        with transaction.atomic():
            organization = Organization.objects.filter(slug=DEMO_SLUG).first()
            if organization is None:
                organization = services.create_organization("Demo Organization", slug=DEMO_SLUG)
            user, created = User.objects.get_or_create(username=DEMO_USERNAME, defaults={"email": "demo@example.com"})
            user.is_staff = True
            user.is_superuser = True
            # A new password logs every browser out (the session hash changes): only when asked or needed.
            if password is None and (created or reset_password or not user.has_usable_password()):
                password = secrets.token_urlsafe(12)
            if password is not None:
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
        for made in new_agents:
            self.stdout.write(f"Agent {made.agent.name} (id {made.agent.pk})")
            self.stdout.write(f"  API key:        {made.key.plaintext}")
            self.stdout.write(f"  Signing secret: {made.signing_secret}")
        if not new_agents:
            self.stdout.write("Demo agents already exist; a new API key for one of them:")
            self.stdout.write(f"  {manage_command('rotate_key', 'demo-sender', '--org', DEMO_SLUG)}")
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Log in at {url}"))
        self.stdout.write(f"  username: {user.username}")
        if password is not None:
            self.stdout.write(f"  password: {password}")
        else:
            self.stdout.write("  password: unchanged (the one printed when the demo user was created); a new one:")
            again = ["--reset-password"] + (["--url", url] if url != DEFAULT_URL else [])
            self.stdout.write(f"  {manage_command('seed_demo', *again)}")
