"""One INSERT statement for many unsaved model instances, without the ORM's per-value work.

``QuerySet.bulk_create`` prepares every value of every row through its field (``pre_save``,
``get_db_prep_save``) and, on PostgreSQL, sends each column as one array, which psycopg escapes character by
character in Python: the batch send measured more than half of its CPU there (bench/batch_profile.py). Here the
rows go as one JSON document that PostgreSQL turns into rows of the table (``jsonb_populate_recordset``, the
table's own row type: every column converted by PostgreSQL as an INSERT converts it), encoded by orjson
in C. It takes what these models hold: text, numbers, booleans, UUIDs, datetimes, JSON (a JSONField's value is
nested as it is; a Python None is SQL NULL, as JSONField stores it). Rows with an expression (a subquery) go in
a second statement, each value prepared by its field and the expression compiled, as Model.save does.
``auto_now``/``auto_now_add`` fields are set as saving sets them, one moment for all the rows (they are written
by one statement); a primary key left None is the database's.
On other databases (SQLite, the embedded defaults) it is ``bulk_create``: the speed matters on PostgreSQL.

The models still describe the tables: columns, types and defaults all come from their fields.
"""

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

import orjson
from django.db import connections, models
from django.db.models import signals
from django.db.models.base import ModelState
from django.db.models.sql import InsertQuery


def instance(model: type[models.Model], **values) -> models.Model:
    """``model(**values)`` built the fast way, with each field's default for what ``values`` leaves out: the
    instance's attributes set at once, as ``Model.__init__`` sets them for a new instance, without its work per
    field (keyword lookup, each value through its descriptor) and its two signals per instance — a third of the
    batch send's CPU went to them. If anything listens to ``pre_init`` or ``post_init``, the instance is built
    by ``model(...)`` so that they are sent. ``values`` are by attribute name (``sender_id``, not ``sender``);
    an unknown name is a TypeError, as in ``model()``."""
    attributes = _attributes(model, values)
    if signals.pre_init.receivers or signals.post_init.receivers:
        return model(**attributes)
    obj = model.__new__(model)
    obj._state = ModelState()
    obj.__dict__.update(attributes)
    return obj


def _attributes(model: type[models.Model], values: dict) -> dict:
    """Every concrete field's attribute: ``values``, and each field's default for what they leave out."""
    defaults = _defaults_of(model)
    if not values.keys() <= defaults.attnames:
        unknown = ", ".join(sorted(values.keys() - defaults.attnames))
        raise TypeError(f"{model.__name__}() got unexpected fields: {unknown}")
    attributes = {**defaults.constants, **values}
    for attname, default in defaults.callables:
        if attname not in values:
            attributes[attname] = default()
    return attributes


@dataclass(frozen=True)
class _Defaults:
    attnames: frozenset  # every concrete field's attribute name
    constants: dict  # attribute name → its constant default
    callables: tuple  # (attribute name, its default function)


@functools.cache
def _defaults_of(model: type[models.Model]) -> _Defaults:
    constants, callables = {}, []
    for field in model._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            callables.append((field.attname, field.default))
        else:
            constants[field.attname] = field.get_default()
    return _Defaults(frozenset(field.attname for field in model._meta.concrete_fields), constants, tuple(callables))


