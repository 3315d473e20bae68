"""BigQuery's table and job rules that local-bigquery 0.4.0 gets wrong or does not enforce.

Each rule names the BigQuery documentation it follows and answers with BigQuery's error (reason and
message) where the documentation or BigQuery itself gives one:

1. Partition filters (``require_partition_filter``)
   https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries
   A query (or DML statement) that reads such a table needs, in the query block that reads it (its
   WHERE, a JOIN's ON, a MERGE's ON; or an outer WHERE that the filter can be pushed down from),
   at least one conjunct that references only the partitioning column: ``WHERE d = x``,
   ``WHERE f = y AND d = x`` and ``WHERE d IS NULL OR d >= x`` qualify; ``WHERE d = x OR f = y``,
   ``WHERE true`` and no WHERE do not. Ingestion-time tables filter on ``_PARTITIONTIME`` /
   ``_PARTITIONDATE``. Otherwise: ``Cannot query over table 'p.d.t' without a filter over
   column(s) 'col' that can be used for partition elimination`` (invalidQuery). CLONE, CREATE
   SNAPSHOT TABLE and copy jobs are not queries: their source is exempt (the emulator runs a clone
   as ``SELECT * FROM source``). Creating a view, DROP/ALTER/TRUNCATE and metadata reads are exempt.
2. Time travel bounds
   https://cloud.google.com/bigquery/docs/access-historical-data and
   https://cloud.google.com/bigquery/docs/time-travel
   ``FOR SYSTEM_TIME AS OF`` (in queries, CLONE and CREATE SNAPSHOT TABLE; a literal, a parameter
   or any constant expression, evaluated) and ``table@<ms>`` decorators in copy jobs must lie
   between max(the table's creation, now - the dataset's max_time_travel_hours) and now:
   ``Invalid snapshot time <ms> for table <p>:<d>.<t>@<ms>. Cannot read before <ms>.``
   A table replaced by CREATE OR REPLACE keeps its earlier versions readable (the bound is the
   creation of the first table of the replacement chain). ``@0`` is the oldest available instant.
3. Dataset ``max_time_travel_hours`` / ``maxTimeTravelHours``: a multiple of 24 from 48 to 168
   https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window and
   https://cloud.google.com/bigquery/docs/reference/standard-sql/data-definition-language#schema_option_list
   on datasets.insert/patch/update, CREATE SCHEMA and ALTER SCHEMA SET OPTIONS (the emulator
   ignored the DDL option).
4. Partitions modified by one job: 4,000 (https://cloud.google.com/bigquery/quotas#partitioned_tables,
   "Each job operation (query or load) can affect up to 4,000 partitions. BigQuery rejects any
   query or load job that attempts to modify more than 4,000 partitions."): CTAS with PARTITION
   BY, INSERT, DELETE, UPDATE, MERGE, query jobs with a destination table and load jobs into a
   partitioned table fail before writing anything: ``Too many partitions produced by query,
   allowed 4000, query produces at least <n> partitions``. Copy, clone and snapshot jobs copy
   tables (metadata operations), they are not limited by it.
5. Query parameters per query: 10,000 (https://cloud.google.com/bigquery/quotas#query_jobs,
   "A GoogleSQL query can have up to 10,000 parameters."): refused when the job is inserted (400).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import time
from collections.abc import Callable, Iterable

import duckdb
from local_bigquery.catalog import datasets as catalog_datasets
from local_bigquery.catalog import ddl as catalog_ddl
from local_bigquery.catalog import metadata, names, tables
from local_bigquery.catalog import options as catalog_options
from local_bigquery.engine import database
from local_bigquery.errors import BigQueryError
from local_bigquery.jobs import copy as copy_job
from local_bigquery.jobs import merge as merge_job
from local_bigquery.jobs import query as query_job
from local_bigquery.jobs import runner
from local_bigquery.models import (
    Dataset,
    JobConfigurationLoad,
    JobConfigurationQuery,
    Table,
)
from local_bigquery.sql import rules as sql_rules
from local_bigquery.sql import translate as sql_translate
from local_bigquery.sql.dialect import DuckDBDialect
from local_bigquery.sql.rules import ddl as rules_ddl
from local_bigquery.sql.rules import tables as rules_tables
from sqlglot import exp

log = logging.getLogger("bqfidelity.rules")

PARTITION_FILTER_DOC = (
    "https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries"
)
TIME_TRAVEL_DOC = "https://cloud.google.com/bigquery/docs/access-historical-data"
TIME_TRAVEL_WINDOW_DOC = "https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window"
QUOTAS_DOC = "https://cloud.google.com/bigquery/quotas"

INGESTION_COLUMNS = ("_PARTITION_LOAD_TIME", "_PARTITIONDATE", "_PARTITIONTIME")
DEFAULT_TIME_TRAVEL_HOURS = 168
TIME_TRAVEL_HOURS = range(48, 169, 24)
MAX_PARTITIONS_PER_JOB = 4000
MAX_QUERY_PARAMETERS = 10_000
HOUR_MS = 3_600_000
CLONE_MARK = "bqfidelity_clone"

# Tables whose partition filter was checked on a MERGE statement as a whole: the emulator runs a
# MERGE as several internal statements (scans of the target by rowid) that must not be re-checked.
_merge_checked: contextvars.ContextVar[frozenset] = contextvars.ContextVar(
    "bqfidelity_merge_checked", default=frozenset()
)


# --------------------------------------------------------------------------------------------
# 1. Partition filters


def _without_crude_filter_check(original: Callable) -> Callable:
    """local-bigquery's per-table check (names, existence, immutable snapshots) ends with a crude
    partition-filter test (any WHERE anywhere mentioning the column); ``partition_filter`` replaces
    that last test, so its error is dropped here (nothing of the check follows it)."""

    @functools.wraps(original)
    def _check(tree: exp.Expression, table: exp.Table, is_target: bool):
        try:
            return original(tree, table, is_target)
        except BigQueryError as error:
            if error.message.startswith("Cannot query over table "):
                return None
            raise

    return _check


def _partition_columns(stored: Table | None) -> tuple[str, ...]:
    """The columns a partition filter of this table may use (empty when it needs none)."""
    if stored is None or not stored.requirePartitionFilter:
        return ()
    if (time_part := stored.timePartitioning) is not None:
        return (time_part.field,) if time_part.field else INGESTION_COLUMNS
    if (range_part := stored.rangePartitioning) is not None and range_part.field:
        return (range_part.field,)
    return ()


def _no_filter_error(reference: tuple[str, str, str], columns: tuple[str, ...]) -> BigQueryError:
    listed = ", ".join(f"'{column}'" for column in columns)
    return BigQueryError(
        "invalidQuery",
        f"Cannot query over table '{'.'.join(reference)}' without a filter over column(s) "
        f"{listed} that can be used for partition elimination",
    )


def _conjuncts(condition: exp.Expression | None) -> Iterable[exp.Expression]:
    if condition is None:
        return
    if isinstance(condition, exp.Where):
        condition = condition.this
    while isinstance(condition, exp.Paren):
        condition = condition.this
    if isinstance(condition, exp.And):
        yield from _conjuncts(condition.this)
        yield from _conjuncts(condition.expression)
    else:
        yield condition


def _eligible(predicate: exp.Expression, qualifiers: set[str], columns: set[str]) -> bool:
    """A predicate that references only the partitioning column (and constants or parameters):
    BigQuery can eliminate partitions with it. A subquery makes it dynamic (no elimination)."""
    if predicate.find(exp.Select, exp.Subquery) is not None:
        return False
    found = list(predicate.find_all(exp.Column))
    if not found:
        return False
    for column in found:
        if column.name.casefold() not in columns:
            return False
        if column.table and column.table.casefold() not in qualifiers:
            return False
    return True


def _scope(node: exp.Expression) -> exp.Expression | None:
    """The query block (or DML statement) in which ``node`` is read."""
    parent = node.parent
    while parent is not None and not isinstance(parent, exp.Select | exp.Delete | exp.Update | exp.Merge):
        parent = parent.parent
    return parent


def _conditions(scope: exp.Expression) -> list[exp.Expression]:
    if isinstance(scope, exp.Merge):
        return [scope.args.get("on")]
    found = [scope.args.get("where")]
    if isinstance(scope, exp.Select):
        found += [join.args.get("on") for join in scope.args.get("joins") or []]
    return [condition for condition in found if condition is not None]


def _exposed(select: exp.Select, qualifiers: set[str], columns: set[str]) -> set[str]:
    """Names under which ``select`` outputs the partitioning column unchanged."""
    if select.find(exp.Window) is not None:
        return set()
    pseudo = {column.casefold() for column in INGESTION_COLUMNS}
    exposed: set[str] = set()
    for _position, projection in enumerate(select.expressions):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(projection, exp.Star) or (
            isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
        ):
            if isinstance(projection, exp.Column) and projection.table.casefold() not in qualifiers:
                continue
            excluded = {c.name.casefold() for c in projection.args.get("except_") or []}
            exposed |= {c for c in columns - excluded if c not in pseudo}
            continue
        if not isinstance(inner, exp.Column) or inner.name.casefold() not in columns:
            continue
        if inner.table and inner.table.casefold() not in qualifiers:
            continue
        exposed.add((projection.alias_or_name or inner.name).casefold())
    return exposed


def _filtered(node: exp.Expression, qualifiers: set[str], columns: set[str], root: exp.Expression) -> bool:
    """Whether the relation ``node`` (a table, a derived table or a CTE reference) is read with an
    eligible partition filter on ``columns``, in its own query block or pushed down from outside."""
    scope = _scope(node)
    if scope is None:
        return False
    for condition in _conditions(scope):
        if any(_eligible(c, qualifiers, columns) for c in _conjuncts(condition)):
            return True
    if not isinstance(scope, exp.Select) or scope.args.get("limit") is not None:
        return False
    exposed = _exposed(scope, qualifiers, columns)
    if not exposed:
        return False
    container = scope.parent
    if isinstance(container, exp.SetOperation):
        first = container
        while isinstance(first, exp.SetOperation):
            first = first.this
        if first is not scope and isinstance(first, exp.Select):
            own = [p.alias_or_name.casefold() for p in scope.expressions]
            theirs = [p.alias_or_name.casefold() for p in first.expressions]
            exposed = {theirs[own.index(n)] for n in exposed if n in own and own.index(n) < len(theirs)}
        while isinstance(container, exp.SetOperation):
            container = container.parent
    if isinstance(container, exp.Subquery):
        alias = container.alias_or_name.casefold()
        return _filtered(container, {alias} if alias else set(), exposed, root)
    if isinstance(container, exp.CTE):
        name = container.alias_or_name.casefold()
        readers = [table for table in root.find_all(exp.Table) if not table.db and table.name.casefold() == name]
        return bool(readers) and all(
            _filtered(reader, {reader.alias_or_name.casefold(), name}, exposed, root) for reader in readers
        )
    return False


def _exempt(tree: exp.Expression) -> bool:
    if tree.meta.get(CLONE_MARK):
        return True  # CREATE TABLE ... CLONE / CREATE SNAPSHOT TABLE: not a query
    if isinstance(tree, exp.Drop | exp.Alter | exp.TruncateTable | exp.Command):
        return True
    return isinstance(tree, exp.Create) and (tree.args.get("kind") or "").upper() != "TABLE"


def _with_views_expanded(tree: exp.Expression, depth: int = 0) -> exp.Expression:
    """A copy of ``tree`` in which each view is replaced by its query (as a derived table): a query
    over a view reads the view's tables, and BigQuery checks their partition filters after pushing
    the outer query's predicates into the view. Views nest at most 16 levels (quotas)."""
    found = False
    for table in list(tree.find_all(exp.Table)):
        reference = (table.catalog, table.db, table.name)
        if not all(reference) or reference[0] == "emulator" or depth > 16:
            continue
        stored = metadata.load(Table, *reference)
        definition = stored.view.query if stored is not None and stored.view is not None else None
        if not definition:
            continue
        try:
            inner = sql_translate.parse(definition)[0]
        except Exception:  # the view was translated when it was created
            continue
        ctes = {cte.alias_or_name.casefold() for cte in inner.find_all(exp.CTE)}
        for read in inner.find_all(exp.Table):
            if not read.db and read.name.casefold() in ctes:
                continue
            if not read.db:
                read.set("db", exp.to_identifier(reference[1]))
            if not read.catalog:
                read.set("catalog", exp.to_identifier(reference[0]))
        alias = exp.TableAlias(this=exp.to_identifier(table.alias_or_name))
        table.replace(exp.Subquery(this=inner, alias=alias))
        found = True
    return _with_views_expanded(tree, depth + 1) if found else tree


