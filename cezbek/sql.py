"""Plain-SQL writes of model instances, for the hot paths (a purchase, a payout's delivery).

The ORM's compilation of an INSERT costs more CPU than the database spends executing it. These
write the same rows — each field's `pre_save` (auto_now…) and `get_db_prep_save` (dates,
decimals, JSON) applied exactly as `Model.save()` would — without the compilation. No signals are
sent: use them only for models that have no receivers.
"""

import contextlib
import functools
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, router
from django.db.models import DEFERRED, Model
from django.utils import timezone
from psycopg.types.json import Jsonb

M = TypeVar("M", bound=Model)


def new(model: type[M], **values) -> M:
    """An unsaved instance, as `model(**values)` makes it, built through `Model.__init__`'s
    positional path (the one `Model.from_db` takes for loaded rows). The keyword path raises and
    catches a KeyError for each field left out and runs a descriptor for each related instance
    given: for a purchase's new instances (transaction, tier, state, journey, payout, event) that
    cost the worker about as much as quoting their values into the INSERTs' SQL (py-spy, session 15).

    A field is given by its attname (`wallet_id=`), or a relation by its name with the related
    instance (`wallet=`), which is then cached on the new instance (and, for a one-to-one, the new
    instance on it), their databases settled, as the relation's descriptor does; a field left out
    takes its default. Only the fields given are visited: the rest come from the model's `_layout`
    (a Payout, seven fields of eighteen given: 16.4 → 7.6 µs).
    `cezbek/tests/test_sql.py` holds the two ways equal.
    """
    slots, template, made = _layout(model)
    args = list(template)
    given, related = set(), []
    for name, value in values.items():
        try:
            n, f, by_instance = slots[name]
        except KeyError:
            raise TypeError(f"{model.__name__}() got unexpected field(s): {name}") from None
        if n in given:
            raise TypeError(f"{model.__name__}() got {f.name} twice, by instance and by id")
        given.add(n)
        if by_instance:
            if value is not None and not isinstance(value, f.remote_field.model):
                raise ValueError(f"{model.__name__}.{name} must be a {f.remote_field.model.__name__} instance, not {value!r}")
            related.append((f, value))
            value = None if value is None else getattr(value, f.target_field.attname)
        args[n] = value
    for n, f in made:
        if n not in given:
            args[n] = f.get_default()
    instance = model(*args)
    for f, target in related:
        if target is not None:  # the databases, as the descriptor settles them
            if instance._state.db is None:
                instance._state.db = router.db_for_write(model, instance=target)
            if target._state.db is None:
                target._state.db = router.db_for_write(type(target), instance=instance)
            if not router.allow_relation(target, instance):
                raise ValueError(f'Cannot relate {instance!r} to {target!r}: the database router prevents it.')
        f.set_cached_value(instance, target)
        if target is not None and not f.remote_field.multiple:
            f.remote_field.set_cached_value(target, instance)
    return instance


def insert(instance: Model) -> Model:
    """INSERTs a new instance and sets its primary key (like `Model.objects.create`)."""
    head, values = insert_parts(instance)
    with connection.cursor() as cursor:
        cursor.execute(f"{head} {_values_clause(type(instance))} RETURNING {_pk_column(type(instance))}", values)
        saved(instance, cursor.fetchone()[0])
    return instance


def insert_ignore_parts(instance: Model, *, unique: tuple[str, ...]) -> tuple[str, list]:
    """An INSERT of a new instance that does nothing when a row with the same `unique` columns
    exists (they must carry a unique constraint), and its parameters."""
    head, values = insert_parts(instance)
    return f"{head} {_values_clause(type(instance))} ON CONFLICT ({_conflict_target(unique)}) DO NOTHING", values


def insert_parts(instance: Model) -> tuple[str, list]:
    """`INSERT INTO table (columns)` for a new instance, and its column values in that order."""
    head, fields, plains = _insert_head(type(instance))
    return head, _values(instance, fields, plains, add=True)


def run_together(statements: list[tuple[str, list]], *, cursor=None) -> list[list[tuple]]:
    """Runs (sql, params) statements in order; returns each one's rows (none for a statement that
    returns none). On PostgreSQL in one round trip: one query string, its results read one after
    the other (each statement still sees what committed before it started).
    `cursor`: a cursor of the default database to run them on, else one of their own."""
    with _given_or_own(cursor) as cursor:
        if not on_postgresql():
            results = []
            for text, params in statements:
                cursor.execute(text, params)
                results.append(cursor.fetchall() if cursor.description else [])
            return results
        cursor.execute("; ".join(text for text, _ in statements), [p for _, params in statements for p in params])
        # The driver's cursor itself: Django's wrapper reaches each of its attributes through a
        # failed lookup and a __getattr__. rownumber is None for a result without rows (an INSERT):
        # cheaper than building cursor.description.
        raw = cursor.cursor
        with cursor.db.wrap_database_errors:
            results = [raw.fetchall() if raw.rownumber is not None else []]
            while raw.nextset():
                results.append(raw.fetchall() if raw.rownumber is not None else [])
    return results


