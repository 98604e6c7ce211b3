"""The batch send, ``POST /api/v1/coordination/batch``: up to 100 envelopes in one request, each answered on its own.

Each envelope is exactly the echo's and meets the echo's rules on its own, in the echo's order: idempotency
by its ``message_id`` (the echo's scope and key), validation, authorization. The partial-failure rule:

- every envelope accepted is delivered as a synchronous echo delivers it (queued in its recipient's inbox,
  ``expires_at`` from ``ttl_ms``, linked to what it replies to), and all of them are committed together in ONE
  durable transaction with their idempotency records and their audit rows (``echo.delivered``, one per
  message), before the answer;
- an envelope refused delivers nothing and is answered with the error the echo would give; like a refused
  echo it is kept as evidence, a rejected MessageLog row and its audit row (``echo.rejected``,
  ``idempotency.conflict``), written in the same transaction;
- an envelope already sent (a stored idempotency record of its key with the same fingerprint) is answered
  ``replayed`` with its original id, audited ``idempotency.replayed``.

A ``message_id`` repeated within one batch is taken as if the envelopes came one after another: the first
is sent, a later one with the same fingerprint is ``replayed`` (the first's id), with another fingerprint
refused ``idempotency_key_reused``.

Whatever the batch's size, it costs the same round trips: one read of every agent the envelopes name, one of
the idempotency records of every key, then one INSERT each for the messages (rejected rows included), the
idempotency records and the audit rows. The unique constraints are the backstop against a concurrent sender
of the same keys: a violation rolls the whole batch back, and it is run again once the winner committed
(its records make those items ``replayed``); rows are inserted in key order, so two batches never deadlock.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from rest_framework import exceptions, serializers

from agents.models import Agent
from audit.actions import AuditAction
from audit.refusals import REFUSAL_ACTIONS
from audit.services import record, record_many
from brikk.lib import bulk
from brikk.lib.errors import render_exception
from coordination import echo, idempotency, refusals, wakeup
from coordination.answers import delivery_fields
from coordination.exceptions import IdempotencyInProgress, IdempotencyKeyReused, MessageIdReused
from coordination.messages import Caller, agent_ref, audit_event, message_uuid
from coordination.models import IdempotencyRecord, MessageLog
from coordination.serializers import clearly_valid_envelope
from coordination.throttling import MAX_BATCH_MESSAGES

logger = logging.getLogger("brikk.coordination")

MAX_MESSAGES = MAX_BATCH_MESSAGES
# A batch that loses a race on a key is run again; a third loss in a row is answered 409 (retry shortly).
ATTEMPTS = 3

DELIVERED, REPLAYED, REFUSED = "delivered", "replayed", "refused"
NO_IDEMPOTENCY_KEY = "Not taken by the batch send: each envelope's message_id is its idempotency key."


class Item:
    """One envelope of the batch and what becomes of it."""

    __slots__ = (
        "index",
        "data",
        "key",
        "operation",
        "sender",
        "recipient",
        "message",
        "replayed_id",
        "replayed_status",
        "error",
    )

    def __init__(self, index: int, data):
        self.index, self.data = index, data
        self.key = echo.idempotency_key_for(None, data)  # the message_id, when it can be a key
        self.operation: idempotency.Operation | None = None
        self.sender = self.recipient = None
        self.message: MessageLog | None = None
        self.replayed_id: str | None = None  # the id the earlier answer gave
        self.replayed_status: int | None = None  # its HTTP status; set when the item is a replay
        self.error: tuple[int, dict] | None = None  # (status, error body) when refused

    @property
    def status(self) -> str:
        if self.error is not None:
            return REFUSED
        return REPLAYED if self.replayed_status is not None else DELIVERED

    def result(self) -> dict:
        message_id = self.data.get("message_id") if isinstance(self.data, dict) else None
        result = {
            "index": self.index,
            "message_id": message_id if isinstance(message_id, str) else None,
            "status": self.status,
        }
        if self.error is not None:
            body = self.error[1]
            result["error"] = {"code": body["code"], "message": body["message"], "details": body["details"]}
        elif self.replayed_status is not None:
            result["id"] = self.replayed_id
        else:
            result["id"] = str(self.message.pk)
            result["delivery"] = delivery_fields(self.message)
        return result


@dataclass(frozen=True)
class StoredRecord:
    pk: int
    request_hash: str
    expires_at: datetime
    status: int
    answered_id: str | None


def envelopes_of(data) -> list:
    """The batch's envelopes; a body that is not ``{"messages": [1 to 100 items]}`` is refused as a whole (422)."""
    if not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ['Expected a JSON object: {"messages": [...]}.']})
    errors = {name: ["Unknown field."] for name in sorted(set(data) - {"messages"})}
    messages = data.get("messages")
    if messages is None:
        errors["messages"] = ["This field is required."]
    elif not isinstance(messages, list):
        errors["messages"] = ["Expected a list of envelopes."]
    elif not 1 <= len(messages) <= MAX_MESSAGES:
        errors["messages"] = [f"Send 1 to {MAX_MESSAGES} envelopes (got {len(messages)})."]
    if errors:
        raise serializers.ValidationError(errors)
    return messages