def partition_filter(tree: exp.Expression, context) -> exp.Expression:
    """Statement rule, after ``qualify`` (tables carry their physical names)."""
    if _exempt(tree):
        return tree
    checked_tree = _with_views_expanded(tree.copy())
    _check_partition_filters(checked_tree)
    return tree


def _check_partition_filters(tree: exp.Expression) -> None:
    target = names.target(tree)
    checked = _merge_checked.get()
    for table in tree.find_all(exp.Table):
        if table is target and not isinstance(tree, exp.Delete | exp.Update | exp.Merge):
            continue
        reference = (table.catalog, table.db, table.name)
        if not all(reference) or reference[0] == "emulator" or reference in checked:
            continue
        columns = _partition_columns(metadata.load(Table, *reference))
        if not columns:
            continue
        qualifiers = {table.alias_or_name.casefold(), table.name.casefold()}
        if not _filtered(table, qualifiers, {c.casefold() for c in columns}, tree):
            raise _no_filter_error(reference, columns)


def _marked_split(original: Callable) -> Callable:
    @functools.wraps(original)
    def split(tree: exp.Expression) -> list[exp.Expression]:
        parts = original(tree)
        if isinstance(tree, exp.Create) and tree.args.get("clone") is not None:
            for part in parts:
                part.meta[CLONE_MARK] = True
        return parts

    return split


