"""One INSERT statement for many unsaved model instances, without the ORM's per-value work.

``QuerySet.bulk_create`` prepares every value of every row through its field (``pre_save``,
``get_db_prep_save``) and, on PostgreSQL, sends each column as one array, which psycopg escapes character by
character in Python: the batch send measured more than half of its CPU there (bench/batch_profile.py). Here the
rows go as one JSON document that PostgreSQL turns into rows of the table (``jsonb_populate_recordset``, the
table's own row type: every column converted by PostgreSQL as an INSERT converts it), encoded by the json module
in C. It takes what these models hold: text, numbers, booleans, UUIDs, datetimes, JSON (a JSONField's value is
nested as it is; a Python None is SQL NULL, as JSONField stores it). Rows with an expression (a subquery) go in
a second statement, each value prepared by its field and the expression compiled, as Model.save does.
``auto_now``/``auto_now_add`` fields are set as saving sets them; a primary key left None is the database's.
On other databases (SQLite, the embedded defaults) it is ``bulk_create``: the speed matters on PostgreSQL.

The models still describe the tables: columns, types and defaults all come from their fields.
"""

import functools
import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal

from django.db import connections, models
from django.db.models.sql import InsertQuery


def instance(model: type[models.Model], **values) -> models.Model:
    """``model(**values)`` built the fast way: Django's positional constructor (the one loading rows from the
    database uses), with each field's default for what ``values`` leaves out. Keyword construction looks every
    field up in the keywords and through its descriptor: a third of the batch send's CPU went to it. ``values``
    are by attribute name (``sender_id``, not ``sender``); an unknown name is a TypeError, as in ``model()``."""
    fields = _fields_of(model)
    args = [values.pop(attname) if attname in values else default() for attname, default in fields]
    if values:
        raise TypeError(f"{model.__name__}() got unexpected fields: {', '.join(sorted(values))}")
    return model(*args)


@functools.cache
def _fields_of(model: type[models.Model]) -> list[tuple[str, Callable]]:
    """(attribute name, its default as a function) of each concrete field, in the constructor's order."""
    fields = []
    for field in model._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            default = field.default
        else:
            default = functools.partial(_constant, field.get_default())
        fields.append((field.attname, default))
    return fields


def _constant(value):
    return value


def insert(objs: list[models.Model], *, using: str = "default") -> None:
    """INSERT ``objs`` (all of one model, not saved yet): one statement, or two if some rows hold an expression."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[using]
    if connection.vendor != "postgresql":
        model._default_manager.using(using).bulk_create(objs)
        return
    fields = [
        field
        for field in model._meta.concrete_fields
        if not (field.primary_key and getattr(objs[0], field.attname) is None)
    ]
    stamped = [field for field in fields if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)]
    names = [(field.column, field.attname) for field in fields]
    rows, computed = [], []
    for obj in objs:
        for field in stamped:
            field.pre_save(obj, add=True)
        values = obj.__dict__
        row = {column: values[attname] for column, attname in names}
        if not _PLAIN.issuperset(map(type, row.values())) and any(
            hasattr(value, "resolve_expression") for value in row.values()
        ):
            computed.append(obj)
        else:
            rows.append(row)
    with connection.cursor() as cursor:
        if rows:
            cursor.execute(*_from_json(model, fields, rows, connection))
        if computed:
            cursor.execute(*_from_values(model, fields, computed, using))
    for obj in objs:
        obj._state.adding, obj._state.db = False, using


def _from_json(model, fields, rows: list[dict], connection) -> tuple[str, list]:
    """The rows as one JSON document, turned into rows of the table by PostgreSQL (jsonb_populate_recordset): a
    short statement (prepared once) with one parameter, encoded by the json module's C encoder."""
    quote = connection.ops.quote_name
    table, columns = quote(model._meta.db_table), ", ".join(quote(field.column) for field in fields)
    document = json.dumps(rows, default=_json_default, allow_nan=False, separators=(",", ":"))
    sql = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb)"  # noqa: S608
    return sql, [document]  # only quoted table and column names are interpolated


# Types that are never an expression: the common case is decided without a hasattr() per value.
_PLAIN = frozenset({str, int, float, bool, type(None), uuid.UUID, datetime, dict, list})


def _json_default(value):
    kind = type(value)
    if kind is uuid.UUID:
        return str(value)
    if kind is datetime:
        return value.isoformat()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not stored by brikk.lib.bulk")


def _from_values(model, fields, objs, using) -> tuple[str, list]:
    """A VALUES statement, each value prepared by its field and each expression compiled, as Model.save does."""
    compiler = InsertQuery(model).get_compiler(using=using)
    quote = compiler.connection.ops.quote_name
    rows, params = [], []
    for obj in objs:
        placeholders = []
        for field in fields:
            sql, value_params = compiler.field_as_sql(
                field, None, compiler.prepare_value(field, getattr(obj, field.attname))
            )
            placeholders.append(sql)
            params.extend(value_params)
        rows.append(f"({', '.join(placeholders)})")
    columns = ", ".join(quote(field.column) for field in fields)
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join(rows)}", params  # noqa: S608