def submit_batch(caller: Caller, data, *, received_at: datetime) -> dict:
    """Send the batch's envelopes (module docstring) and answer each. Raises only for the batch as a whole."""
    envelopes = envelopes_of(data)
    for attempt in range(ATTEMPTS):
        try:
            with transaction.atomic(durable=True):
                items = _send(caller, envelopes, received_at, after_race=attempt > 0)
        except IntegrityError:
            # A concurrent request committed one of these keys or message_ids first: run again, on what it
            # committed (its records answer those items).
            logger.info("batch lost a race on a key (attempt %d of %d); running it again", attempt + 1, ATTEMPTS)
            continue
        counts = {DELIVERED: 0, REPLAYED: 0, REFUSED: 0}
        results = []
        for item in items:
            result = item.result()
            counts[result["status"]] += 1
            results.append(result)
        return {"results": results, **counts}
    raise IdempotencyInProgress(
        "Messages of this batch are being sent by another request right now; retry shortly.",
        details={"reason": "concurrent_batch"},
    )


def _send(caller: Caller, envelopes: list, received_at: datetime, *, after_race: bool) -> list[Item]:
    items = [Item(index, data) for index, data in enumerate(envelopes)]
    idempotent = settings.BRIKK_IDEMPOTENCY_ENABLED
    stored = _stored_records(caller, items) if idempotent else {}
    known, active = _agents(caller, items)
    batch = _Batch(
        caller, received_at, idempotent, stored, active, _taken_message_ids(caller, items) if after_race else set()
    )
    for item in items:
        try:
            batch.decide(item)
        except exceptions.APIException as refusal:
            _, response = render_exception(refusal)
            item.error = (response.status_code, response.data)
    replaced = [pk for key, pk in batch.replaced.items() if key in batch.claimed]
    if replaced:
        # Past their window the keys are free again: the new operations replace the records (those of refused
        # items stay, for retention to archive).
        IdempotencyRecord.objects.filter(pk__in=replaced).delete()
    _store(caller, items, known, received_at)
    return items


class _Batch:
    """What deciding the items of one batch needs to know, and what the earlier items decided."""

    def __init__(self, caller, received_at, idempotent, stored, active, taken):
        self.caller, self.received_at, self.idempotent = caller, received_at, idempotent
        self.stored, self.active, self.taken = stored, active, taken
        self.claimed: dict[str, Item] = {}  # key → the item of this batch that sends it
        self.sent: dict[tuple[uuid.UUID, uuid.UUID], MessageLog] = {}  # (sender, message_id) → message
        self.replaced: dict[str, int] = {}  # key → its record, expired or without its answer: the key is free

    def decide(self, item: Item) -> None:
        """What becomes of one item, in the echo's order; raises the refusal the echo would give it."""
        if self.idempotent and item.key is not None and self.replays(item):
            return
        # The serializer's own fast path, without building a serializer per envelope; anything it is not sure
        # about goes through the serializer, which names every bad field.
        envelope = clearly_valid_envelope(item.data) or echo.validate_envelope(item.data)
        sender, recipient = echo.authorize(self.caller, envelope, active=self.active)
        sent_as = (sender, envelope["message_id"])
        if sent_as in self.sent or sent_as in self.taken:
            raise MessageIdReused(details={"message_id": str(item.data["message_id"])})
        item.sender, item.recipient = sender, recipient
        # A reply to a message earlier in this batch is linked here: the INSERT's own subquery cannot see it.
        original = self.replied_within(envelope, sender, recipient)
        linked = {} if original is None else {"in_reply_to_id": original.pk}
        item.message = echo.delivered_message(
            self.caller,
            item.data,
            envelope,
            sender,
            recipient,
            item.operation,
            self.received_at,
            **linked,
        )
        self.sent[sent_as] = item.message
        if item.operation is not None:
            self.claimed[item.key] = item

    def replays(self, item: Item) -> bool:
        """True if the item's key was sent before, in this batch or earlier, with the same fingerprint (a replay);
        another fingerprint is idempotency_key_reused."""
        item.operation = idempotency.Operation.asking(
            self.caller.organization_id, self.caller.scope, item.key, item.data
        )
        first = self.claimed.get(item.key)
        if first is not None:
            if first.operation.digest != item.operation.digest:
                raise IdempotencyKeyReused(details={"idempotency_key": item.key})
            item.replayed_id, item.replayed_status = str(first.message.pk), 200
            return True
        existing = self.stored.get(item.key)
        if existing is None:
            return False
        expired = existing.expires_at <= self.received_at
        if not expired and not item.operation.matches(existing.request_hash):
            raise IdempotencyKeyReused(details={"idempotency_key": item.key})
        if expired or existing.answered_id is None:  # the key is free again (idempotency._stored_answer)
            self.replaced[item.key] = existing.pk
            del self.stored[item.key]
            return False
        item.replayed_id, item.replayed_status = existing.answered_id, existing.status
        return True

    def replied_within(self, envelope: dict, sender, recipient) -> MessageLog | None:
        """The message of this batch that the envelope's reply_to names (sent by its recipient to its sender):
        the INSERT's own subquery (echo.replied_message) cannot see the rows it inserts."""
        reply_to = envelope.get("reply_to")
        if reply_to is None or not self.sent:
            return None
        try:
            original = self.sent.get((recipient, uuid.UUID(reply_to)))
        except ValueError:
            return None
        return original if original is not None and original.recipient_id == sender else None