def _checked_merge(original: Callable) -> Callable:
    @functools.wraps(original)
    def run(cur, tree: exp.Merge, context):
        references = []
        for table in (tree.this, tree.args.get("using")):
            if not isinstance(table, exp.Table):
                continue
            reference = names.reference(table, context.project_id, context.dataset_id)
            references.append(reference)
            columns = _partition_columns(metadata.load(Table, *reference))
            qualifiers = {table.alias_or_name.casefold(), table.name.casefold()}
            if columns and not _filtered(table, qualifiers, {c.casefold() for c in columns}, tree):
                raise _no_filter_error(reference, columns)
        _check_merge_partitions(cur, tree, context)
        token = _merge_checked.set(frozenset(references))
        try:
            return original(cur, tree, context)
        finally:
            _merge_checked.reset(token)

    return run


# --------------------------------------------------------------------------------------------
# 2. Time travel bounds


def _now_ms() -> int:
    return int(time.time() * 1000)


def _time_travel_hours(project_id: str, dataset_id: str) -> int:
    dataset = metadata.load(Dataset, project_id, dataset_id)
    hours = dataset and dataset.maxTimeTravelHours
    return int(hours) if hours else DEFAULT_TIME_TRAVEL_HOURS


def _first_generation_ms(project_id: str, dataset_id: str, table_id: str, created: int | None) -> int | None:
    """Creation of the first table of a CREATE OR REPLACE chain ending with this table.

    BigQuery: "After you replace an existing table by using the CREATE OR REPLACE TABLE statement,
    you can use FOR SYSTEM_TIME AS OF to query the previous version of the table." DuckLake keeps one
    row per table version; a replacement ends the old row in the snapshot that begins the new one
    (a DROP then a CREATE are two snapshots, and the new table's history starts at its creation).
    """
    meta = database.quote(f"__ducklake_metadata_{project_id}")
    try:
        rows = database.fetch(
            f"SELECT t.begin_snapshot, t.end_snapshot, epoch_ms(s.snapshot_time) "
            f"FROM {meta}.ducklake_table t JOIN {meta}.ducklake_schema d USING (schema_id) "
            f"JOIN {meta}.ducklake_snapshot s ON s.snapshot_id = t.begin_snapshot "
            f"WHERE d.schema_name = ? AND d.end_snapshot IS NULL AND t.table_name = ?",
            [dataset_id, table_id],
        )
    except Exception:  # no DuckLake catalog for this project (or another layout): keep creationTime
        return created
    current = next((row for row in rows if row[1] is None), None)
    if current is None:
        return created
    ended = {row[1]: row for row in rows if row[1] is not None}
    begin, first_ms, generations = current[0], current[2], 1
    while begin in ended:
        begin, _, first_ms = ended[begin]
        generations += 1
    if generations == 1 or created is None:
        return created if created is not None else first_ms
    return min(int(first_ms), created)


