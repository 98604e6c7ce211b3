"""Push endpoints (Standard Webhooks 1.0): their URLs, signing secrets and lifecycle, and sending messages
again. The API (coordination/push_views.py), the dashboard and ``manage.py`` all go through these functions.

A secret is ``whsec_`` + base64 of 32 random bytes, shown once and stored encrypted (agents.crypto, as the
agents' signing secrets). After a rotation the previous secret keeps signing — a second signature in the
``webhook-signature`` header — until ``previous_secret_expires_at``.

An agent has at most one enabled endpoint (the constraint ``push_one_enabled_per_agent`` backs ``enable``).
A URL is checked by ``check_url``: https (http only with BRIKK_WEBHOOK_ALLOW_HTTP), no user info, and a host
whose every address is public or in BRIKK_WEBHOOK_ALLOWED_NETWORKS (brikk/lib/addresses.py). The dispatcher
checks the address again when it connects (DNS rebinding).
"""

import base64
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import crypto
from agents.models import Agent
from audit.actions import AuditAction
from audit.services import record
from brikk.lib import addresses
from coordination import inbox, wakeup
from coordination.exceptions import Conflict
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


# --- URLs: no server-side request forgery ----------------------------------------------------------------

URL_MAX_LENGTH = PushEndpoint._meta.get_field("url").max_length


def allowed_networks() -> list[addresses.IPNetwork]:
    return addresses.parse_networks(settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS)


def address_class(address: addresses.IPAddress) -> str:
    """What kind of address a refused one is, in words (for the refusal's message)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return f"an IPv4-mapped IPv6 address (of {mapped}, {address_class(mapped)})"
    for test, words in (
        ("is_unspecified", "the unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (cloud metadata services live there)"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    ):
        if getattr(address, test):
            return words
    if address.version == 4 and address in ipaddress.ip_network("100.64.0.0/10"):
        return "a shared (carrier-grade NAT) address"
    return "not a public address"


def check_url(url: str) -> str:
    """``url`` if a push may go there, else Django's ValidationError naming why (code ``url_refused``): https
    only (http too with BRIKK_WEBHOOK_ALLOW_HTTP), no user info, a host, and every address the host resolves
    to now public or in BRIKK_WEBHOOK_ALLOWED_NETWORKS. Literal addresses in any spelling (``127.1``,
    ``2130706433``, ``[::ffff:127.0.0.1]``) are what the resolver makes of them, so they are caught too."""

    def refuse(message: str):
        raise ValidationError(message, code="url_refused")

    if not isinstance(url, str) or not url.strip():
        refuse("Enter the endpoint's URL.")
    if len(url) > URL_MAX_LENGTH:
        refuse(f"The URL is longer than {URL_MAX_LENGTH} characters.")
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        refuse("The URL may not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        refuse("This is not a valid URL.")
    schemes = ("https", "http") if settings.BRIKK_WEBHOOK_ALLOW_HTTP else ("https",)
    if parts.scheme.lower() not in schemes:
        refuse("The URL must start with https:// (plain http only where BRIKK_WEBHOOK_ALLOW_HTTP allows it).")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        refuse("The URL may not carry a user name or password; put credentials in the path or rely on the signature.")
    host = parts.hostname
    if not host:
        refuse("The URL has no host.")
    if parts.fragment:
        refuse("The URL may not have a #fragment: it is never sent.")
    try:
        addresses.resolve(host, port or (443 if parts.scheme.lower() == "https" else 80), allowed_networks())
    except addresses.AddressRefused as refused:
        if refused.address is None:
            refuse(f"{host} does not resolve to an address.")
        address = ipaddress.ip_address(refused.address.split("%", 1)[0])
        shown = host if host == str(address) else f"{host} resolves to {address}, which"
        refuse(
            f"{shown} is {address_class(address)}: pushes go only to public addresses "
            "(an operator can open a range with BRIKK_WEBHOOK_ALLOWED_NETWORKS)."
        )
    return url


def _check_url_field(url: str) -> None:
    """check_url, its refusal named under ``url`` (a form's field, the API's ``details.url``)."""
    try:
        check_url(url)
    except ValidationError as refused:
        raise ValidationError({"url": refused.error_list}) from None


def _host_of(url: str) -> str:
    """What an audit row says of a URL: its host, never its path or query (which may carry a token)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


# --- Lifecycle --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedSecret:
    """An endpoint with its new secret in clear: shown once, never stored or logged."""

    endpoint: PushEndpoint
    secret: str


