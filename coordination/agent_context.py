"""What the coordination layers need to know about an authenticated agent, cached.

One cache entry per agent holds its *encrypted* signing secrets (never plaintext) and its
organization's rate limits, so a signed, rate-limited request needs no database read. Saving an
Agent or an Organization invalidates the entries (signals in coordination.apps), after commit.
"""

from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from agents import crypto
from agents.models import Agent

CACHE_NAMESPACE = "coord:agent:v1:"


@dataclass(frozen=True)
class AgentContext:
    agent_id: str
    organization_id: str
    signing_secret_encrypted: str
    previous_signing_secret_encrypted: str
    previous_signing_secret_expires_at: str | None
    rate_limit_agent_per_minute: int | None
    rate_limit_org_per_minute: int | None

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets a signature may use: the current one, and the previous one until it expires."""
        secrets = [crypto.decrypt(self.signing_secret_encrypted)]
        if self.previous_signing_secret_encrypted and self.previous_signing_secret_expires_at:
            expires_at = datetime.fromisoformat(self.previous_signing_secret_expires_at)
            if (now or timezone.now()) < expires_at:
                secrets.append(crypto.decrypt(self.previous_signing_secret_encrypted))
        return secrets


def _cache_key(agent_id) -> str:
    return f"{CACHE_NAMESPACE}{agent_id}"


def load(agent_id) -> AgentContext:
    cached = cache.get(_cache_key(agent_id))
    if cached is not None:
        return AgentContext(**cached)
    agent = Agent.objects.select_related("organization").get(pk=agent_id)
    expires = agent.previous_signing_secret_expires_at
    context = AgentContext(
        agent_id=str(agent.pk),
        organization_id=str(agent.organization_id),
        signing_secret_encrypted=agent.signing_secret_encrypted,
        previous_signing_secret_encrypted=agent.previous_signing_secret_encrypted,
        previous_signing_secret_expires_at=expires.isoformat() if expires else None,
        rate_limit_agent_per_minute=agent.organization.rate_limit_agent_per_minute,
        rate_limit_org_per_minute=agent.organization.rate_limit_org_per_minute,
    )
    if settings.BRIKK_API_KEY_CACHE_SECONDS:
        cache.set(_cache_key(agent_id), asdict(context), settings.BRIKK_API_KEY_CACHE_SECONDS)
    return context


def invalidate(*agent_ids) -> None:
    """Drop the entries now and again after commit, so a concurrent reader cannot re-cache stale rows."""
    keys = [_cache_key(agent_id) for agent_id in agent_ids]
    if not keys:
        return
    cache.delete_many(keys)
    transaction.on_commit(lambda: cache.delete_many(keys))


def on_agent_saved(sender, instance, **kwargs):
    invalidate(instance.pk)


def on_organization_saved(sender, instance, **kwargs):
    invalidate(*Agent.objects.filter(organization_id=instance.pk).values_list("pk", flat=True))