def _lower_bound(project_id: str, dataset_id: str, table_id: str, now: int) -> int | None:
    stored = metadata.load(Table, project_id, dataset_id, table_id)
    if stored is None:
        return None
    created = int(stored.creationTime) if stored.creationTime else None
    first = _first_generation_ms(project_id, dataset_id, table_id, created)
    window = now - _time_travel_hours(project_id, dataset_id) * HOUR_MS
    return max(window, first) if first is not None else window


def check_snapshot_time(project_id: str, dataset_id: str, table_id: str, instant: int) -> None:
    """Refuse a read of the table as of ``instant`` (ms since the epoch) outside its history."""
    now = _now_ms()
    lower = _lower_bound(project_id, dataset_id, table_id, now)
    if lower is None:
        return
    decorated = f"{names.label(project_id, dataset_id, table_id)}@{instant}"
    if instant < lower:
        raise BigQueryError(
            "invalid",
            f"Invalid snapshot time {instant} for table {decorated}. Cannot read before {lower}.",
        )
    if instant > now:
        raise BigQueryError(
            "invalid",
            f"Invalid snapshot time {instant} for table {decorated}. Cannot read after {now}.",
        )


PARAMETER = re.compile(r"\$(\w+)")


def _evaluate_instant(expression: exp.Expression, context) -> int | None:
    """The instant of a (translated, DuckDB) FOR SYSTEM_TIME AS OF expression, in ms; None if it
    cannot be evaluated on its own (DuckDB then reports the problem as before)."""
    cast = exp.cast(expression.copy(), exp.DataType.build("TIMESTAMPTZ"))
    sql = exp.select(exp.func("epoch_ms", cast)).sql(dialect=DuckDBDialect)
    bound = {name: context.values[name] for name in PARAMETER.findall(sql) if name in context.values}
    try:
        with database.cursor() as cur:
            [(value,)] = cur.execute(sql, bound or None).fetchall()
    except Exception as error:  # DuckDB reports it when the statement runs
        log.debug("could not evaluate %s: %s", sql, error)
        return None
    return None if value is None else int(value)