def _store(caller: Caller, items: list[Item], known: set, received_at: datetime) -> None:
    """One INSERT each for the messages (the refused ones' rejected rows too), the idempotency records and the
    audit rows. Sent messages and records go in key order, so concurrent batches lock keys in the same order."""
    sent = sorted(
        (item for item in items if item.message is not None), key=lambda item: (item.sender, item.message.message_id)
    )
    rejected, events = [], []
    for item in items:
        if item.message is not None:
            events.append(audit_event(AuditAction.ECHO_DELIVERED, item.message))
        elif item.replayed_status is not None:
            events.append(_replay_event(caller, item))
        else:
            status, body = item.error
            message, details = refusals.refused_message(
                caller,
                item.data,
                status=status,
                body=body,
                idempotency_key=item.key,
                received_at=received_at,
                known_agents=known,
            )
            rejected.append(message)
            action = REFUSAL_ACTIONS.get(body["code"], AuditAction.ECHO_REJECTED)
            events.append(audit_event(action, message, outcome=refusals.refusal_outcome(status), details=details))
    bulk.insert([*(item.message for item in sent), *rejected])
    records = [
        idempotency.completed_record(item.operation, status=200, message=item.message)
        for item in sorted(sent, key=lambda item: item.key)
        if item.operation is not None
    ]
    bulk.insert(records)
    record_many(events)
    for recipient in {item.recipient for item in sent}:
        wakeup.announce(recipient)


def _replay_event(caller: Caller, item: Item) -> dict:
    return {
        "action": AuditAction.IDEMPOTENCY_REPLAYED,
        "organization_id": caller.organization_id,
        "resource_kind": "message",
        "resource_id": item.replayed_id or "",
        "details": {"idempotency_key": item.key, "status": item.replayed_status},
        **caller.actor,
    }


def keep_refused_batch(caller: Caller, data, *, status: int, body: dict, action: str) -> None:
    """A batch refused as a whole after authentication (its shape, a rate limit, a header): one audit row, no
    message rows (nothing in it was looked at as a message)."""
    messages = data.get("messages") if isinstance(data, dict) else None
    record(
        action,
        outcome=refusals.refusal_outcome(status),
        organization_id=caller.organization_id,
        resource_kind="batch",
        details={
            "code": body.get("code"),
            "http_status": status,
            "messages": len(messages) if isinstance(messages, list) else None,
        },
        **caller.actor,
    )


def _stored_records(caller: Caller, items: list[Item]) -> dict[str, StoredRecord]:
    """The idempotency records of the batch's keys, in one query."""
    keys = {item.key for item in items if item.key is not None}
    if not keys:
        return {}
    return {
        stored.key: StoredRecord(
            stored.pk, stored.request_hash, stored.expires_at, stored.response_status, idempotency.answered_id(stored)
        )
        for stored in IdempotencyRecord.objects.for_keys(caller.scope, sorted(keys))
    }


def _agents(caller: Caller, items: list[Item]) -> tuple[set, set]:
    """(the organization's agents among those the envelopes name, those of them that may send and receive), in
    one query: the first links refused rows to their agents, the second authorizes (echo.authorize)."""
    named = set()
    for item in items:
        for field in ("sender", "recipient"):
            ref = agent_ref(item.data, field)
            if ref is not None:
                named.add(ref)
    if not named:
        return set(), set()
    statuses = Agent.objects.statuses(caller.organization_id, named)
    return set(statuses), {pk for pk, status in statuses.items() if status in Agent.AUTHENTICATING_STATUSES}


def _taken_message_ids(caller: Caller, items: list[Item]) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """After a lost race: the (sender, message_id) pairs of the batch already used by a message (under another
    scope, or with idempotency off) — message_id_reused, as the echo answers them."""
    pairs = {(agent_ref(item.data, "sender"), message_uuid(item.data)) for item in items}
    wanted = Q()
    for sender, message_id in pairs:
        if sender is not None and message_id is not None:
            wanted |= Q(sender_id=sender, message_id=message_id)
    if not wanted:
        return set()
    rows = (
        MessageLog.objects.filter(wanted, organization_id=caller.organization_id)
        .exclude(status=MessageLog.Status.REJECTED)
        .values_list("sender_id", "message_id")
    )
    return set(rows)
