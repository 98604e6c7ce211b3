"""The values PostgreSQL or Python cannot take, in one place: found to be refused, or escaped to be stored.

- NUL (U+0000) anywhere, in an object key or a string: PostgreSQL's ``text`` and ``jsonb`` reject it.
- Lone surrogates (U+D800..U+DFFF not in a pair): they cannot be encoded as UTF-8.
- Non-finite numbers (``NaN``, ``Infinity``, ``1e999``): not JSON, and ``jsonb`` rejects them.
- Nesting deeper than ``BRIKK_MAX_JSON_DEPTH`` (default 32) arrays and objects: past about 1,000 levels
  Python's own recursion limit breaks parsing, rendering and storing; the limit keeps far away from it.

``loads`` parses JSON text and refuses all of these (the API's parser, brikk/lib/parsers.py, and the
dashboard's metadata field use it); ``find_unacceptable`` finds them in a value already parsed (the agent
rules). ``storable`` is the other side: what is written to an audit or message row is made storable, with
the unstorable parts escaped, and says whether it had to (audit/services.py, coordination/refusals.py).
"""

import itertools
import json
import math
import re
import sys
from dataclasses import dataclass

from django.conf import settings

NUL = "\x00"
# A NUL or a surrogate in a parsed string; a surrogate that survives json.loads is a lone one (a valid
# pair becomes one character above U+FFFF).
_UNACCEPTABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")
# The only way JSON text yields a NUL or a surrogate is a \u escape (raw control characters are refused
# by the strict parser, and UTF-8 cannot carry surrogates): without one, no string needs walking.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
# For counting the nesting depth before parsing: strings (removed first), then what is not a bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

_INT_MAX_DIGITS = sys.get_int_max_str_digits() or 4300

REASON_MESSAGES = {
    "nul_character": "NUL characters (\\u0000) are not accepted",
    "lone_surrogate": "unpaired surrogates (\\ud800-\\udfff) are not accepted",
    "non_finite_number": "numbers must be finite and within a double's range (no NaN, Infinity or 1e999)",
    "too_deep": "arrays and objects may nest at most {max_depth} levels deep",
}


def max_depth() -> int:
    return settings.BRIKK_MAX_JSON_DEPTH


@dataclass(frozen=True)
class Problem:
    """What is wrong with a value and where: ``path`` holds the keys and indexes down to it, () for the whole."""

    reason: str
    path: tuple = ()

    @property
    def message(self) -> str:
        text = REASON_MESSAGES[self.reason].format(max_depth=max_depth())
        return text[0].upper() + text[1:] + "."

    @property
    def pointer(self) -> str:
        """The place as a JSON Pointer (RFC 6901), its keys escaped like any stored text."""
        return "".join("/" + escape_text(str(part)).replace("~", "~0").replace("/", "~1") for part in self.path)

    def field_errors(self) -> dict:
        """The DRF validation-error shape: {"payload": {"note": ["..."]}}, or non_field_errors for the whole."""
        if not self.path:
            return {"non_field_errors": [self.message]}
        errors = [self.message]
        for part in reversed(self.path):
            errors = {escape_text(str(part)): errors}
        return errors


class UnacceptableJSON(json.JSONDecodeError):
    """JSON text with a value this service cannot take. A ``JSONDecodeError`` (so a ``ValueError``), which
    is what Django's forms.JSONField and every ``json.loads`` caller already handle."""

    def __init__(self, problem: Problem, doc: str = "", pos: int = 0):
        super().__init__(problem.message, doc, pos)
        self.problem = problem

    def __str__(self):
        return self.msg


def _character_problem(text: str) -> str | None:
    match = _UNACCEPTABLE_CHARACTER.search(text)
    if match is None:
        return None
    return "nul_character" if match.group() == NUL else "lone_surrogate"


