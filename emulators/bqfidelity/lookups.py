"""Catalog lookups that cost one object, not the whole catalog: the emulator scales to thousands of tables.

This module changes no answer of the emulator, only what an answer costs.

What local-bigquery 0.4.0 does: every table lookup (tables.get, each table a query names, ``exists``
before a CREATE, the table rules) calls ``engine.database.objects()``, which runs ``SELECT ...
estimated_size FROM duckdb_tables() ... UNION ALL ... duckdb_views()`` and filters on the names
afterwards. ``duckdb_tables()`` enumerates every table of every attached database and computes the
``estimated_size`` of each one: for a DuckLake table that is a read of its statistics in the DuckLake
metadata database, about 0.7 ms a table. Each query job also runs ``duckdb_tables() WHERE temporary``
(``jobs/query.py`` ``execute``) to learn the session's temporary tables. Measured (2026-11-30) with 300
prod tables: one lookup 205 ms, 6 ms of it for 1,000 result tables (``emulator._results``); a query job
makes about ten of them, and a sync doubles the tables (prod + dev), so a 1,000-table sync spent
seconds per job enumerating.

What this module does instead, with the same answers:
- ``objects(project, dataset, table)`` on a DuckLake database (every BigQuery project) reads the
  tables from the DuckLake metadata catalog (``ducklake_table`` / ``ducklake_schema`` rows not ended
  by a later snapshot, i.e. the latest committed snapshot, which is what a fresh cursor's
  ``duckdb_tables()`` shows) and ``estimated_size`` from ``ducklake_table_stats.record_count``, which
  is where DuckLake's ``estimated_size`` comes from (0 for a table without statistics). Views still
  come from ``duckdb_views()``, which computes no sizes. Names are compared exactly, as before.
- On a plain DuckDB database (``emulator._results``: a query job's anonymous result table), one
  named table is bound by DuckDB (``EXPLAIN (FORMAT JSON) SELECT * FROM`` it: the plan names the
  table bound, so a name differing only in case is not taken for it, as ``duckdb_tables()``'s exact
  comparison did not) and its size is its row count: a result table is written once by its job
  (CREATE TABLE AS) and never modified, so its row count is its ``estimated_size``. Listing a whole
  plain database keeps the original enumeration.
- ``tables.columns()``'s NOT NULL columns and the ``_PARTITIONTIME`` check of the partition rules
  (both ``duckdb_columns()`` of every table, filtered afterwards) read that one table's live columns
  from ``ducklake_column`` (``DESCRIBE`` for a result table); a view's columns still come from DuckDB.
- A query job's temporary tables are read from ``duckdb_columns()`` of the ``temp`` database, minus
  its views: the same names as ``duckdb_tables() WHERE temporary``, without sizing every table.
- Job result tables are kept, as before, until the job is deleted: they no longer slow any lookup.
- ``INFORMATION_SCHEMA.TABLES`` (names, types and creation times only) is built from the dataset's
  table listing (``tables.list_``: the stored metadata of each table) instead of a full ``tables.load``
  of every table (schema from DuckDB, row count, bytes), which the view does not show: 43 s for the
  1,000 snapshots of one backup dataset, measured 2026-11-30 (bench/bench_ui.py). The other views
  (COLUMNS, TABLE_OPTIONS, PARTITIONS...) show what a full load reads, and keep it.
- DuckDB's Python client tries ``import pandas`` each time it converts a result (six times a table
  listed, through every entry of ``sys.path``) and pandas is not installed in the emulator's
  environment: that search was 0.8 s of the 1.3 s a 1,000-table listing took. The missing module is
  recorded as absent once (``sys.modules["pandas"] = None``: the import fails at once, as it did),
  so DuckDB's answers do not change.
- A query parameter becomes a DuckDB expression (``CAST($name AS ...)``) that local-bigquery parses
  with sqlglot at every placeholder of every translation of a statement (about 0.2 ms each: 1.8 s for
  an audit INSERT binding 9,375 values, translated more than once). The parsed expressions are kept
  by their text, and each placeholder gets a copy (about 0.02 ms), so the SQL produced is the same.

Each replacement was checked against the original query on the same catalog (tests/emulator/
test_lookups.py). Measured after (same 1,000-table probe): tables.get 14 ms, a query job 150 ms.

BigQuery's own lookups do not depend on how many tables a project holds (tables.get,
https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/get), so neither should the test bed's.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("bqfidelity.lookups")

# The query local-bigquery 0.4.0 runs at the start of every query job (jobs/query.py, execute).
TEMPORARY_SQL = "SELECT table_name FROM duckdb_tables() WHERE temporary"
# The same names without computing the size of every table of every database.
TEMPORARY_CHEAP_SQL = (
    "SELECT DISTINCT table_name FROM duckdb_columns() WHERE database_name = 'temp' "
    "AND table_name NOT IN (SELECT view_name FROM duckdb_views() WHERE database_name = 'temp')"
)
_VIEWS_SQL = (
    "SELECT view_name, 'VIEW', 0 FROM duckdb_views() WHERE database_name = $1 AND schema_name = $2 "
    "AND view_name = coalesce($3, view_name) AND NOT internal"
)


def _metadata_catalog(database_name: str) -> str:
    """The DuckLake metadata database DuckDB attaches for a DuckLake catalog (internal, not listed)."""
    return f"__ducklake_metadata_{database_name}"


def _ducklake_tables_sql(database_name: str) -> str:
    from local_bigquery.engine.database import quote

    meta = quote(_metadata_catalog(database_name))
    return (
        f"SELECT t.table_name, 'TABLE', coalesce(s.record_count, 0) FROM {meta}.ducklake_table t "
        f"JOIN {meta}.ducklake_schema sc ON sc.schema_id = t.schema_id AND sc.end_snapshot IS NULL "
        f"LEFT JOIN {meta}.ducklake_table_stats s ON s.table_id = t.table_id "
        "WHERE t.end_snapshot IS NULL AND sc.schema_name = $2 AND t.table_name = coalesce($3, t.table_name)"
    )


def _database_type(fetch: Callable[..., list[tuple]], database_name: str) -> str | None:
    rows = fetch("SELECT type FROM duckdb_databases() WHERE database_name = $1", [database_name])
    return rows[0][0] if rows else None


def _spellings(part: str) -> set[str]:
    return {part, '"' + part.replace('"', '""') + '"'}


def _plain_table_exists(fetch: Callable[..., list[tuple]], database_name: str, schema: str, table: str) -> bool:
    """Whether a plain DuckDB database holds a table of exactly this name (case included).

    DuckDB binds names case-insensitively, while ``duckdb_tables()`` compares them exactly: the
    plan of a scan names the table it bound, so a name that differs only in case does not match.
    """
    import duckdb
    from local_bigquery.engine.database import quote

    try:
        ((_, plan),) = fetch(f"EXPLAIN (FORMAT JSON) SELECT * FROM {quote(database_name, schema, table)}")
    except duckdb.CatalogException:
        return False
    try:
        bound = json.loads(plan)[0]["extra_info"]["Table"]
    except (ValueError, LookupError, TypeError):
        return False  # not a plain table scan (a view, a table function)
    return any(
        bound == f"{d}.{s}.{t}"
        for d in _spellings(database_name)
        for s in _spellings(schema)
        for t in _spellings(table)
    )


def _objects(
    database, original: Callable[..., list[tuple[str, str, int]]]
) -> Callable[..., list[tuple[str, str, int]]]:
    import duckdb

    @functools.wraps(original)
    def objects(project_id: str, dataset_id: str, table_id: str | None = None) -> list[tuple[str, str, int]]:
        params = [project_id, dataset_id, table_id]
        kind = _database_type(database.fetch, project_id)
        if kind == "ducklake":
            sql = f"{_ducklake_tables_sql(project_id)} UNION ALL {_VIEWS_SQL} ORDER BY 1"
            try:
                return database.fetch(sql, params)
            except duckdb.CatalogException:  # no metadata catalog under the expected name: size them all
                log.warning("DuckLake metadata of %s not found; enumerating the catalog", project_id)
                return original(project_id, dataset_id, table_id)
        if kind is None or table_id is None:
            return original(project_id, dataset_id, table_id)
        views = database.fetch(f"{_VIEWS_SQL} ORDER BY 1", params)
        if views:
            return views
        if not _plain_table_exists(database.fetch, project_id, dataset_id, table_id):
            return []
        try:
            ((count,),) = database.fetch(f"SELECT count(*) FROM {database.quote(project_id, dataset_id, table_id)}")
        except duckdb.CatalogException:  # dropped in between
            return []
        return [(table_id, "TABLE", int(count))]

    return objects


# Column queries of local-bigquery 0.4.0 that enumerate every column of every table
# (``duckdb_columns()``), by the exact text it sends; parameters: database, schema, table[, column].
REQUIRED_COLUMNS_SQL = (  # catalog/tables.py, columns(): the table's NOT NULL columns
    "SELECT column_name FROM duckdb_columns() WHERE database_name = ? "
    "AND schema_name = ? AND table_name = ? AND NOT is_nullable"
)
HAS_COLUMN_SQL = (  # sql/rules/partitions.py, _hidden(): does the table have a _PARTITIONTIME column
    "SELECT 1 FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ? AND column_name = ?"
)


def _ducklake_columns_sql(database_name: str, select: str, condition: str) -> str:
    """Top-level columns of one live DuckLake table (what ``duckdb_columns()`` lists for it)."""
    from local_bigquery.engine.database import quote

    meta = quote(_metadata_catalog(database_name))
    return (
        f"SELECT {select} FROM {meta}.ducklake_column c "
        f"JOIN {meta}.ducklake_table t ON t.table_id = c.table_id AND t.end_snapshot IS NULL "
        f"JOIN {meta}.ducklake_schema sc ON sc.schema_id = t.schema_id AND sc.end_snapshot IS NULL "
        "WHERE c.end_snapshot IS NULL AND c.parent_column IS NULL AND ? IS NOT NULL "
        f"AND sc.schema_name = ? AND t.table_name = ? AND {condition} ORDER BY c.column_order"
    )


def _is_view(fetch: Callable[..., list[tuple]], names: list) -> bool:
    return bool(
        fetch("SELECT 1 FROM duckdb_views() WHERE database_name = ? AND schema_name = ? AND view_name = ?", names)
    )


def _fetch(database, original: Callable[..., list[tuple]]) -> Callable[..., list[tuple]]:
    """``database.fetch`` answering the two column queries above from the DuckLake metadata."""
    import duckdb

    @functools.wraps(original)
    def fetch(sql: str, params: list | None = None) -> list[tuple]:
        if sql not in (REQUIRED_COLUMNS_SQL, HAS_COLUMN_SQL) or not params:
            return original(sql, params)
        kind = _database_type(original, params[0])
        if kind is not None and kind != "ducklake" and sql == REQUIRED_COLUMNS_SQL:
            # A plain DuckDB table (a job's result table): that one table's columns, if its name is exact.
            if not _plain_table_exists(original, *params[:3]):
                return original(sql, params) if _is_view(original, params[:3]) else []
            return original(f"SELECT column_name FROM (DESCRIBE {database.quote(*params[:3])}) WHERE \"null\" = 'NO'")
        if kind != "ducklake":
            return original(sql, params)
        if sql == REQUIRED_COLUMNS_SQL:
            cheap = _ducklake_columns_sql(params[0], "c.column_name", "NOT c.nulls_allowed")
        else:
            cheap = _ducklake_columns_sql(params[0], "1", "c.column_name = ?")
        try:
            rows = original(cheap, params)
        except duckdb.CatalogException:
            log.warning("DuckLake metadata of %s not found; enumerating every column", params[0])
            return original(sql, params)
        if rows or sql == REQUIRED_COLUMNS_SQL:
            return rows  # a view's columns are all nullable: no NOT NULL column either way
        if _is_view(original, params[:3]):
            return original(sql, params)  # a view's columns come from its query: ask DuckDB
        return rows

    return fetch


class _TemporaryTablesCursor:
    """A job's DuckDB cursor whose temporary-tables query (``TEMPORARY_SQL``) is answered cheaply.

    ``query.execute`` runs ``cur.sql(TEMPORARY_SQL)`` first and then hands ``cur`` on through the
    whole job (``cur.execute``, ``cur.sql``, fetches); every other call reaches the real cursor
    (local-bigquery never passes the cursor object itself to DuckDB's C API).
    """

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def sql(self, query: str, *args: Any, **kwargs: Any) -> Any:
        if query == TEMPORARY_SQL and not args and not kwargs:
            return self._cursor.sql(TEMPORARY_CHEAP_SQL)
        return self._cursor.sql(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def _patch_query_execute(query) -> None:
    import inspect

    original = query.execute
    if TEMPORARY_SQL not in inspect.getsource(original):
        log.warning("local_bigquery.jobs.query.execute no longer runs %r; left as it is", TEMPORARY_SQL)
        return

    @functools.wraps(original)
    def execute(cur, *args: Any, **kwargs: Any):
        return original(_TemporaryTablesCursor(cur), *args, **kwargs)

    query.execute = execute


def _listed_tables(information_schema) -> Callable[[str, str | None], tuple[list, list]]:
    """INFORMATION_SCHEMA.TABLES from the datasets' table listings: the rows of local-bigquery's
    ``table_list`` (same columns, same values) without loading each table's schema and statistics."""
    from local_bigquery.catalog import datasets, metadata, tables

    def table_list(project_id: str, dataset_id: str | None) -> tuple[list, list]:
        dataset_ids = [dataset_id] if dataset_id else [d.datasetReference.datasetId for d in datasets.list_(project_id)]
        listed = [
            summary
            for listing in metadata.existing(tables.list_, [(project_id, ds) for ds in dataset_ids])
            for summary in listing
        ]
        rows = [
            [
                *information_schema._identity(t),
                information_schema.TABLE_TYPES.get(t.type, t.type),
                "YES" if t.type == "TABLE" else "NO",
                "NO",
                information_schema._timestamp(t.creationTime),
            ]
            for t in listed
        ]
        return [
            *information_schema.IDENTITY,
            "table_type",
            "is_insertable_into",
            "is_typed",
            "creation_time TIMESTAMP",
        ], rows

    return table_list


def _record_missing_modules(names: tuple[str, ...] = ("pandas",)) -> list[str]:
    """Mark the modules that are not installed as absent in sys.modules, so that an import of one fails
    at once instead of searching sys.path again; returns the names marked."""
    import importlib.util
    import sys

    marked = []
    for name in names:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = None  # type: ignore[assignment]  # "import name" raises ImportError
            marked.append(name)
    return marked


class _ParsedOnce:
    """Stands for the ``sqlglot`` module in local-bigquery's parameter rules: ``parse_one`` of a text
    already parsed returns a copy of the first parse (a fresh tree each time, as a parse would)."""

    def __init__(self, sqlglot_module: Any, size: int = 50_000) -> None:
        self._sqlglot = sqlglot_module
        self._parse = functools.lru_cache(maxsize=size)(self._parse_uncached)

    def _parse_uncached(self, sql: str, dialect: str | None) -> Any:
        return self._sqlglot.parse_one(sql, dialect=dialect)

    def parse_one(self, sql: str, dialect: str | None = None, **options: Any) -> Any:
        if options:
            return self._sqlglot.parse_one(sql, dialect=dialect, **options)
        return self._parse(sql, dialect).copy()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqlglot, name)


def install() -> None:
    from local_bigquery.engine import database
    from local_bigquery.jobs import query
    from local_bigquery.sql.rules import information_schema, parameters

    database.fetch = _fetch(database, database.fetch)
    database.objects = _objects(database, database.objects)
    _patch_query_execute(query)
    information_schema.table_list = information_schema.VIEWS["TABLES"] = _listed_tables(information_schema)
    _record_missing_modules()
    parameters.sqlglot = _ParsedOnce(parameters.sqlglot)