def insert(objs: list[models.Model], *, using: str = "default") -> None:
    """INSERT ``objs`` (all of one model, not saved yet): one statement, or two if some rows hold an expression."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[using]
    if connection.vendor != "postgresql":
        model._default_manager.using(using).bulk_create(objs)
        return
    _insert(model, [obj.__dict__ for obj in objs], connection, using)
    for obj in objs:
        obj._state.adding, obj._state.db = False, using


def insert_values(model: type[models.Model], rows: list[dict], *, using: str = "default") -> None:
    """INSERT rows given as values by attribute name (each field's default for what a row leaves out), without
    building model instances: ``insert`` for callers that need no instance afterwards (audit.services.record_many).
    A primary key left out is its field's default, as for ``instance``."""
    if not rows:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        insert([instance(model, **row) for row in rows], using=using)
        return
    _insert(model, [_attributes(model, row) for row in rows], connection, using)


class _Attributes:
    """An object whose attributes are the given dict, so that a field's ``pre_save`` stamps the dict itself."""

    def __init__(self, values: dict):
        self.__dict__ = values


def _insert(model, rows: list[dict], connection, using) -> None:
    """On PostgreSQL, INSERT ``rows``, each every concrete attribute of one row by name (an instance's
    ``__dict__``): one statement, or two if some rows hold an expression. auto_now(_add) fields get the moment
    their ``pre_save`` gives the first row, for every row (one statement), written into the rows as saving does."""
    fields = [
        field
        for field in model._meta.concrete_fields
        if not (field.primary_key and rows[0][field.attname] is None)  # the database's (an auto field)
    ]
    stamps = [
        (field.attname, field.pre_save(_Attributes(rows[0]), add=True))
        for field in fields
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    ]
    names = [(field.column, field.attname) for field in fields]
    documents, computed = [], []
    for values in rows:
        values.update(stamps)
        row = {column: values[attname] for column, attname in names}
        kinds = set(map(type, row.values()))
        if not kinds <= _PLAIN and _holds_expression(kinds):
            computed.append(values)
        else:
            documents.append(row)
    with connection.cursor() as cursor:
        if documents:
            cursor.execute(*_from_json(model, fields, documents, connection))
        if computed:
            cursor.execute(*_from_values(model, fields, computed, using))


def _from_json(model, fields, rows: list[dict], connection) -> tuple[str, list]:
    """The rows as one JSON document, turned into rows of the table by PostgreSQL (jsonb_populate_recordset): a
    short statement (prepared once) with one parameter."""
    quote = connection.ops.quote_name
    table, columns = quote(model._meta.db_table), ", ".join(quote(field.column) for field in fields)
    document = json_document(rows)
    sql = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb)"  # noqa: S608
    return sql, [document]  # only quoted table and column names are interpolated


# Types known not to be an expression: a row is decided by the set of its values' types, not a hasattr() per value.
# It starts with the common ones and learns the others (choices' enum members, uuid6.UUID) as they come.
_PLAIN = {str, int, float, bool, type(None), uuid.UUID, datetime, dict, list}


def _holds_expression(kinds: set) -> bool:
    """Whether any of these types is an expression (a subquery, F()); the others are remembered as plain."""
    expressions = {kind for kind in kinds if hasattr(kind, "resolve_expression")}
    _PLAIN.update(kinds - expressions)
    return bool(expressions)


def json_document(value) -> str:
    """``value`` as JSON for PostgreSQL to read (jsonb): UUIDs and datetimes (ISO 8601, with their offset) as
    text. Encoded by orjson, which does UUIDs and datetimes in C: with the json module and a ``default`` per
    value, encoding took a sixth of the batch send's CPU. orjson writes a non-finite float as null, where json
    refuses it; none reaches here: the request guards refuse them (brikk/lib/values.py) and audit details
    store them as text (values.storable). What orjson does not take (an integer past 64 bits, which JSON and
    jsonb allow) is encoded by the json module."""
    try:
        return orjson.dumps(value, default=_json_default).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=_json_default, allow_nan=False, separators=(",", ":"))


def _json_default(value):
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not stored by brikk.lib.bulk")


def _from_values(model, fields, computed: list[dict], using) -> tuple[str, list]:
    """A VALUES statement, each value prepared by its field and each expression compiled, as Model.save does."""
    compiler = InsertQuery(model).get_compiler(using=using)
    quote = compiler.connection.ops.quote_name
    rows, params = [], []
    for values in computed:
        placeholders = []
        for field in fields:
            sql, value_params = compiler.field_as_sql(field, None, compiler.prepare_value(field, values[field.attname]))
            placeholders.append(sql)
            params.extend(value_params)
        rows.append(f"({', '.join(placeholders)})")
    columns = ", ".join(quote(field.column) for field in fields)
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join(rows)}", params  # noqa: S608
