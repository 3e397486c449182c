"""Capture the SQL one POST /api/v1/cashbacks executes and turn it into pgbench scripts.

Import only after django.setup(). The capture runs the real view in-process (Django test client,
same settings and database as the gunicorn run) with an execute_wrapper that records every
statement exactly as psycopg sends it (client-side binding: the literal text), whether it ran
inside an atomic block, and where the transaction committed. Nothing here knows which statements
the view runs: the scripts follow the code as it changes.

Per-request values are turned into pgbench variables so that every pgbench transaction writes
distinct rows like the HTTP load does:
  * partner_ref, kezbek_ref          -> unique random strings ('pgb-:ref', 'KZPG:kzref');
  * the customer's MSISDN            -> a fresh random one (new-customer script) or one from the
                                        HTTP load's customer pool (existing-customer script);
  * ids returned by INSERT ... RETURNING or read by a SELECT and used by later statements
                                     -> \\gset variables (\\aset after a compound command; sequences
                                        are moved to distinctive values before the capture so that
                                        ids can be recognised in the text);
  * timestamp literals               -> now() plus the same offset from the request's "now".
Everything else (amounts, tier ids, counts, wallet) stays as captured: same statements, same
indexes, same constraints, same row locks.

Several statements sent in one query string (cezbek.sql.run_together) are written as one pgbench
compound command (`\\;`), so that pgbench sends them in one round trip too.

Statements that only Redis sees (replay guard, rate limit, the Celery enqueue after commit) are
not SQL and are not in the scripts. Django's CONN_HEALTH_CHECKS runs `SELECT 1` on the raw
connection at the first query of every request on a reused connection; that bypasses the
execute_wrapper, so it is added explicitly when the setting is on.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test import Client

from partners.signing import signed_headers

PATH = "/api/v1/cashbacks"
BEGIN, COMMIT, ROLLBACK = "BEGIN", "COMMIT", "ROLLBACK"
# Distinctive first ids (one per table) so that ids can be found in the captured text.
DISTINCT_ID_BASE = 7_300_000_000_000
DISTINCT_ID_STEP = 10_000_000_000


@dataclass
class Statement:
    sql: str
    in_atomic: bool
    kind: str = "sql"  # "sql", or BEGIN / COMMIT / ROLLBACK markers
    group: int | None = None  # statements sent together in one query string (cezbek.sql.run_together) share one


@dataclass
class Capture:
    label: str
    payload: dict
    status: int
    response: dict
    statements: list[Statement] = field(default_factory=list)

    @property
    def sql_count(self) -> int:
        return sum(1 for s in self.statements if s.kind == "sql")


def move_sequences_to_distinct_ids() -> dict[int, str]:
    """setval() every bigint id sequence of the project's tables; returns {first id: table}."""
    first_ids: dict[int, str] = {}
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT c.table_name, pg_get_serial_sequence(quote_ident(c.table_name), c.column_name)
            FROM information_schema.columns c
            WHERE c.table_schema = 'public' AND c.column_name = 'id' AND c.data_type = 'bigint'
              AND pg_get_serial_sequence(quote_ident(c.table_name), c.column_name) IS NOT NULL
            ORDER BY c.table_name
            """
        )
        rows = cur.fetchall()
        for k, (table, seq) in enumerate(rows):
            first = DISTINCT_ID_BASE + k * DISTINCT_ID_STEP
            cur.execute("SELECT setval(%s, %s, false)", [seq, first])
            first_ids[first] = table
    return first_ids


def _post(client: Client, key_id: str, secret: str, payload: dict):
    body = json.dumps(payload).encode()
    headers = signed_headers(key_id=key_id, secret=secret, method="POST", path=PATH, body=body, timestamp=int(time.time()))
    return client.generic("POST", PATH, body, content_type="application/json", headers=headers)


def capture_post(*, label: str, key_id: str, secret: str, payload: dict) -> Capture:
    """Runs one signed POST in-process and records its SQL, transaction boundaries included."""
    client = Client(HTTP_HOST="127.0.0.1")
    statements: list[Statement] = []

    def wrapper(execute, sql, params, many, context):
        if many:
            raise RuntimeError(f"executemany() in the request path is not supported by the generator: {sql[:120]}")
        in_atomic = connection.in_atomic_block
        result = execute(sql, params, many, context)
        pieces = sql.split("; ")  # several statements in one query string: pgbench sends them together too
        if len(pieces) > 1:
            group, rest = len(statements), list(params or [])
            for piece in pieces:
                used, rest = rest[: piece.count("%s")], rest[piece.count("%s"):]
                statements.append(Statement(sql=connection.ops.compose_sql(piece, used), in_atomic=in_atomic, group=group))
            return result
        text = connection.ops.last_executed_query(context["cursor"].cursor, sql, params)
        if text is None:
            raise RuntimeError(f"could not read the executed text of {sql[:120]}")
        statements.append(Statement(sql=text, in_atomic=in_atomic))
        return result

    original_commit, original_rollback = connection._commit, connection._rollback

    def commit():
        statements.append(Statement(sql="", in_atomic=False, kind=COMMIT))
        return original_commit()

    def rollback():
        statements.append(Statement(sql="", in_atomic=False, kind=ROLLBACK))
        return original_rollback()

    connection._commit, connection._rollback = commit, rollback
    try:
        with connection.execute_wrapper(wrapper):
            response = _post(client, key_id, secret, payload)
    finally:
        del connection._commit, connection._rollback  # back to the class methods
    if response.status_code not in (200, 201):
        raise RuntimeError(f"capture request {label} answered {response.status_code}: {response.content[:500]!r}")
    # psycopg opens a transaction (BEGIN) at the first statement once autocommit is off.
    marked: list[Statement] = []
    open_txn = False
    for st in statements:
        if st.kind == "sql" and st.in_atomic and not open_txn:
            marked.append(Statement(sql="", in_atomic=True, kind=BEGIN))
            open_txn = True
        if st.kind in (COMMIT, ROLLBACK):
            if not open_txn:
                continue  # commit of an atomic block that ran no statement: psycopg sends nothing
            open_txn = False
        marked.append(st)
    if any(s.kind == ROLLBACK for s in marked):
        raise RuntimeError(f"capture request {label} rolled back a transaction; the generator expects the happy path")
    db = settings.DATABASES["default"]
    if db.get("CONN_HEALTH_CHECKS") and db.get("CONN_MAX_AGE") != 0:
        marked.insert(0, Statement(sql="SELECT 1", in_atomic=False, kind="healthcheck"))
    return Capture(label=label, payload=payload, status=response.status_code, response=response.json(), statements=marked)


def inprocess_cost(*, key_id: str, secret: str, count: int, msisdn_base: int, customers: int, tag: str, profile_to=None) -> dict:
    """CPU and wall time of `count` POSTs run one at a time in this process (Django test client: no
    gunicorn, no concurrency, no other request competing for the CPU). With profile_to, also a
    cProfile of them (thread CPU, not wall time: waits on the database are left out; sorted by
    internal time) written to that path."""
    import cProfile
    import io
    import pstats
    import random

    client = Client(HTTP_HOST="127.0.0.1")
    rng = random.Random(7)
    payloads = [
        {"partner_ref": f"inproc-{tag}-{n}", "msisdn": f"628{msisdn_base + rng.randrange(customers)}",
         "quantity": 2, "amount": f"{rng.randrange(1_000_000, 300_000_000) / 100:.2f}", "wallet": "LSAJA"}
        for n in range(count)
    ]
    profiler = cProfile.Profile(time.thread_time) if profile_to else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for payload in payloads:
        response = _post(client, key_id, secret, payload)
        if response.status_code != 201:
            raise RuntimeError(f"in-process request answered {response.status_code}: {response.content[:300]!r}")
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)
        Path(profile_to).write_text(out.getvalue())
    return {"requests": count, "cpu_ms_per_request": 1000 * cpu / count, "wall_ms_per_request": 1000 * wall / count}


# --- pgbench script generation ----------------------------------------------------------------

TIMESTAMP_LITERAL = re.compile(
    r"'(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}(?::?\d{2})?|Z)?)'::timestamp(?:tz)?"
)
BIG_INT = re.compile(r"(?<![\w.'])(\d{13,19})(?![\w.'])")
INSERT_INTO = re.compile(r'^INSERT INTO "(\w+)"')
SELECT_FROM = re.compile(r'^SELECT .*? FROM "(\w+)"')


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(" ", "T").replace("Z", "+00:00"))


def _timestamp_expr(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if abs(seconds) < 1:
        return "now()"
    return f"(now() + interval '{seconds:.6f} seconds')"


def pgbench_script(capture: Capture, *, first_ids: dict[int, str], msisdn_expr: str, header: list[str]) -> str:
    """The pgbench script (-f) for one captured request: same statements, per-transaction values."""
    payload, response = capture.payload, capture.response
    replacements = {
        f"'{payload['partner_ref']}'": "'pgb-:ref'",
        f"'{response['kezbek_ref']}'": "'KZPG:kzref'",
        f"'{response['msisdn']}'": msisdn_expr,
    }
    sql_statements = [s for s in capture.statements if s.kind in ("sql", "healthcheck")]
    stamps = Counter(m.group(1) for s in sql_statements for m in TIMESTAMP_LITERAL.finditer(s.sql))
    now_ref = _parse_ts(stamps.most_common(1)[0][0]) if stamps else None
    tables_by_first_id = dict(first_ids)

    # Which captured ids are used by later statements, and which earlier statement yields them.
    gset_of: dict[int, str] = {}  # statement index -> \gset prefix
    var_of_id: dict[int, str] = {}
    texts = [s.sql for s in capture.statements]
    for i, st in enumerate(capture.statements):
        if st.kind not in ("sql",):
            continue
        for m in BIG_INT.finditer(st.sql):
            value = int(m.group(1))
            table = _table_of_id(value, tables_by_first_id)
            if table is None or value in var_of_id:
                continue
            definer = _definer(capture.statements, i, table)
            if definer is None:
                raise RuntimeError(
                    f"statement {i} uses id {value} of {table} but no earlier statement yields it:\n{st.sql}"
                )
            prefix = f"s{definer}_"
            gset_of[definer] = prefix
            var_of_id[value] = f"{prefix}{'id' if texts[definer].startswith('INSERT') else 'bench_id'}"

    out: list[str] = list(header)
    for i, st in enumerate(capture.statements):
        if st.kind == BEGIN:
            out.append("BEGIN;")
            continue
        if st.kind == COMMIT:
            out.append("COMMIT;")
            continue
        sql = st.sql
        if st.kind == "healthcheck":
            out.append("-- Django CONN_HEALTH_CHECKS: is_usable() on the reused connection")
        for literal, expr in replacements.items():
            sql = sql.replace(literal, expr)
        if now_ref is not None:
            sql = TIMESTAMP_LITERAL.sub(lambda m: _timestamp_expr(_parse_ts(m.group(1)) - now_ref), sql)
        sql = BIG_INT.sub(lambda m: f":{var_of_id[int(m.group(1))]}" if int(m.group(1)) in var_of_id else m.group(1), sql)
        if i in gset_of:
            table_match = SELECT_FROM.match(sql)
            if table_match and not sql.startswith("INSERT"):
                table = table_match.group(1)
                sql = sql.replace(f'SELECT "{table}"."id"', f'SELECT "{table}"."id" AS "bench_id"', 1)
                if '"bench_id"' not in sql:
                    raise RuntimeError(f"cannot alias the id column of statement {i}:\n{sql}")
        group = st.group
        last_of_group = group is None or i + 1 == len(capture.statements) or capture.statements[i + 1].group != group
        if not last_of_group:
            out.append(sql + " \\;")  # pgbench's compound command: one query string, as the application sends it
            continue
        members = [j for j in range(len(capture.statements)) if capture.statements[j].group == group] if group is not None else [i]
        definers = [j for j in members if j in gset_of]
        if len(definers) > 1:
            raise RuntimeError(f"statements {definers} of one query string both yield ids; the generator takes one")
        if definers:
            out.append(sql)
            # \aset: every statement of a compound command stores its columns (\gset would keep the last).
            out.append(f"\\{'aset' if len(members) > 1 else 'gset'} {gset_of[definers[0]]}")
        else:
            out.append(sql + ";")
    leftovers = [m.group(1) for line in out for m in BIG_INT.finditer(line) if _table_of_id(int(m.group(1)), tables_by_first_id)]
    if leftovers:
        raise RuntimeError(f"captured ids left in the script: {leftovers}")
    for literal in replacements:
        if any(literal in line for line in out):
            raise RuntimeError(f"per-request literal {literal} left in the script")
    return "\n".join(out) + "\n"


def _table_of_id(value: int, first_ids: dict[int, str]) -> str | None:
    for first, table in first_ids.items():
        if first <= value < first + DISTINCT_ID_STEP:
            return table
    return None


def _definer(statements: list[Statement], before: int, table: str) -> int | None:
    """The latest earlier statement that returns an id of `table`: its INSERT ... RETURNING or a SELECT from it."""
    for j in range(before - 1, -1, -1):
        sql = statements[j].sql
        if statements[j].kind != "sql":
            continue
        ins = INSERT_INTO.match(sql)
        if ins and ins.group(1) == table and " RETURNING " in sql:
            return j
        sel = SELECT_FROM.match(sql)
        if sel and sel.group(1) == table:
            return j
    return None


def describe(capture: Capture) -> str:
    lines = [f"{capture.label}: HTTP {capture.status}, {capture.sql_count} SQL statements"]
    for st in capture.statements:
        if st.kind in (BEGIN, COMMIT, ROLLBACK):
            lines.append(f"  {st.kind}")
        else:
            text = st.sql if len(st.sql) <= 160 else st.sql[:157] + "..."
            lines.append(f"  {'  ' if st.in_atomic else ''}{text}")
    return "\n".join(lines)
