"""The envelope's fast path accepts only what the serializer's fields accept, and returns the same data."""

import copy
import uuid

import pytest
from uuid6 import uuid7

from coordination.serializers import EnvelopeSerializer, clearly_valid_envelope

VALID = {
    "version": "1.0",
    "message_id": str(uuid7()),
    "ts": "2025-01-31T12:00:00.123Z",
    "type": "event",
    "sender": {"agent_id": str(uuid.uuid4()), "org_id": str(uuid.uuid4())},
    "recipient": {"agent_id": str(uuid.uuid4())},
    "payload": {"n": 1, "nested": {"a": [1, 2]}},
    "ttl_ms": 120000,
    "reply_to": "inbox",
    "nonce": "n-1",
}


def _through_fields(data):
    """What the serializer's fields alone make of ``data``: (validated data as plain dicts, errors)."""
    serializer = EnvelopeSerializer(data=data)
    try:
        validated = serializer.to_internal_value(data)
    except Exception as exc:  # noqa: BLE001 - ValidationError; its detail is compared below
        return None, exc.detail
    return _plain(validated), None


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _variant(**changes):
    data = copy.deepcopy(VALID)
    for name, value in changes.items():
        if value is ...:
            data.pop(name)
        else:
            data[name] = value
    return data


ACCEPTED = [
    VALID,
    _variant(version=..., type=..., ttl_ms=..., reply_to=..., nonce=...),  # the defaults
    _variant(message_id=str(uuid.uuid4()), ttl_ms=1),
    _variant(ttl_ms=1_209_600_000),  # 14 days, the longest
    _variant(sender={"agent_id": str(uuid.uuid4())}, payload={}),
]

# Each is something the fast path must not decide: invalid, or valid only after the fields convert it.
UNSURE = [
    _variant(message_id=str(uuid.uuid1())),  # v1: refused
    _variant(message_id=uuid7().hex),  # 32 hex digits: the field accepts, the fast path defers
    _variant(message_id=str(uuid7()).upper().replace("-", "")),
    _variant(message_id=12345),
    _variant(message_id=...),
    _variant(ts="2025-01-31T12:00:00+00:00"),
    _variant(ts=" 2025-01-31T12:00:00Z"),
    _variant(ts="2025-01-31T12:00:00Z\n"),
    _variant(ts=...),
    _variant(version="2.0"),
    _variant(version=1.0),
    _variant(type="shout"),
    _variant(ttl_ms=0),
    _variant(ttl_ms=1_209_600_001),
    _variant(ttl_ms="500"),
    _variant(ttl_ms=True),
    _variant(ttl_ms=5.0),
    _variant(payload=[1]),
    _variant(payload=...),
    _variant(sender="agent"),
    _variant(sender={"agent_id": "not-a-uuid"}),
    _variant(sender={"agent_id": str(uuid.uuid4()), "extra": 1}),
    _variant(recipient={"org_id": str(uuid.uuid4())}),
    _variant(reply_to=""),
    _variant(reply_to=" padded "),
    _variant(reply_to="x" * 256),
    _variant(nonce=7),
    _variant(nonce=None),
    _variant(surprise=True),
    [VALID],
    "envelope",
]


@pytest.mark.parametrize("data", ACCEPTED)
def test_fast_path_returns_what_the_fields_return(data):
    fast = clearly_valid_envelope(data)
    slow, errors = _through_fields(data)
    assert errors is None
    assert fast is not None
    assert fast == slow
    assert {key: type(value) for key, value in fast.items()} == {key: type(value) for key, value in slow.items()}


@pytest.mark.parametrize("data", UNSURE)
def test_fast_path_defers_everything_it_is_not_sure_of(data):
    assert clearly_valid_envelope(data) is None


@pytest.mark.parametrize("data", UNSURE)
def test_deferred_envelopes_get_the_fields_verdict(data):
    serializer = EnvelopeSerializer(data=data)
    valid = serializer.is_valid()
    slow, errors = _through_fields(data)
    assert valid is (errors is None)
    if valid:
        assert _plain(serializer.validated_data) == slow
    else:
        assert serializer.errors == errors


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("nonce", 0, "string"),
        ("reply_to", 1.5, "string"),
        ("ts", 20250131, "string"),
        ("version", 1.0, "string"),
        ("type", 1, "string"),
        ("message_id", uuid7().int, "string"),
        ("ttl_ms", "30000", "integer"),
        ("ttl_ms", 30000.0, "integer"),
        ("ttl_ms", True, "integer"),
    ],
)
def test_fields_take_only_the_documented_json_type(field, value, kind):
    """The echo answers with the envelope as received: a coerced value (nonce 0 kept as a number) broke the
    documented response schema, which schemathesis found. Now it is refused, naming the field."""
    _, errors = _through_fields(_variant(**{field: value}))
    assert errors == {field: [f"Must be a JSON {kind}."]}
    assert clearly_valid_envelope(_variant(**{field: value})) is None


def test_agent_refs_take_only_strings():
    _, errors = _through_fields(_variant(sender={"agent_id": uuid.uuid4().int}))
    assert errors == {"sender": {"agent_id": ["Must be a JSON string."]}}
