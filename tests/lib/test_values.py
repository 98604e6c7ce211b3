"""brikk.lib.values: what PostgreSQL or Python cannot take, found (to refuse) or escaped (to store)."""

import json

import pytest
from django.db import models

from brikk.lib import values


@pytest.mark.parametrize(
    ("text", "reason", "path"),
    [
        ('{"note": "a\\u0000b"}', "nul_character", ("note",)),
        ('{"payload": {"k\\u0000": 1}}', "nul_character", ("payload", "k\x00")),
        ('["ok", ["\\ud800"]]', "lone_surrogate", (1, 0)),
        ('{"lone": "\\udfff tail"}', "lone_surrogate", ("lone",)),
        ('{"n": 1e999}', "non_finite_number", ("n",)),
        ('{"n": [-1e400]}', "non_finite_number", ("n", 0)),
        ('{"n": ' + "9" * 5000 + "}", "non_finite_number", ("n",)),
    ],
)
def test_loads_refuses_values_the_service_cannot_take_and_names_where(text, reason, path):
    with pytest.raises(values.UnacceptableJSON) as refused:
        values.loads(text)
    assert refused.value.problem == values.Problem(reason, path)
    assert isinstance(refused.value, json.JSONDecodeError)  # what every JSON caller already handles


def test_loads_keeps_what_is_fine():
    text = '{"emoji": "\\ud83d\\ude00", "escaped": "\\\\u0000", "big": ' + "9" * 400 + ', "f": 1.5e300}'
    assert values.loads(text) == {"emoji": "😀", "escaped": "\\u0000", "big": int("9" * 400), "f": 1.5e300}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    with pytest.raises(json.JSONDecodeError) as refused:
        values.loads(f'{{"n": {constant}}}')
    assert not isinstance(refused.value, values.UnacceptableJSON)  # a syntax error: 400, not 422
    assert constant in str(refused.value)


def test_nesting_is_counted_before_parsing(settings):
    settings.BRIKK_MAX_JSON_DEPTH = 4
    assert values.loads('[[[["x"]]]]') == [[[["x"]]]]
    assert values.loads('{"a": "[[[[[[[[", "b": [[["]]]]]]"]]]}')  # brackets inside strings do not count
    assert values.loads('{"a": "an escaped \\" [[[[[[ quote", "b": [[1]]}')  # nor after an escaped quote
    assert values.loads("[[1], [2], {}, [3], [4], {}]") == [[1], [2], {}, [3], [4], {}]  # many, but 2 deep
    with pytest.raises(values.UnacceptableJSON) as refused:
        values.loads('[[[[["x"]]]]]')
    assert refused.value.problem.reason == "too_deep"
    # Far past Python's recursion limit: refused, no RecursionError.
    with pytest.raises(values.UnacceptableJSON):
        values.loads("[" * 200_000 + "]" * 200_000)


def test_problems_in_the_drf_error_shape():
    assert values.Problem("nul_character", ("payload", "a\x00", 2)).field_errors() == {
        "payload": {"a\\u0000": {"2": ["NUL characters (\\u0000) are not accepted."]}}
    }
    assert values.Problem("too_deep").field_errors() == {
        "non_field_errors": ["Arrays and objects may nest at most 32 levels deep."]
    }


def test_find_unacceptable_walks_parsed_values_without_recursion(settings):
    assert values.find_unacceptable({"a": [1, "ok", {"b": None}]}) is None
    assert values.find_unacceptable({"a": float("nan")}) == values.Problem("non_finite_number", ("a",))
    deep = current = []
    for _ in range(5000):
        current.append([])
        current = current[0]
    assert values.find_unacceptable(deep).reason == "too_deep"


def test_storable_escapes_what_cannot_be_stored_and_says_so(settings):
    stored, escaped = values.storable({"k\x00": ["a\x00b", "\ud800", float("inf"), 1, {"fine": "yes"}]})
    assert escaped is True
    assert stored == {"k\\u0000": ["a\\u0000b", "\\ud800", "inf", 1, {"fine": "yes"}]}
    json.dumps(stored).encode("utf-8")  # now encodable and free of NUL
    assert values.storable({"fine": ["yes", 1, 2.5, None]}) == ({"fine": ["yes", 1, 2.5, None]}, False)
    settings.BRIKK_MAX_JSON_DEPTH = 2
    assert values.storable({"a": {"b": 1}}) == ({"a": {"b": 1}}, False)
    assert values.storable({"a": {"b": {"c": 1}}}) == ({"a": {"b": "(not stored: nested deeper than 2 levels)"}}, True)


def test_storable_takes_a_flat_dict_in_one_search_and_still_escapes_it():
    details = {"message_id": "m-1", "status": "delivered", "http_status": 200, "ok": True, "error": None}
    stored, escaped = values.storable(details)
    assert (stored, escaped) == (details, False)
    assert stored is not details  # a copy, as for any other value
    assert values.storable({"type": "a\x00b", "n": 1}) == ({"type": "a\\u0000b", "n": 1}, True)
    assert values.storable({"k\ud800": "v"}) == ({"k\\ud800": "v"}, True)
    assert values.storable({1: "v"}) == ({"1": "v"}, False)  # a key that is not text is stored as text
    assert values.storable({"x": float("nan")}) == ({"x": "nan"}, True)

    class Status(models.TextChoices):
        DELIVERED = "delivered"

    # Choices' members are text: kept as they are, as any text is, and checked all the same.
    assert values.storable({"status": Status.DELIVERED, "ok": True}) == ({"status": "delivered", "ok": True}, False)
    assert values.storable({"status": Status.DELIVERED})[0]["status"] is Status.DELIVERED