def _given_or_own(cursor):
    """The cursor given (left open), or a new one of the default database (closed after use)."""
    return contextlib.nullcontext(cursor) if cursor is not None else connection.cursor()


def saved(instance: Model, pk) -> None:
    """Marks an instance inserted by hand as saved, with its new primary key."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS  # `connection` is the default database's


def update(instance: Model, fields: list[str]) -> None:
    """UPDATEs some fields of a saved instance (like `save(update_fields=…)`)."""
    with connection.cursor() as cursor:
        cursor.execute(*update_parts(instance, fields))


def update_parts(instance: Model, fields: list[str]) -> tuple[str, list]:
    """The UPDATE statement of some fields of a saved instance, and its parameters."""
    text, targets, plains = _update_head(type(instance), tuple(fields))
    return text, [*_values(instance, targets, plains, add=False), instance.pk]


@dataclass
class Row:
    """A new row of an `insert_chain`: an unsaved instance, and the columns (by attname) whose
    value is the new id of an earlier row of the chain (by that row's instance)."""

    instance: Model
    links: dict[str, Model] = field(default_factory=dict)


def insert_chain(rows: list[Row], *, updates: list[tuple[Model, list[str]]] = (), now: datetime | None = None, cursor=None) -> None:
    """INSERTs rows that refer to each other's new ids, in order, and UPDATEs saved instances;
    sets every new instance's primary key and linked columns. `now`: the instant the rows'
    auto_now and auto_now_add fields take (on PostgreSQL; by default the clock's, read once).
    `cursor`: as for `run_together` (on PostgreSQL).

    On PostgreSQL this is one statement, whatever the number of rows: each row a data-modifying
    `WITH` clause, its linked columns read from the clause that inserted their row. Elsewhere
    (SQLite) it is one statement per row, as `insert` and `update` would run them.
    """
    if not on_postgresql():
        for row in rows:
            _link(row)
            insert(row.instance)
        for instance, fields in updates:
            update(instance, fields)
        return
    position = {id(row.instance): n for n, row in enumerate(rows)}
    shape = (
        tuple((type(row.instance), tuple((attname, position[id(target)]) for attname, target in row.links.items())) for row in rows),
        tuple((type(instance), tuple(fields)) for instance, fields in updates),
    )
    text, row_fields, update_fields = _chain_statement(shape)
    now = now or timezone.now()  # one instant for the whole statement's auto_now fields
    values = []
    for row, (fields, plains) in zip(rows, row_fields, strict=True):
        values.extend(_values(row.instance, fields, plains, add=True, now=now))
    for (instance, _), (fields, plains) in zip(updates, update_fields, strict=True):
        values.extend([*_values(instance, fields, plains, add=False, now=now), instance.pk])
    nulls = tuple(n for n, value in enumerate(values) if value is None)
    with _given_or_own(cursor) as cursor:
        cursor.execute(_nulls_written(text, nulls, len(values)), [value for value in values if value is not None])
        with cursor.db.wrap_database_errors:
            new_ids = cursor.cursor.fetchone()  # the driver's own, as in run_together
    for row, pk in zip(rows, new_ids, strict=True):
        saved(row.instance, pk)
    for row in rows:
        _link(row)


def _link(row: Row) -> None:
    """Sets a row's linked columns to their rows' ids, keeping a related instance it already holds."""
    for attname, target in row.links.items():
        relation = _layout(type(row.instance))[0][attname][1]  # the field of that column
        held = relation.is_cached(row.instance) and relation.get_cached_value(row.instance) is target
        setattr(row.instance, attname, target.pk)
        if held:
            relation.set_cached_value(row.instance, target)


# The statements' texts depend only on the models (and a chain's shape): built once per process.


@functools.cache
def on_postgresql() -> bool:
    """Whether the default database is PostgreSQL (read once: `connection` is a proxy, each lookup costs)."""
    return connection.vendor == "postgresql"


_MADE = object()  # a _layout template slot whose default is made per instance


@functools.cache
def _layout(model: type[Model]) -> tuple[dict, tuple, tuple]:
    """For `new`: where each field goes in `__init__`'s positional order, by attname and, for a
    relation, by name (the slot, the field, whether given by instance); the arguments of an
    instance given nothing, with the defaults that are values (a default that is not callable is
    one object, shared by every instance, in Django too); and the slots whose default is made per
    instance (a callable, a database default) with their fields."""
    slots, template, made = {}, [], []
    for n, f in enumerate(model._meta.concrete_fields):
        slots[f.attname] = (n, f, False)
        if f.is_relation:
            slots[f.name] = (n, f, True)
        if f.generated:
            template.append(DEFERRED)
        elif f.has_db_default() or (f.has_default() and callable(f.default)):
            template.append(_MADE)
            made.append((n, f))
        else:
            template.append(f.get_default())
    return slots, tuple(template), tuple(made)


@functools.cache
def _conflict_target(unique: tuple[str, ...]) -> str:
    return ", ".join(connection.ops.quote_name(column) for column in unique)


def _values(instance: Model, fields, plains, *, add: bool, now: datetime | None = None) -> list:
    """Each field's value as `save()` would send it: `pre_save`, then `get_db_prep_save` — except
    where the driver sends the same SQL literal without it (on PostgreSQL: None, and a value of the
    field's own plain type, an aware datetime for a DateTimeField, a finite Decimal), which a purchase's seventy-odd
    values mostly are. `plains`: the fields' `_plain_type`s, as the statement caches below hold
    them (looking a field up each time costs a Python-level hash and comparison).
    A DateTimeField's auto_now and auto_now_add take `now` (the clock's, read at the first such
    field, when not given), what its `pre_save` does with `timezone.now()`: a chain passes one
    instant, so that its rows carry one.

    Some values go as text, the same bytes reaching the server (`_slot`): an aware datetime and
    JSON, whose adapters cost psycopg more than their text (a Python-level adapter lookup for each
    type in each statement, and JSON's adapter is Python), with the cast those adapters write
    carried by the statement; a str subclass (a TextChoices member) as its str, which psycopg
    sends anyway but looks up an adapter for each subclass.
    `cezbek/tests/test_sql.py` holds the two equal."""
    values = []
    for f, plain in zip(fields, plains, strict=True):
        if plain is datetime and not f.is_relation and (f.auto_now or (add and f.auto_now_add)):
            value = now = now or timezone.now()  # the clock read only when a field needs it
            setattr(instance, f.attname, now)
        else:
            value = f.pre_save(instance, add)
        if value is None:
            pass
        elif plain is None:
            value = f.get_db_prep_save(value, connection)
        elif plain is str:
            if type(value) is not str:  # Django keeps a str subclass as it is: psycopg sends its text
                value = str.__str__(value) if isinstance(value, str) else f.get_db_prep_save(value, connection)
        elif plain is datetime:
            if type(value) is not datetime or value.tzinfo is None:
                value = f.get_db_prep_save(value, connection)
            if type(value) is datetime and value.tzinfo is not None:
                value = str(value)  # psycopg's text for it; `_slot` adds its ::timestamptz
        elif plain is Jsonb:
            value = f.get_db_prep_save(value, connection)
            if type(value) is Jsonb:
                value = (value.dumps or json.dumps)(value.obj)  # what psycopg's adapter writes; `_slot` adds ::jsonb
        elif type(value) is not plain or (plain is Decimal and not value.is_finite()):  # Django refuses NaN and infinities
            value = f.get_db_prep_save(value, connection)
        values.append(value)
    return values


PLAIN_TYPES = {
    "AutoField": int, "BigAutoField": int, "IntegerField": int, "BigIntegerField": int, "SmallIntegerField": int,
    "PositiveIntegerField": int, "PositiveBigIntegerField": int, "PositiveSmallIntegerField": int,
    "CharField": str, "TextField": str, "BooleanField": bool, "DecimalField": Decimal, "DateTimeField": datetime,
    "JSONField": Jsonb,  # not a plain type: values go through Django, then as their text (see `_values`)
}


@functools.cache
def _plain_type(f) -> type | None:
    """The type whose values `f.get_db_prep_save` returns unchanged on PostgreSQL, if any: Django's
    own field classes only (a custom field may prepare its values in its own way). A DateTimeField
    only with USE_TZ (a naive datetime's literal is cast to timestamp, not timestamptz)."""
    if not on_postgresql():
        return None
    target = f.target_field if f.is_relation else f  # a foreign key's column holds its target's values
    if not all(type(x).__module__.startswith("django.db.models.") for x in (f, target)):
        return None
    plain = PLAIN_TYPES.get(target.get_internal_type())
    return None if plain is datetime and not settings.USE_TZ else plain


CASTS = {datetime: "::timestamptz", Jsonb: "::jsonb"}


@functools.cache
def _slot(f) -> str:
    """A field's parameter in a statement: `%s`, with the cast psycopg's adapter would have written
    for a value `_values` sends as text."""
    return "%s" + CASTS.get(_plain_type(f), "")


def instant(value: datetime) -> tuple[str, object]:
    """A datetime for hand-written SQL, as `_values` sends a DateTimeField's: its slot and its
    parameter (on PostgreSQL, for an aware datetime, the text and the cast psycopg would write)."""
    if on_postgresql() and settings.USE_TZ and type(value) is datetime and value.tzinfo is not None:
        return "%s" + CASTS[datetime], str(value)
    return "%s", connection.ops.adapt_datetimefield_value(value)


@functools.cache
def _pk_column(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.pk.column)


@functools.cache
def _insert_head(model: type[Model]) -> tuple[str, tuple, tuple]:
    """`INSERT INTO table (columns)`, the fields of those columns, and their `_plain_type`s."""
    qn = connection.ops.quote_name
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    head = f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in fields)})"
    return head, fields, tuple(_plain_type(f) for f in fields)