def _bounded_time_travel(original: Callable) -> Callable:
    @functools.wraps(original)
    def time_travel(node: exp.Expression, context) -> exp.Expression:
        if isinstance(node, exp.Table) and (version := node.args.get("version")):
            reference = (node.catalog, node.db, node.name)
            if all(reference) and reference[0] != "emulator":
                instant = _evaluate_instant(version.expression, context)
                if instant is not None:
                    check_snapshot_time(*reference, instant)
        return original(node, context)

    return time_travel


def _bounded_decorator(original: Callable) -> Callable:
    """Copy-job sources ``table@<ms>`` (absolute), ``table@-<ms>`` (relative to now), ``table@0``
    (the oldest available instant): https://cloud.google.com/bigquery/docs/access-historical-data"""

    @functools.wraps(original)
    def decorated(project_id: str, dataset_id: str, table_id: str) -> str | None:
        match = rules_tables.DECORATOR.match(table_id)
        if not match:
            return original(project_id, dataset_id, table_id)
        base, offset = match[1], int(match[2])
        now = _now_ms()
        if offset == 0:
            instant = _lower_bound(project_id, dataset_id, base, now) or now
        else:
            instant = offset if offset > 0 else now + offset
        check_snapshot_time(project_id, dataset_id, base, instant)
        return original(project_id, dataset_id, f"{base}@{instant}")

    return decorated


# --------------------------------------------------------------------------------------------
# 3. Dataset time-travel window


def check_time_travel_hours(value) -> None:
    if value is None:
        return
    text = str(value)
    hours = int(text) if re.fullmatch(r"-?\d+", text) else None
    if hours not in TIME_TRAVEL_HOURS:
        raise BigQueryError(
            "invalid",
            f"Invalid value for max_time_travel_hours: {text}. The time travel window must be an "
            "integer number of hours, a multiple of 24 (48, 72, 96, 120, 144, 168) between 48 "
            "(2 days) and 168 (7 days).",
        )


TIME_TRAVEL_OPTION = catalog_options.Option(
    "maxTimeTravelHours",
    "INT64",
    lambda node, evaluate: str(evaluate(node)),
    str,
)


def _checked_dataset_create(original: Callable) -> Callable:
    @functools.wraps(original)
    def create(project_id: str, body: Dataset) -> Dataset:
        check_time_travel_hours(body.maxTimeTravelHours)
        return original(project_id, body)

    return create


def _checked_dataset_update(original: Callable) -> Callable:
    @functools.wraps(original)
    def update(project_id, dataset_id, body: Dataset, etag, replace):
        check_time_travel_hours(body.maxTimeTravelHours)
        return original(project_id, dataset_id, body, etag, replace)

    return update


def _check_schema_options(cur, tree: exp.Expression) -> None:
    if not isinstance(tree, exp.Create | exp.Alter) or (tree.args.get("kind") or "").upper() != "SCHEMA":
        return
    node = tree.args.get("properties") if isinstance(tree, exp.Create) else tree
    found = catalog_options.options(node, {"max_time_travel_hours": TIME_TRAVEL_OPTION}, query_job._evaluator(cur))
    check_time_travel_hours(found.get("maxTimeTravelHours"))


