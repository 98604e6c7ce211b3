"""Push endpoints (Standard Webhooks 1.0): their signing secrets and their disabling.

A secret is ``whsec_`` + base64 of 32 random bytes, shown once and stored encrypted (agents.crypto, as the
agents' signing secrets). After a rotation the previous secret keeps signing — a second signature in the
``webhook-signature`` header — until ``previous_secret_expires_at``.
"""

import base64
import secrets
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from agents import crypto
from audit.actions import AuditAction
from audit.services import record
from coordination import wakeup
from coordination.models import MessageLog, PushEndpoint

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signing_secrets(endpoint: PushEndpoint, now: datetime | None = None) -> list[str]:
    """The secrets a push to ``endpoint`` is signed with: the current one, and the previous one during its
    grace period. Plaintext: use them to sign, never log or store them."""
    now = now or timezone.now()
    found = [crypto.decrypt(endpoint.secret_encrypted)]
    expires_at = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires_at is not None and now < expires_at:
        found.append(crypto.decrypt(endpoint.previous_secret_encrypted))
    return found


def return_to_inbox(agent_id, *, now: datetime | None = None) -> int:
    """The agent's messages waiting for a push retry become receivable from its inbox at once."""
    now = now or timezone.now()
    returned = MessageLog.objects.filter(
        recipient_id=agent_id, delivery_state=MessageLog.Delivery.QUEUED, available_at__gt=now
    ).update(available_at=now, updated_at=now)
    if returned:
        wakeup.announce(agent_id)
    return returned


def disable(
    endpoint: PushEndpoint,
    reason: str,
    *,
    actor_kind: str = "system",
    actor_id: str = "push-dispatcher",
    details: dict | None = None,
    now: datetime | None = None,
) -> bool:
    """Disable ``endpoint`` (audited once; False if it was already disabled) and return its agent's waiting
    messages to the pull inbox."""
    now = now or timezone.now()
    with transaction.atomic():
        changed = PushEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
            enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now
        )
        if not changed:
            return False
        returned = return_to_inbox(endpoint.agent_id, now=now)
        record(
            AuditAction.PUSH_ENDPOINT_DISABLED,
            organization_id=endpoint.organization_id,
            actor_kind=actor_kind,
            actor_id=actor_id,
            resource_kind="push_endpoint",
            resource_id=endpoint.pk,
            details={"reason": reason, "agent_id": str(endpoint.agent_id), "returned_to_inbox": returned}
            | (details or {}),
        )
    endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
    return True
