"""Plain-SQL writes of model instances, for the hot paths (a purchase, a payout's delivery).

The ORM's compilation of an INSERT costs more CPU than the database spends executing it. These
write the same rows — each field's `pre_save` (auto_now…) and `get_db_prep_save` (dates,
decimals, JSON) applied exactly as `Model.save()` would — without the compilation. No signals are
sent: use them only for models that have no receivers.
"""

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
    meta = instance._meta
    qn = connection.ops.quote_name
    targets = [meta.get_field(name) for name in fields]
    values = [f.get_db_prep_save(f.pre_save(instance, False), connection) for f in targets]
    sql = f"UPDATE {qn(meta.db_table)} SET {', '.join(f'{qn(f.column)} = %s' for f in targets)} WHERE {qn(meta.pk.column)} = %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, instance.pk])