# --------------------------------------------------------------------------------------------
# 4. Partitions modified per job


def _partitioning(resource) -> tuple[str, str | None, tuple[int, int, int] | None] | None:
    """(kind, field, range) of a Table or a job configuration's partitioning; None if unpartitioned."""
    if (time_part := getattr(resource, "timePartitioning", None)) is not None:
        return ((time_part.type or "DAY").upper(), time_part.field, None)
    range_part = getattr(resource, "rangePartitioning", None)
    if range_part is not None and range_part.field and range_part.range is not None:
        bounds = range_part.range
        return ("RANGE", range_part.field, (int(bounds.start), int(bounds.end), int(bounds.interval)))
    return None


def _partition_key(column: str, spec) -> str:
    kind, _, bounds = spec
    quoted = database.quote(column)
    if kind == "RANGE":
        start, end, interval = bounds
        return (
            f"CASE WHEN {quoted} IS NULL THEN NULL "
            f"WHEN {quoted} >= {start} AND {quoted} < {end} "
            f"THEN CAST(floor(({quoted} - {start}) / {interval}) AS BIGINT) ELSE -1 END"
        )
    return f"date_trunc('{kind.lower()}', {quoted})"


def _count_partitions(cur, sql: str, bound: dict | None, column: str, spec) -> int:
    """Distinct partitions of the rows ``sql`` yields (NULL is the __NULL__ partition); 0 when they
    cannot be counted (the statement itself then runs, or fails, as before)."""
    key = _partition_key(column, spec)
    counting = (
        "SELECT count(DISTINCT __k) + CAST(count(*) FILTER (WHERE __k IS NULL) > 0 AS INT) "
        f"FROM (SELECT {key} AS __k FROM ({sql}))"
    )
    try:
        [(count,)] = cur.execute(counting, bound or None).fetchall()
    except duckdb.Error as error:
        log.warning("could not count the partitions a job modifies: %s", error)
        return 0
    return int(count or 0)


def _range_aware(original: Callable) -> Callable:
    """``PARTITION BY RANGE_BUCKET(col, GENERATE_ARRAY(start, end, interval))``: the emulator's
    dialect parses a lower-case ``range_bucket`` as an anonymous function and then records DAY
    partitioning on the integer column; record integer-range partitioning, as BigQuery does
    (https://cloud.google.com/bigquery/docs/creating-partitioned-tables#create_an_integer-range_partitioned_table)."""

    @functools.wraps(original)
    def _partitioning(node: exp.PartitionedByProperty) -> dict:
        expression = node.this
        if (
            isinstance(expression, exp.Anonymous)
            and str(expression.this).lower().rsplit(".", 1)[-1] == "range_bucket"
            and len(expression.expressions) == 2
        ):
            column, series = expression.expressions
            if isinstance(series, exp.GenerateSeries):
                bounds = [series.args.get(key) for key in ("start", "end", "step")]
            else:
                bounds = list(series.expressions) if isinstance(series, exp.Anonymous) else []
            if isinstance(column, exp.Column) and len(bounds) == 3 and all(bounds):
                start, end, interval = (bound.name for bound in bounds)
                return {
                    "rangePartitioning": {
                        "field": column.name,
                        "range": {"start": start, "end": end, "interval": interval},
                    }
                }
        return original(node)

    return _partitioning


def _too_many(count: int, what: str = "query") -> BigQueryError:
    reason = "invalidQuery" if what == "query" else "invalid"
    return BigQueryError(
        reason,
        f"Too many partitions produced by {what}, allowed {MAX_PARTITIONS_PER_JOB}, "
        f"{what} produces at least {count} partitions",
    )


def _translated(tree: exp.Expression, context) -> tuple[str, dict]:
    """Translate a statement of our own with the job's context, leaving the context as it was."""
    used, position = set(context.used), context.position
    try:
        return sql_translate.translate(tree, context)
    finally:
        context.used.clear()
        context.used.update(used)
        context.position = position


def _stored(table: exp.Table, context) -> tuple[tuple[str, str, str], Table | None]:
    reference = names.reference(table, context.project_id, context.dataset_id)
    return reference, metadata.load(Table, *reference)


