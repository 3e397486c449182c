"""Plain-SQL writes of model instances, for the hot paths (a purchase, a payout's delivery).

The ORM's compilation of an INSERT costs more CPU than the database spends executing it. These
write the same rows — each field's `pre_save` (auto_now…) and `get_db_prep_save` (dates,
decimals, JSON) applied exactly as `Model.save()` would — without the compilation. No signals are
sent: use them only for models that have no receivers.
"""

from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Model


def insert(instance: Model) -> Model:
    """INSERTs a new instance and sets its primary key (like `Model.objects.create`)."""
    head, values = insert_parts(instance)
    sql = f"{head} VALUES ({', '.join(['%s'] * len(values))}) RETURNING {connection.ops.quote_name(instance._meta.pk.column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        saved(instance, cursor.fetchone()[0])
    return instance


def insert_ignore_parts(instance: Model) -> tuple[str, list]:
    """An INSERT of a new instance that does nothing when it would break a unique constraint, and
    its parameters."""
    head, values = insert_parts(instance)
    return f"{head} VALUES ({', '.join(['%s'] * len(values))}) ON CONFLICT DO NOTHING", values


def run_together(statements: list[tuple[str, list]]) -> list[list[tuple]]:
    """Runs (sql, params) statements in order; returns each one's rows (none for a statement that
    returns none). On PostgreSQL in one round trip: one query string, its results read one after
    the other (each statement still sees what committed before it started)."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            results = []
            for text, params in statements:
                cursor.execute(text, params)
                results.append(cursor.fetchall() if cursor.description else [])
            return results
        cursor.execute("; ".join(text for text, _ in statements), [p for _, params in statements for p in params])
        results = [cursor.fetchall() if cursor.description else []]
        while cursor.nextset():
            results.append(cursor.fetchall() if cursor.description else [])
    return results


def insert_parts(instance: Model) -> tuple[str, list]:
    """`INSERT INTO table (columns)` for a new instance, and its column values in that order."""
    meta = instance._meta
    qn = connection.ops.quote_name
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    return f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)})", values


def saved(instance: Model, pk) -> None:
    """Marks an instance inserted by hand as saved, with its new primary key."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias


def update(instance: Model, fields: list[str]) -> None:
    """UPDATEs some fields of a saved instance (like `save(update_fields=…)`)."""
    with connection.cursor() as cursor:
        cursor.execute(*update_parts(instance, fields))


def update_parts(instance: Model, fields: list[str]) -> tuple[str, list]:
    """The UPDATE statement of some fields of a saved instance, and its parameters."""
    meta = instance._meta
    qn = connection.ops.quote_name
    targets = [meta.get_field(name) for name in fields]
    values = [f.get_db_prep_save(f.pre_save(instance, False), connection) for f in targets]
    sql = f"UPDATE {qn(meta.db_table)} SET {', '.join(f'{qn(f.column)} = %s' for f in targets)} WHERE {qn(meta.pk.column)} = %s"
    return sql, [*values, instance.pk]


@dataclass
class Row:
    """A new row of an `insert_chain`: an unsaved instance, and the columns (by attname) whose
    value is the new id of an earlier row of the chain (by that row's instance)."""

    instance: Model
    links: dict[str, Model] = field(default_factory=dict)


def insert_chain(rows: list[Row], *, updates: list[tuple[Model, list[str]]] = ()) -> None:
    """INSERTs rows that refer to each other's new ids, in order, and UPDATEs saved instances;
    sets every new instance's primary key and linked columns.

    On PostgreSQL this is one statement, whatever the number of rows: each row a data-modifying
    `WITH` clause, its linked columns read from the clause that inserted their row. Elsewhere
    (SQLite) it is one statement per row, as `insert` and `update` would run them.
    """
    if connection.vendor != "postgresql":
        for row in rows:
            _link(row)
            insert(row.instance)
        for instance, fields in updates:
            update(instance, fields)
        return
    qn = connection.ops.quote_name
    names = {id(row.instance): f"r{n}" for n, row in enumerate(rows)}
    clauses, params = [], []
    for row in rows:
        meta = row.instance._meta
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        slots = []
        for f in fields:
            target = row.links.get(f.attname)
            if target is None:
                slots.append("%s")
                params.append(f.get_db_prep_save(f.pre_save(row.instance, True), connection))
            else:
                slots.append(f"(SELECT {qn(target._meta.pk.column)} FROM {names[id(target)]})")
        clauses.append(
            f"{names[id(row.instance)]} AS (INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
            f"VALUES ({', '.join(slots)}) RETURNING {qn(meta.pk.column)})"
        )
    for n, (instance, fields) in enumerate(updates):
        text, values = update_parts(instance, fields)
        clauses.append(f"u{n} AS ({text})")
        params.extend(values)
    ids = ", ".join(f"(SELECT {qn(row.instance._meta.pk.column)} FROM {names[id(row.instance)]})" for row in rows)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(clauses)} SELECT {ids}", params)
        new_ids = cursor.fetchone()
    for row, pk in zip(rows, new_ids, strict=True):
        saved(row.instance, pk)
    for row in rows:
        _link(row)


def _link(row: Row) -> None:
    """Sets a row's linked columns to their rows' ids, keeping a related instance it already holds."""
    for attname, target in row.links.items():
        relation = next(f for f in row.instance._meta.concrete_fields if f.attname == attname)
        held = relation.is_cached(row.instance) and relation.get_cached_value(row.instance) is target
        setattr(row.instance, attname, target.pk)
        if held:
            relation.set_cached_value(row.instance, target)
