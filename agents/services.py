"""Domain operations on organizations, agents and keys; the API, dashboard and manage.py all call these."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from agents import crypto, keys
from agents.models import Agent, APIKey, Membership, Organization
from audit.actions import AuditAction
from audit.models import AuditLog
from audit.services import record


@dataclass(frozen=True)
class IssuedKey:
    """A key as issued: the plaintext exists only here, to be shown once."""

    api_key: APIKey
    plaintext: str


@dataclass(frozen=True)
class NewAgent:
    agent: Agent
    key: IssuedKey
    signing_secret: str


def _actor(user) -> dict:
    """Audit actor arguments for a user, or the request context's actor when None."""
    if user is None:
        return {}
    return {"actor_kind": AuditLog.ActorKind.USER, "actor_id": user.pk}


def _audit_agent(action: str, agent: Agent, *, request=None, user=None, details: dict | None = None) -> None:
    record(
        action,
        request=request,
        organization_id=agent.organization_id,
        resource_kind="agent",
        resource_id=agent.pk,
        details=details,
        **_actor(user),
    )


def create_organization(name: str, *, slug: str | None = None, owner=None) -> Organization:
    with transaction.atomic():
        organization = Organization.objects.create(name=name, slug=slug or slugify(name)[:64])
        if owner is not None:
            Membership.objects.create(user=owner, organization=organization, role=Membership.Role.OWNER)
        record(
            AuditAction.ORGANIZATION_CREATED,
            organization_id=organization.pk,
            resource_kind="organization",
            resource_id=organization.pk,
            details={"name": name},
        )
    return organization


def add_member(organization: Organization, user, role: str = Membership.Role.MEMBER) -> Membership:
    membership, _ = Membership.objects.update_or_create(user=user, organization=organization, defaults={"role": role})
    return membership


def default_key_expiry():
    days = settings.BRIKK_API_KEY_DEFAULT_TTL_DAYS
    return timezone.now() + timedelta(days=days) if days else None


def issue_key(agent: Agent, *, expires_at=None) -> IssuedKey:
    plaintext, prefix, hashed = keys.generate()
    api_key = APIKey.objects.create(agent=agent, prefix=prefix, hashed_secret=hashed, expires_at=expires_at)
    return IssuedKey(api_key=api_key, plaintext=plaintext)


def create_agent(
    organization: Organization,
    *,
    name: str,
    owner=None,
    description: str = "",
    metadata: dict | None = None,
    status: str = Agent.Status.ACTIVE,
    key_expires_at=None,
    request=None,
) -> NewAgent:
    """Create an agent with its first API key and signing secret (both returned in clear, once)."""
    signing_secret = crypto.new_signing_secret()
    with transaction.atomic():
        agent = Agent.objects.create(
            organization=organization,
            owner=owner,
            name=name,
            description=description,
            metadata=metadata or {},
            status=status,
            signing_secret_encrypted=crypto.encrypt(signing_secret),
        )
        issued = issue_key(agent, expires_at=key_expires_at or default_key_expiry())
        _audit_agent(
            AuditAction.AGENT_CREATED,
            agent,
            request=request,
            details={"name": name, "key_prefix": issued.api_key.prefix},
        )
    return NewAgent(agent=agent, key=issued, signing_secret=signing_secret)


def update_agent(agent: Agent, *, request=None, user=None, **changes) -> Agent:
    """Change name, description, metadata or status."""
    old_status = agent.status
    for field, value in changes.items():
        setattr(agent, field, value)
    with transaction.atomic():
        agent.save()
        _audit_agent(
            AuditAction.AGENT_UPDATED,
            agent,
            request=request,
            user=user,
            details={"fields": sorted(changes), "status": agent.status, "previous_status": old_status},
        )
    return agent  # keys are checked against the database on every request: a status change applies at once


def soft_delete_agent(agent: Agent, *, request=None, user=None) -> Agent:
    """Mark the agent deleted and revoke its keys; the row stays for audit and message history."""
    now = timezone.now()
    with transaction.atomic():
        agent.status = Agent.Status.DELETED
        agent.deleted_at = now
        agent.save(update_fields=["status", "deleted_at", "updated_at"])
        agent.api_keys.filter(revoked_at__isnull=True).update(revoked_at=now)
        _audit_agent(AuditAction.AGENT_DELETED, agent, request=request, user=user, details={"name": agent.name})
    return agent


def rotate_key(agent: Agent, *, grace_seconds: int | None = None, request=None, user=None) -> IssuedKey:
    """Issue a new key; the agent's current keys keep working for the grace period, then expire."""
    if grace_seconds is None:
        grace_seconds = settings.BRIKK_API_KEY_ROTATION_GRACE_SECONDS
    now = timezone.now()
    with transaction.atomic():
        old_keys = list(agent.api_keys.select_for_update().filter(revoked_at__isnull=True).exclude(expires_at__lte=now))
        grace_end = now + timedelta(seconds=grace_seconds)
        for old in old_keys:
            old.rotated_at = now
            if grace_seconds:
                old.expires_at = min(old.expires_at, grace_end) if old.expires_at else grace_end
            else:
                old.revoked_at = now
            old.save(update_fields=["rotated_at", "expires_at", "revoked_at"])
        issued = issue_key(agent, expires_at=default_key_expiry())
        _audit_agent(
            AuditAction.KEY_ROTATED,
            agent,
            request=request,
            user=user,
            details={
                "new_key_prefix": issued.api_key.prefix,
                "old_key_prefixes": [old.prefix for old in old_keys],
                "grace_seconds": grace_seconds,
            },
        )
    return issued


def revoke_keys(agent: Agent, *, prefix: str | None = None, request=None, user=None) -> list[str]:
    """Revoke one key (by prefix) or all of an agent's keys at once. Returns the revoked prefixes."""
    now = timezone.now()
    with transaction.atomic():
        live = agent.api_keys.select_for_update().filter(revoked_at__isnull=True)
        if prefix is not None:
            live = live.filter(prefix=prefix)
        prefixes = list(live.values_list("prefix", flat=True))
        live.update(revoked_at=now)
        _audit_agent(AuditAction.KEY_REVOKED, agent, request=request, user=user, details={"key_prefixes": prefixes})
    return prefixes


def rotate_signing_secret(agent: Agent, *, grace_seconds: int | None = None, request=None, user=None) -> str:
    """A new signing secret; the previous one still verifies signatures for the grace period."""
    if grace_seconds is None:
        grace_seconds = settings.BRIKK_API_KEY_ROTATION_GRACE_SECONDS
    secret = crypto.new_signing_secret()
    with transaction.atomic():
        agent.previous_signing_secret_encrypted = agent.signing_secret_encrypted if grace_seconds else ""
        agent.previous_signing_secret_expires_at = (
            timezone.now() + timedelta(seconds=grace_seconds) if grace_seconds else None
        )
        agent.signing_secret_encrypted = crypto.encrypt(secret)
        agent.save(
            update_fields=[
                "signing_secret_encrypted",
                "previous_signing_secret_encrypted",
                "previous_signing_secret_expires_at",
                "updated_at",
            ]
        )
        _audit_agent(
            AuditAction.SIGNING_SECRET_ROTATED,
            agent,
            request=request,
            user=user,
            details={"grace_seconds": grace_seconds},
        )
    return secret