def _rows_of(table: exp.Table, field: str, where: exp.Expression | None, joined=None) -> exp.Select:
    qualifier = table.alias_or_name
    select = exp.select(exp.alias_(exp.column(field, table=qualifier), "__v")).from_(table.copy())
    for extra in joined or []:
        select = select.join(extra.copy())
    if where is not None:
        select = select.where(where.this.copy() if isinstance(where, exp.Where) else where.copy())
    return select


def _check_statement_partitions(cur, tree: exp.Expression, context) -> None:
    count = None
    if isinstance(tree, exp.Create) and (tree.args.get("kind") or "").upper() == "TABLE":
        source = tree.expression
        partitioned = tree.find(exp.PartitionedByProperty)
        if tree.args.get("clone") is not None or not isinstance(source, exp.Query) or partitioned is None:
            return
        spec = _partitioning(Table.model_validate(catalog_ddl._partitioning(partitioned)))
        if spec is None or spec[1] is None:
            return  # ingestion time: the rows go to the current partition
        sql, bound = _translated(source, context)
        count = _count_partitions(cur, sql, bound, spec[1], spec)
    elif isinstance(tree, exp.Insert):
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        if not isinstance(target, exp.Table) or not isinstance(tree.expression, exp.Expression):
            return
        reference, stored = _stored(target, context)
        spec = _partitioning(stored) if stored else None
        if spec is None or spec[1] is None:
            return
        if isinstance(tree.this, exp.Schema):
            columns = [column.name for column in tree.this.expressions]
        else:
            columns = [field.name for field in tables.fields(tables.load(*reference))]
        folded = [column.casefold() for column in columns]
        if spec[1].casefold() not in folded:
            return
        sql, bound = _translated(tree.expression, context)
        relation = cur.sql(sql, params=bound or None)
        position = folded.index(spec[1].casefold())
        if position >= len(relation.columns):
            return
        count = _count_partitions(cur, sql, bound, relation.columns[position], spec)
    elif isinstance(tree, exp.Delete | exp.Update):
        target = tree.this
        if not isinstance(target, exp.Table):
            return
        _, stored = _stored(target, context)
        spec = _partitioning(stored) if stored else None
        if spec is None:
            return
        field = spec[1] or tables.INGESTION_TIME
        joined = tree.args.get("from")
        extra = [joined.this] if isinstance(joined, exp.From) else []
        sql, bound = _translated(_rows_of(target, field, tree.args.get("where"), extra), context)
        count = _count_partitions(cur, sql, bound, "__v", spec if spec[1] else ("DAY", None, None))
    if count is not None and count > MAX_PARTITIONS_PER_JOB:
        raise _too_many(count)


def _check_merge_partitions(cur, tree: exp.Merge, context) -> None:
    """Partitions a MERGE modifies: those of the target rows its ON condition matches (when it has
    WHEN MATCHED clauses), of the target rows it matches no source row with (WHEN NOT MATCHED BY
    SOURCE) and of the rows it inserts (the partitioning column of INSERT ROW / INSERT VALUES)."""
    target, source = tree.this, tree.args.get("using")
    if not isinstance(target, exp.Table) or source is None:
        return
    _, stored = _stored(target, context)
    spec = _partitioning(stored) if stored else None
    if spec is None or spec[1] is None:
        return
    field = spec[1]
    alias, source_alias = target.alias_or_name, source.alias_or_name
    whens = tree.args["whens"].expressions
    parts: list[str] = []
    on = tree.args["on"].sql("bigquery")
    target_sql, source_sql = target.sql("bigquery"), source.sql("bigquery")
    column = exp.column(field, table=alias).sql("bigquery")
    if any(w.args.get("matched") for w in whens):
        parts.append(f"SELECT {column} AS __v FROM {target_sql} JOIN {source_sql} ON {on}")
    if any(not w.args.get("matched") and w.args.get("source") for w in whens):
        parts.append(
            f"SELECT {column} AS __v FROM {target_sql} WHERE NOT EXISTS (SELECT 1 FROM {source_sql} WHERE {on})"
        )
    for when in whens:
        action = when.args.get("then")
        if when.args.get("matched") or when.args.get("source") or not isinstance(action, exp.Insert):
            continue
        if isinstance(action.this, exp.Var) or action.this is None:
            value = exp.column(field, table=source_alias).sql("bigquery")  # INSERT ROW
        else:
            listed = [c.name.casefold() for c in action.this.expressions]
            values = action.expression.expressions if action.expression is not None else []
            if field.casefold() not in listed or listed.index(field.casefold()) >= len(values):
                continue
            value = values[listed.index(field.casefold())].sql("bigquery")
        parts.append(
            f"SELECT {value} AS __v FROM {source_sql} WHERE NOT EXISTS (SELECT 1 FROM {target_sql} WHERE {on})"
        )
    if not parts:
        return
    try:
        select = sql_translate.parse(" UNION ALL ".join(f"({p})" for p in parts))[0]
        read = {
            names.reference(t, context.project_id, context.dataset_id)
            for t in (target, source)
            if isinstance(t, exp.Table)
        }
        token = _merge_checked.set(_merge_checked.get() | read)
        try:
            sql, bound = _translated(select, context)
        finally:
            _merge_checked.reset(token)
        count = _count_partitions(cur, sql, bound, "__v", spec)
    except BigQueryError:
        raise
    except Exception as error:  # an approximation; the MERGE itself still runs
        log.warning("could not count the partitions of a MERGE: %s", error)
        return
    if count > MAX_PARTITIONS_PER_JOB:
        raise _too_many(count)