@functools.cache
def _values_clause(model: type[Model]) -> str:
    return f"VALUES ({', '.join(_slot(f) for f in _insert_head(model)[1])})"


@functools.cache
def _update_head(model: type[Model], names: tuple[str, ...]) -> tuple[str, tuple, tuple]:
    """The UPDATE statement of these fields by primary key, the fields, and their `_plain_type`s."""
    qn = connection.ops.quote_name
    targets = tuple(model._meta.get_field(name) for name in names)
    columns = ", ".join(f"{qn(f.column)} = {_slot(f)}" for f in targets)
    text = f"UPDATE {qn(model._meta.db_table)} SET {columns} WHERE {_pk_column(model)} = %s"
    return text, targets, tuple(_plain_type(f) for f in targets)


@functools.lru_cache(maxsize=256)
def _nulls_written(text: str, nulls: tuple[int, ...], count: int) -> str:
    """`text`, whose `count` parameters are its `%s`, with those at positions `nulls` written as
    NULL, as psycopg would send them.

    The driver sends the same bytes either way, but it caches its parsing of a query only for 50
    parameters or fewer: a purchase's chain has about 50 values, of which about ten are None.
    """
    parts = text.split("%s")
    if len(parts) != count + 1 or "%%" in text:  # a literal %s or %% would shift every parameter after it
        raise ValueError(f"expected {count} parameter slots, not {len(parts) - 1}, and no %%: {text[:80]}…")
    if not nulls:
        return text
    nulls = set(nulls)
    return "".join(part + ("NULL" if n in nulls else "%s") for n, part in enumerate(parts[:-1])) + parts[-1]