def find_unacceptable(value, *, limit: int | None = None) -> Problem | None:
    """The first NUL, lone surrogate, non-finite number or too deep nesting in a parsed JSON value."""
    limit = max_depth() if limit is None else limit
    # Iterative, so that a value nested past Python's recursion limit is reported, not a RecursionError.
    stack = [(value, (), 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if (reason := _character_problem(item)) is not None:
                return Problem(reason, path)
        elif isinstance(item, float):
            if not math.isfinite(item):
                return Problem("non_finite_number", path)
        elif isinstance(item, dict):
            if depth >= limit:
                return Problem("too_deep", path)
            for key, child in reversed(item.items()):
                if isinstance(key, str) and (reason := _character_problem(key)) is not None:
                    return Problem(reason, (*path, key))
                stack.append((child, (*path, key), depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= limit:
                return Problem("too_deep", path)
            stack.extend((child, (*path, index), depth + 1) for index, child in reversed(list(enumerate(item))))
    return None


def _too_deep(text: str, limit: int) -> bool:
    """Whether ``text`` nests arrays and objects past ``limit``, counted without parsing (no recursion): strings
    removed, then the running depth over the brackets left, all of it in C."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case, decided in C
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


class _ConstantNotJSON(json.JSONDecodeError):
    """``NaN``, ``Infinity`` or ``-Infinity``: Python's extension, not JSON (RFC 8259), so a syntax error."""

    def __str__(self):
        return self.msg


def _not_json(name: str):
    raise _ConstantNotJSON(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)", "", 0)


def loads(text: str):
    """``json.loads`` that refuses what this service cannot take (UnacceptableJSON, naming where), and
    raises ``json.JSONDecodeError`` for text that is not JSON. Nesting is counted before parsing."""
    limit = max_depth()
    if _too_deep(text, limit):
        raise UnacceptableJSON(Problem("too_deep"), text)
    out_of_range = []

    def finite_float(literal: str) -> float:
        number = float(literal)
        if not math.isfinite(number):
            out_of_range.append(literal)
        return number

    def bounded_int(literal: str) -> int | float:
        if len(literal) > _INT_MAX_DIGITS:  # past Python's int/str conversion limit: out of range like 1e999
            out_of_range.append(literal)
            return math.inf
        return int(literal)

    try:
        value = json.loads(text, parse_float=finite_float, parse_int=bounded_int, parse_constant=_not_json)
    except _ConstantNotJSON as error:
        raise _ConstantNotJSON(error.msg, text, 0) from None
    except RecursionError:  # cannot happen below the limit; kept as the last line of defence
        raise UnacceptableJSON(Problem("too_deep"), text) from None
    if out_of_range or _SUSPECT_ESCAPE.search(text):
        problem = find_unacceptable(value, limit=limit)
        if problem is not None:
            raise UnacceptableJSON(problem, text)
    return value


class GuardedJSONDecoder(json.JSONDecoder):
    """A ``json.JSONDecoder`` for ``cls=`` callers (Django's forms.JSONField) that decodes with ``loads``."""

    def decode(self, s, _w=None):
        return loads(s)


# --- Storing: what cannot be stored as sent is escaped, and the caller says so in the row. ---------------


def escape_text(text: str) -> str:
    """``text`` with NUL and lone surrogates written as ``\\uXXXX`` escapes."""
    return _UNACCEPTABLE_CHARACTER.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _storable(value, depth: int, limit: int):
    """(storable copy, whether anything was escaped)."""
    if isinstance(value, str):
        if _UNACCEPTABLE_CHARACTER.search(value):
            return escape_text(value), True
        return value, False
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value), True  # "nan", "inf", "-inf" as text
    if isinstance(value, dict | list | tuple):
        if depth >= limit:
            return f"(not stored: nested deeper than {limit} levels)", True
        escaped = False
        if isinstance(value, dict):
            copy = {}
            for key, child in value.items():
                stored_key, key_escaped = _storable(key if isinstance(key, str) else str(key), depth, limit)
                copy[stored_key], child_escaped = _storable(child, depth + 1, limit)
                escaped = escaped or key_escaped or child_escaped
            return copy, escaped
        items = []
        for child in value:
            stored, child_escaped = _storable(child, depth + 1, limit)
            items.append(stored)
            escaped = escaped or child_escaped
        return items, escaped
    return value, False


def storable(value) -> tuple[object, bool]:
    """A copy of ``value`` that PostgreSQL (text, jsonb) and SQLite both store: NUL and lone surrogates
    escaped as ``\\uXXXX`` text, non-finite numbers as text, anything nested past the limit replaced by
    a note. Returns (copy, escaped): ``escaped`` is True when the copy differs from what was sent."""
    if type(value) is str:  # most of what is stored: decided without the depth limit
        return (value, False) if _UNACCEPTABLE_CHARACTER.search(value) is None else (escape_text(value), True)
    if type(value) is dict and _plain_flat(value):
        return dict(value), False  # an audit row's details, mostly: one level of plain values
    return _storable(value, 0, max_depth())


_FLAT_TYPES = (str, int, type(None))  # with their subclasses (bool, choices' members), as _storable keeps them


def _plain_flat(flat: dict) -> bool:
    """Whether a dict holds only text keys and text, integer or null values, none with a NUL or a surrogate:
    checked in one search over all of its text."""
    texts = []
    for key, item in flat.items():
        if type(key) is not str or not isinstance(item, _FLAT_TYPES):
            return False
        texts.append(key)
        if isinstance(item, str):
            texts.append(item)
    return _UNACCEPTABLE_CHARACTER.search("".join(texts)) is None