def _checked_run(original: Callable) -> Callable:
    @functools.wraps(original)
    def _run(cur, tree, context, destination, config, dry_run, isolated):
        _check_schema_options(cur, tree)
        if not dry_run and not isinstance(tree, exp.Merge):
            _check_statement_partitions(cur, tree, context)
        return original(cur, tree, context, destination, config, dry_run, isolated)

    return _run


def _checked_write(original: Callable) -> Callable:
    """Query jobs with a destination table and load jobs (not copy jobs) into a partitioned table."""

    @functools.wraps(original)
    def write(cur, query, params, reference, config, *args, **kwargs):
        if isinstance(config, JobConfigurationQuery | JobConfigurationLoad) and reference[1] != tables.RESULTS:
            spec = _partitioning(config)
            if spec is None and tables.exists(*reference):
                spec = _partitioning(metadata.load(Table, *reference))
            if spec is not None and spec[1] is not None:
                columns = cur.sql(query, params=params or None).columns
                folded = [c.casefold() for c in columns]
                if spec[1].casefold() in folded:
                    column = columns[folded.index(spec[1].casefold())]
                    count = _count_partitions(cur, query, params, column, spec)
                    if count > MAX_PARTITIONS_PER_JOB:
                        what = "query" if isinstance(config, JobConfigurationQuery) else "load job"
                        raise _too_many(count, what)
        return original(cur, query, params, reference, config, *args, **kwargs)

    return write


# --------------------------------------------------------------------------------------------
# 5. Query parameters per query


def _checked_submit(original: Callable) -> Callable:
    @functools.wraps(original)
    def submit(project_id, job_id, configuration, upload=None):
        query = configuration.query
        given = len(query.queryParameters or []) if query is not None else 0
        if given > MAX_QUERY_PARAMETERS:
            raise BigQueryError(
                "invalid",
                f"Too many query parameters: {given}. A GoogleSQL query can have up to "
                f"{MAX_QUERY_PARAMETERS:,} parameters.",
            )
        return original(project_id, job_id, configuration, upload)

    return submit


# --------------------------------------------------------------------------------------------


def _replace_rule(rules: list, old: Callable, new: Callable) -> None:
    rules[rules.index(old)] = new


def install() -> None:
    """Patch local-bigquery in this process (idempotent through bqfidelity.install)."""
    rules_tables._check = _without_crude_filter_check(rules_tables._check)
    position = sql_rules.STATEMENT_RULES.index(rules_tables.qualify)
    sql_rules.STATEMENT_RULES.insert(position + 1, partition_filter)
    _replace_rule(sql_rules.NODE_RULES, rules_tables.time_travel, _bounded_time_travel(rules_tables.time_travel))
    rules_ddl.split = _marked_split(rules_ddl.split)
    merge_job.run = _checked_merge(merge_job.run)
    copy_job.decorated = _bounded_decorator(copy_job.decorated)
    catalog_options.DATASET_OPTIONS["max_time_travel_hours"] = TIME_TRAVEL_OPTION
    catalog_datasets.create = _checked_dataset_create(catalog_datasets.create)
    catalog_datasets.update = _checked_dataset_update(catalog_datasets.update)
    catalog_ddl._partitioning = _range_aware(catalog_ddl._partitioning)
    query_job._run = _checked_run(query_job._run)
    tables.write = _checked_write(tables.write)
    runner.submit = _checked_submit(runner.submit)
    log.info("rules: partition filters, time-travel bounds, time-travel window, partitions per job, parameters")