@functools.lru_cache(maxsize=64)
def _chain_statement(shape) -> tuple[str, tuple[tuple, ...], tuple[tuple, ...]]:
    """The `insert_chain` statement for rows and updates of this shape, with the fields whose
    values are its parameters and their `_plain_type`s, row by row and update by update."""
    row_shapes, update_shapes = shape
    clauses, row_fields, update_fields = [], [], []
    for n, (model, links) in enumerate(row_shapes):
        linked = dict(links)
        head, fields, plains = _insert_head(model)
        slots = [
            _slot(f) if f.attname not in linked else f"(SELECT {_pk_column(row_shapes[linked[f.attname]][0])} FROM r{linked[f.attname]})"
            for f in fields
        ]
        clauses.append(f"r{n} AS ({head} VALUES ({', '.join(slots)}) RETURNING {_pk_column(model)})")
        kept = [i for i, f in enumerate(fields) if f.attname not in linked]
        row_fields.append((tuple(fields[i] for i in kept), tuple(plains[i] for i in kept)))
    for n, (model, names) in enumerate(update_shapes):
        text, targets, plains = _update_head(model, names)
        clauses.append(f"u{n} AS ({text})")
        update_fields.append((targets, plains))
    ids = ", ".join(f"(SELECT {_pk_column(model)} FROM r{n})" for n, (model, _) in enumerate(row_shapes))
    return f"WITH {', '.join(clauses)} SELECT {ids}", tuple(row_fields), tuple(update_fields)