def _audit(action: str, endpoint: PushEndpoint, *, actor_id, details: dict | None = None) -> None:
    record(
        action,
        organization_id=endpoint.organization_id,
        actor_kind="user",
        actor_id=str(actor_id),
        resource_kind="push_endpoint",
        resource_id=endpoint.pk,
        details={"agent_id": str(endpoint.agent_id), "host": _host_of(endpoint.url)} | (details or {}),
    )


def _one_enabled_conflict(agent_id) -> Conflict:
    return Conflict(
        "This agent already has an enabled push endpoint; disable it first (an agent has at most one).",
        details={"agent_id": str(agent_id)},
    )


def _save_enabled(endpoint: PushEndpoint, **save_kwargs) -> None:
    """Save an enabled endpoint; the partial unique constraint refuses a second one (409), also under races."""
    try:
        with transaction.atomic():
            endpoint.save(**save_kwargs)
    except IntegrityError:
        raise _one_enabled_conflict(endpoint.agent_id) from None


def create(agent: Agent, url: str, description: str = "", *, actor_id, enabled: bool = True) -> IssuedSecret:
    """A new endpoint for ``agent`` (enabled unless asked otherwise) and its secret, shown once."""
    _check_url_field(url)
    secret = new_secret()
    endpoint = PushEndpoint(
        organization_id=agent.organization_id,
        agent=agent,
        url=url,
        description=description,
        enabled=enabled,
        disabled_reason="" if enabled else PushEndpoint.DisabledReason.MANUAL,
        disabled_at=None if enabled else timezone.now(),
        secret_encrypted=crypto.encrypt(secret),
    )
    with transaction.atomic():
        if enabled and PushEndpoint.objects.filter(agent_id=agent.pk, enabled=True).exists():
            raise _one_enabled_conflict(agent.pk)
        _save_enabled(endpoint, force_insert=True)
        _audit(AuditAction.PUSH_ENDPOINT_CREATED, endpoint, actor_id=actor_id, details={"enabled": enabled})
    if enabled:
        wakeup.announce_everywhere(agent.pk)  # messages already waiting for the agent are pushed now
    return IssuedSecret(endpoint=endpoint, secret=secret)


def update(endpoint: PushEndpoint, *, actor_id, **changes) -> PushEndpoint:
    """Change the URL (checked again) or the description."""
    changes = {name: value for name, value in changes.items() if getattr(endpoint, name) != value}
    unknown = set(changes) - {"url", "description"}
    if unknown:
        raise ValueError(f"Not changeable: {sorted(unknown)}")
    if not changes:
        return endpoint
    if "url" in changes:
        _check_url_field(changes["url"])
    previous_host = _host_of(endpoint.url)
    for name, value in changes.items():
        setattr(endpoint, name, value)
    with transaction.atomic():
        endpoint.save(update_fields=[*changes, "updated_at"])
        details = {"fields": sorted(changes)}
        if "url" in changes:
            details["previous_host"] = previous_host
        _audit(AuditAction.PUSH_ENDPOINT_UPDATED, endpoint, actor_id=actor_id, details=details)
    return endpoint


def enable(endpoint: PushEndpoint, *, actor_id) -> bool:
    """Enable ``endpoint`` (False if it already was); 409 ``conflict`` if the agent has another enabled one.
    Its failure count starts afresh."""
    if endpoint.enabled:
        return False
    with transaction.atomic():
        if PushEndpoint.objects.filter(agent_id=endpoint.agent_id, enabled=True).exclude(pk=endpoint.pk).exists():
            raise _one_enabled_conflict(endpoint.agent_id)
        previous_reason = endpoint.disabled_reason
        endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = True, "", None
        endpoint.failing_since = None
        _save_enabled(
            endpoint, update_fields=["enabled", "disabled_reason", "disabled_at", "failing_since", "updated_at"]
        )
        _audit(
            AuditAction.PUSH_ENDPOINT_ENABLED, endpoint, actor_id=actor_id, details={"previous_reason": previous_reason}
        )
    wakeup.announce_everywhere(endpoint.agent_id)  # its waiting messages are pushed now: wake the dispatchers
    return True


def disable_by_person(endpoint: PushEndpoint, *, actor_id) -> bool:
    """A person disables ``endpoint`` (reason ``manual``): its agent's waiting messages go to the pull inbox."""
    return disable(endpoint, PushEndpoint.DisabledReason.MANUAL, actor_kind="user", actor_id=str(actor_id))


