"""Concurrent DDL that is idempotent by its own words does not fail because another job did the same.

BigQuery's DDL reference (https://cloud.google.com/bigquery/docs/reference/standard-sql/data-definition-language)
gives some statements an outcome that does not depend on what exists when they run: CREATE TABLE / VIEW
/ SCHEMA / FUNCTION ... IF NOT EXISTS has no effect if the object exists, DROP ... IF EXISTS has none if
it does not, ALTER TABLE ... ADD COLUMN IF NOT EXISTS / DROP COLUMN IF EXISTS none if the column is (not)
there. Two jobs running such a statement at the same moment both succeed on BigQuery: the one that comes
second finds the other's result and does nothing.

local-bigquery runs each statement of a query job in a DuckDB transaction of its own on the project's
DuckLake catalog, and DuckLake refuses the commit of the second one as a conflict (the conflicts it can
resolve itself it retries: ``ducklake_max_retry_count`` in local_bigquery/engine/database.py; a catalog
change to the same object it cannot)::

    duckdb.TransactionException: TransactionContext Error: Failed to commit: Failed to commit DuckLake
    transaction.
    Transaction conflict - attempting to create table "parity" in schema "envsync_audit" - but this table
    has been created by another transaction already

which the job answered with 400 ``invalidQuery`` "Failed to commit: Failed to commit DuckLake
transaction." ("attempting to drop table ... but another transaction has dropped it already", "...to
alter table ... but another transaction has altered it", "...to create schema ..." likewise). With this
module such a statement is run again when it fails with that conflict, up to ``ATTEMPTS`` times after a
short pause (``PAUSE_SECONDS``, doubled each time, jittered): it then sees the other job's result
(``ddlOperationPerformed: SKIP``). The same race has two other faces, run again as well: the statement
found the object (not) there just before the other job's commit and then meets DuckDB's "already exists" /
"does not exist" on that object (e.g. counting the rows of a table being dropped); or both jobs created it
(the second one's CREATE ... IF NOT EXISTS a no-op in DuckLake) and both record it in the emulator's own
catalog (emulator.duckdb) at once, where DuckDB refuses one: ``duckdb.TransactionException``
"Conflict on update!", or ``duckdb.ConstraintException`` 'Duplicate key "project_id: ..., table_id: ..."
violates primary key constraint' (seen in CI). Nothing else is run again:

- a conflict on any other statement stays the error it was. That includes a plain CREATE or DROP (one job
  wins, the others fail, as on BigQuery), DML (BigQuery queues or cancels conflicting DML itself:
  https://cloud.google.com/bigquery/docs/data-manipulation-language, "DML statement conflicts") and CREATE OR
  REPLACE: its outcome depends on the race (which job's definition and data the table ends with), and run
  again it would read its sources later than its job started, which BigQuery does not do; BigQuery documents
  nothing for two replacements of one table at once.
- a statement in a user's multi-statement transaction (BEGIN TRANSACTION ... COMMIT, in a script or across
  the queries of a session): its changes are committed by the COMMIT, which is not one of the statements
  above, so a conflict there fails the COMMIT as before. BigQuery cancels one of two conflicting
  transactions (https://cloud.google.com/bigquery/docs/transactions, "Transaction concurrency":
  "Conflicting transactions are cancelled") and never runs their statements again one by one. As a guard,
  a statement that failed inside an open transaction (DuckDB marks it aborted) is never run again either.
- dry runs (they commit nothing).

Hook: ``local_bigquery.jobs.query._statement`` (one statement of a query job, with its DuckDB cursor), so
a statement run again is analyzed once (``analyzer`` hooks the script interpreter, which calls it) and
counted once by ``ratelimits`` (installed after this module, its wrapper is outside this one).
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("bqfidelity.conflicts")

ATTEMPTS = 8  # runs of one statement in all, the first included
PAUSE_SECONDS = 0.02  # before the second run; doubled before each further one (jittered), at most MAX_PAUSE_SECONDS
MAX_PAUSE_SECONDS = 0.5
DUCKLAKE_CONFLICT = "Failed to commit DuckLake transaction"
CONFLICT_DETAIL = "Transaction conflict"
DUCKDB_CONFLICT = re.compile(r"Conflict on (?:update|tuple deletion)|write-write conflict", re.IGNORECASE)


def _duckdb_error(error: BaseException) -> BaseException | None:
    """The DuckDB exception behind `error` (local-bigquery raises its BigQueryError from it), if any."""
    import duckdb

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, duckdb.Error):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def conflict(error: BaseException) -> bool:
    """Whether `error` is a conflict with another transaction: DuckLake's refusal to commit (its catalog and
    data), or DuckDB's write-write conflict on a row of the emulator's own catalog (emulator.duckdb, where
    each job records the table it created)."""
    import duckdb

    cause = _duckdb_error(error)
    if not isinstance(cause, duckdb.TransactionException):
        return False
    message = str(cause)
    if DUCKLAKE_CONFLICT in message and CONFLICT_DETAIL in message:
        return True
    return DUCKDB_CONFLICT.search(message.split("\n")[0]) is not None


def _catalog_race(error: BaseException, name: str) -> bool:
    """Whether `error` is DuckDB's "already exists" / "does not exist" of the object `name`: what a statement
    that checked the catalog just before another job's commit meets."""
    import duckdb

    cause = _duckdb_error(error)
    first = str(cause).split("\n")[0]
    if not isinstance(cause, duckdb.CatalogException) or not name:
        return False
    named = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", first, re.IGNORECASE) is not None
    return named and ("already exists" in first or "does not exist" in first)


