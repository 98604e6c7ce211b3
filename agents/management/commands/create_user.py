import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from agents import services
from agents.management.commands._helpers import get_organization
from agents.models import Membership


class Command(BaseCommand):
    help = "Create a user in an organization with a role; prints a generated password unless one is given."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--org", required=True, help="Organization slug or id.")
        parser.add_argument("--role", choices=Membership.Role.values, default=Membership.Role.MEMBER)
        parser.add_argument("--email", default="")
        parser.add_argument("--staff", action="store_true", help="May use the Django admin.")
        parser.add_argument("--password", help="Default: a generated one, printed once.")

    def handle(self, *args, username, org, role, email, staff, password, **options):
        organization = get_organization(org)
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} already exists.")
        password = password or secrets.token_urlsafe(12)
        user = User.objects.create_user(username=username, email=email, password=password, is_staff=staff)
        services.add_member(organization, user, role)
        self.stdout.write(self.style.SUCCESS(f"Created user {username} ({role} of {organization.slug})."))
        self.stdout.write(f"Password: {password}")