def rotate_secret(endpoint: PushEndpoint, *, actor_id, now: datetime | None = None) -> IssuedSecret:
    """A new secret, shown once. The current one becomes the previous one and keeps signing (a second
    signature) for BRIKK_WEBHOOK_SECRET_GRACE_HOURS; with 0 hours it stops at once."""
    now = now or timezone.now()
    grace_hours = settings.BRIKK_WEBHOOK_SECRET_GRACE_HOURS
    secret = new_secret()
    with transaction.atomic():
        endpoint = PushEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted if grace_hours else ""
        endpoint.previous_secret_expires_at = now + timedelta(hours=grace_hours) if grace_hours else None
        endpoint.secret_encrypted = crypto.encrypt(secret)
        endpoint.save(
            update_fields=["secret_encrypted", "previous_secret_encrypted", "previous_secret_expires_at", "updated_at"]
        )
        _audit(
            AuditAction.PUSH_ENDPOINT_SECRET_ROTATED, endpoint, actor_id=actor_id, details={"grace_hours": grace_hours}
        )
    return IssuedSecret(endpoint=endpoint, secret=secret)


def delete(endpoint: PushEndpoint, *, actor_id) -> None:
    """Delete ``endpoint``; its attempts stay (without it). If it was enabled, its agent's waiting messages
    go to the pull inbox at once."""
    with transaction.atomic():
        was_enabled = PushEndpoint.objects.filter(pk=endpoint.pk, enabled=True).exists()
        returned = return_to_inbox(endpoint.agent_id) if was_enabled else 0
        _audit(
            AuditAction.PUSH_ENDPOINT_DELETED,
            endpoint,
            actor_id=actor_id,
            details={"was_enabled": was_enabled, "returned_to_inbox": returned},
        )
        PushEndpoint.objects.filter(pk=endpoint.pk).delete()


# --- Sending again ----------------------------------------------------------------------------------------

RESENDABLE = (MessageLog.Delivery.QUEUED, MessageLog.Delivery.ACKED, MessageLog.Delivery.DEAD)


def resend(message: MessageLog, *, actor_id, now: datetime | None = None) -> str:
    """Send one message to its recipient again: back to ``queued``, available now, its deliveries counted from
    0 and its ttl started again (``inbox.requeue``). For a queued, acked or dead message; 409 ``conflict`` for
    one leased to a consumer right now, or one that never entered an inbox. Returns its previous state."""
    now = now or timezone.now()
    with transaction.atomic():
        row = (
            MessageLog.objects.select_for_update()
            .filter(pk=message.pk)
            .values("delivery_state", "dead_reason", "delivery_count", "request_body", "recipient_id")
            .first()
        )
        state = row["delivery_state"] if row else ""
        if state == MessageLog.Delivery.LEASED:
            raise Conflict(
                "This message is leased to a consumer right now; resend it once it is acked or its lease ends."
            )
        if state not in RESENDABLE:
            raise Conflict("This message never entered an inbox (refused, failed or still being processed).")
        inbox.requeue([(message.pk, row["request_body"])], now=now)
        record(
            AuditAction.MESSAGE_RESENT,
            organization_id=message.organization_id,
            actor_kind="user",
            actor_id=str(actor_id),
            resource_kind="message",
            resource_id=message.pk,
            details={
                "previous_state": state,
                "previous_reason": row["dead_reason"],
                "delivery_count": row["delivery_count"],
                "recipient_id": str(row["recipient_id"]) if row["recipient_id"] else None,
            },
        )
        wakeup.announce(row["recipient_id"])
    return state


def recover(endpoint: PushEndpoint, since: datetime, *, actor_id, now: datetime | None = None) -> int:
    """Every message of the endpoint's agent dead-lettered with reason ``push_exhausted`` since ``since`` goes
    back to ``queued`` (as a redrive: deliveries from 0, ttl started again). One audit row with the count."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            MessageLog.objects.select_for_update()
            .filter(
                organization_id=endpoint.organization_id,
                recipient_id=endpoint.agent_id,
                delivery_state=MessageLog.Delivery.DEAD,
                dead_reason=MessageLog.DeadReason.PUSH_EXHAUSTED,
                dead_at__gte=since,
            )
            .values_list("pk", "request_body")
        )
        inbox.requeue(rows, now=now)
        _audit(
            AuditAction.PUSH_ENDPOINT_RECOVERED,
            endpoint,
            actor_id=actor_id,
            details={"since": since.isoformat(), "recovered": len(rows)},
        )
        if rows:
            wakeup.announce(endpoint.agent_id)
    return len(rows)