def _record_race(error: BaseException, name: str) -> bool:
    """Whether `error` is DuckDB's duplicate key on the emulator's own record of the object `name`
    (emulator.duckdb: `Duplicate key "project_id: p, dataset_id: d, table_id: t" violates primary key
    constraint`): both jobs created it (the second one's CREATE ... IF NOT EXISTS a no-op in DuckLake)
    and inserted its record at once."""
    import duckdb

    cause = _duckdb_error(error)
    if not isinstance(cause, duckdb.ConstraintException) or not name:
        return False
    first = str(cause).split("\n")[0]
    key = re.search(r'Duplicate key "([^"]*)" violates primary key constraint', first)
    return key is not None and re.search(rf"_id: {re.escape(name)}(?:,|$)", key.group(1), re.IGNORECASE) is not None


def idempotent(tree: Any) -> str | None:
    """The name of the object `tree` creates, drops or alters when the statement is idempotent by its own
    words (CREATE ... IF NOT EXISTS, not OR REPLACE; DROP ... IF EXISTS; ALTER TABLE whose every action is
    ADD COLUMN IF NOT EXISTS or DROP COLUMN IF EXISTS); None for any other statement."""
    from local_bigquery.sql.rules import ddl
    from sqlglot import exp

    try:
        node = ddl.normalise(tree)  # CREATE SNAPSHOT TABLE comes as a command
    except Exception:  # noqa: BLE001 - a statement the emulator cannot read is left to it
        return None
    if isinstance(node, exp.Create):
        chosen = bool(node.args.get("exists")) and not node.args.get("replace")
    elif isinstance(node, exp.Drop):
        chosen = bool(node.args.get("exists"))
    elif isinstance(node, exp.Alter):
        actions = node.args.get("actions") or []
        chosen = bool(actions) and all(
            (
                isinstance(action, exp.ColumnDef)
                or (isinstance(action, exp.Drop) and action.args.get("kind") == "COLUMN")
            )
            and bool(action.args.get("exists"))
            for action in actions
        )
    else:
        chosen = False
    target = node.find(exp.Table) if chosen else None
    if target is None:
        return None
    if str(node.args.get("kind") or "").upper() == "SCHEMA":  # the dataset: `project.dataset` or `dataset`
        return (target.db or target.name).rsplit(".", 1)[-1]
    return target.name


def _in_transaction(cur: Any) -> bool:
    """Whether `cur` is inside a user's transaction: there DuckDB marks the transaction aborted after a
    failed statement and refuses any other until ROLLBACK; outside one, a failed statement's own
    transaction is over and the probe runs."""
    import duckdb

    try:
        cur.execute("SELECT 1").fetchall()
    except duckdb.TransactionException:
        return True
    return False


def _pause(attempt: int) -> float:
    return min(MAX_PAUSE_SECONDS, PAUSE_SECONDS * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def _retrying(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _statement(cur, tree, context, destination, config, dry_run, isolated):  # type: ignore[no-untyped-def]
        attempt = 1
        while True:
            try:
                return original(cur, tree, context, destination, config, dry_run, isolated)
            except Exception as error:
                if dry_run or attempt >= ATTEMPTS:
                    raise
                name = idempotent(tree)
                if name is None or not (conflict(error) or _catalog_race(error, name) or _record_race(error, name)):
                    raise
                if _in_transaction(cur):
                    raise
                detail = str(_duckdb_error(error)).replace("\n", " ")
                log.info(
                    "run %d of an idempotent statement on %s lost a race (%s): running it again", attempt, name, detail
                )
            time.sleep(_pause(attempt))
            attempt += 1

    return _statement


def install() -> None:
    """Hook local-bigquery: one statement of a query job that is idempotent by its own words and lost a
    race to another job's commit is run again."""
    from local_bigquery.jobs import query

    query._statement = _retrying(query._statement)
