"""Check a copy against prod as of T: rows per partition in the window, schema, partitioning.

Every check returns problems as readable sentences naming the table; the caller fails the table
(and so the task) on any problem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envsync.bigquery.discovery import TYPE_ALIASES
from envsync.core.guard import TableRef
from envsync.core.identifiers import PROJECT_RE, quote_column
from envsync.core.sqltemplates import render

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.bigquery.actions import Action
    from envsync.bigquery.discovery import TableInfo
    from envsync.bigquery.jobs import JobRunner, JobStats
    from envsync.core.window import Window

GRANULARITIES = ("HOUR", "DAY", "MONTH", "YEAR")


def bucket_expr(column: str | None, column_type: str | None, granularity: str) -> str:
    """SQL for the partition a row falls in (as a string), or a single bucket without a column."""
    if column is None or column_type is None:
        return "'all'"
    unit = granularity.upper()
    if unit not in GRANULARITIES:
        raise ValueError(f"unknown partition granularity {granularity!r} (allowed: {GRANULARITIES})")
    col = quote_column(column)
    kind = column_type.upper()
    if kind == "DATE":
        return f"cast({col} as string)" if unit in ("DAY", "HOUR") else f"cast(date_trunc({col}, {unit}) as string)"
    if kind == "DATETIME":
        return f"cast(datetime_trunc({col}, {unit}) as string)"
    return f"cast(timestamp_trunc({col}, {unit}) as string)"


def window_filter(column: str | None) -> str:
    if column is None:
        return "true"
    col = quote_column(column)
    return f"{col} >= @window_start and {col} < @window_end"


# The smallest value of each partitioning column type: `col >= <min> or col is null` keeps every row.
_TYPE_MINIMUMS = {
    "DATE": "date '0001-01-01'",
    "DATETIME": "datetime '0001-01-01 00:00:00'",
    "TIMESTAMP": "timestamp '0001-01-01 00:00:00+00'",
    "INTEGER": "-9223372036854775807 - 1",
    "INT64": "-9223372036854775807 - 1",
}


def partition_filter(info: TableInfo) -> str:
    """A predicate that keeps every row and lets BigQuery read a table that requires a partition filter.

    BigQuery refuses any query on a table with `require_partition_filter` whose WHERE has no filter on
    the partitioning column usable for partition elimination; `where true` is not one. The predicate
    names only the partitioning column and keeps the NULL (and __UNPARTITIONED__) rows. For other
    tables it is `true`.
    """
    if not info.require_partition_filter:
        return "true"
    if info.range_partitioning:
        column = info.range_partitioning["field"]
    elif info.partitioning and info.partitioning.get("field"):
        column = info.partitioning["field"]
    else:  # ingestion-time partitioning
        return "(_PARTITIONTIME is null or _PARTITIONTIME >= timestamp '0001-01-01 00:00:00+00')"
    kind = next((f["type"].upper() for f in info.schema if f["name"].lower() == column.lower()), "TIMESTAMP")
    col = quote_column(column)
    return f"({col} is null or {col} >= {_TYPE_MINIMUMS.get(kind, _TYPE_MINIMUMS['TIMESTAMP'])})"


def table_partition_filter(client: bigquery.Client, ref: TableRef) -> str:
    """`partition_filter` of a table as BigQuery describes it now (one tables.get)."""
    from envsync.bigquery.discovery import TableInfo

    return partition_filter(TableInfo.from_api(client.get_table(ref.api)))


def window_params(action: Action, window: Window) -> dict[str, Any]:
    if action.date_column is None or action.column_type is None:
        return {}
    lo, hi = window.bounds(action.column_type)
    return {"window_start": lo, "window_end": hi}


def count_rows(
    runner: JobRunner,
    action: Action,
    source: TableRef,
    copy: TableRef,
    *,
    cut: Any,
    window: Window | None,
    stats: JobStats,
    keep_all: str = "true",
    key: tuple[str, ...] | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per partition of prod (in the window, as of T) and of the copy, in one query job.

    `keep_all` is the table's `partition_filter`: both sides read every partition through it. `key`
    names the job (default: the sync's verification of the table).
    """
    column = action.date_column if window is not None else None
    bucket = bucket_expr(column, action.column_type, action.granularity)
    sql = render(
        "sync/count_rows_by_partition",
        source=source.sql,
        copy=copy.sql,
        bucket_prod=bucket,
        bucket_copy=bucket,
        window_filter=window_filter(column),
        keep_all=keep_all,
    )
    params: dict[str, Any] = {"cut": cut}
    if window is not None:
        params.update(window_params(action, window))
    job = runner.run(sql, key=key or (action.dataset, action.table, "verify_rows"), params=params, stats=stats)
    prod: dict[str, int] = {}
    copy_counts: dict[str, int] = {}
    for row in job.result():
        target = prod if row["side"] == "prod" else copy_counts
        target[str(row["partition_key"])] = int(row["row_count"])
    return prod, copy_counts


def compare_counts(name: str, prod: dict[str, int], copy: dict[str, int], source: str = "prod") -> list[str]:
    """Differences of rows per partition between the source (`source`: prod, or qa for a cut) and the copy."""
    diffs = [
        f"{key}: {source} {prod.get(key, 0)}, copy {copy.get(key, 0)}"
        for key in sorted(set(prod) | set(copy))
        if prod.get(key, 0) != copy.get(key, 0)
    ]
    if not diffs:
        return []
    shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
    return [f"{name}: rows per partition differ from {source} as of T in {len(diffs)} partition(s): {shown}"]


def _normal_fields(fields: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for f in fields:
        kind = f.get("type", "").upper()
        out.append(
            (
                f["name"].lower(),
                TYPE_ALIASES.get(kind, kind),
                (f.get("mode") or "NULLABLE").upper(),
                tuple(_normal_fields(f.get("fields") or [])),
            )
        )
    return out


def _describe(field: tuple[Any, ...]) -> str:
    return f"{field[0]} {field[1]} {field[2]}"


def compare_schema(name: str, prod: list[dict[str, Any]], copy: list[dict[str, Any]]) -> list[str]:
    a, b = _normal_fields(prod), _normal_fields(copy)
    if a == b:
        return []
    prod_by = {f[0]: f for f in a}
    copy_by = {f[0]: f for f in b}
    problems = []
    for col in prod_by:
        if col not in copy_by:
            problems.append(f"column {col} is missing")
        elif prod_by[col] != copy_by[col]:
            problems.append(
                f"column {col} is {_describe(copy_by[col])}, prod has {_describe(prod_by[col])}"
                + (" (nested fields differ)" if prod_by[col][:3] == copy_by[col][:3] else "")
            )
    problems += [f"column {col} is not in prod" for col in copy_by if col not in prod_by]
    if not problems:
        problems.append("column order differs from prod")
    return [f"{name}: schema differs from prod: " + "; ".join(problems)]


def compare_partitioning(name: str, prod: TableInfo, copy: bigquery.Table) -> list[str]:
    problems = []
    tp = copy.time_partitioning
    copy_part = {"type": tp.type_, "field": tp.field} if tp else None
    if prod.partitioning != copy_part:
        problems.append(f"partitioning is {copy_part}, prod has {prod.partitioning}")
    copy_clustering = list(copy.clustering_fields) if copy.clustering_fields else None
    if (prod.clustering or None) != copy_clustering:
        problems.append(f"clustering is {copy_clustering}, prod has {prod.clustering}")
    return [f"{name}: " + "; ".join(problems)] if problems else []


def match_key_sql(info: TableInfo, key: list[str], masked: set[str]) -> str:
    """What matches a copy's row to prod's: the key columns, or a hash of every unmasked column."""
    columns = key or [f["name"] for f in info.schema if f["name"].lower() not in masked]
    fields = ", ".join(quote_column(c) for c in columns)
    if key:
        return f"to_json_string(struct({fields}))"
    return f"farm_fingerprint(to_json_string(struct({fields})))"


def count_unmasked(
    runner: JobRunner,
    action: Action,
    info: TableInfo,
    source: TableRef,
    copy: TableRef,
    *,
    cut: Any,
    window: Window | None,
    stats: JobStats,
) -> dict[str, int]:
    """Per masked column of `action`, the copy's rows whose value equals prod's value for the same row
    (as of T, in the window), computed in BigQuery in one query job. NULLs never count: a NULL in the
    copy holds no prod value. Values compare as their JSON text, so every column type compares."""
    masks = [m["column"] for m in action.masks]
    aliases = {column: f"masked_{index}" for index, column in enumerate(masks)}
    keep_all = partition_filter(info)
    column = action.date_column if window is not None else None
    sql = render(
        "sync/count_unmasked_values",
        source=source.sql,
        copy=copy.sql,
        match_key=match_key_sql(info, action.match_key, {c.lower() for c in masks}),
        masked_columns=",\n        ".join(f"{quote_column(c)} as {a}" for c, a in aliases.items()),
        row_filter=f"{window_filter(column)}\n        and {keep_all}",
        keep_all=keep_all,
        counts=",\n    ".join(
            f"countif(copy_rows.{a} is not null and to_json_string(copy_rows.{a}) = to_json_string(prod_rows.{a})) "
            f"as {a}"
            for a in aliases.values()
        ),
    )
    params: dict[str, Any] = {"cut": cut}
    if window is not None:
        params.update(window_params(action, window))
    job = runner.run(sql, key=(action.dataset, action.table, "verify_masks"), params=params, stats=stats)
    row = next(iter(job.result()))
    return {column: int(row[alias] or 0) for column, alias in aliases.items()}


def fingerprint_ref(project: str, target: str) -> str | None:
    """`project.dataset.table` of the table a recorded target names: `dataset.table` in `project`, or
    `project.dataset.table` (how a split layout names it, see EnvsyncConfig.qualified); None when
    `target` names no table."""
    parts = target.split(".")
    if len(parts) == 3 and PROJECT_RE.fullmatch(parts[0]):
        project, *parts = parts
    if len(parts) != 2 or not parts[1] or " " in target or ":" in target:
        return None
    return f"{project}.{parts[0]}.{parts[1]}"


def fingerprint(client: bigquery.Client, project: str, target: str) -> dict[str, Any] | None:
    """What a run leaves in one table, from its metadata (tables.get, no query): rows, creation time and
    schema columns; {"exists": False} when the table is gone; None when `target` names no table.

    `target` is `dataset.table` of `project`, or `project.dataset.table` of the project it names."""
    from google.api_core.exceptions import NotFound

    ref = fingerprint_ref(project, target)
    if ref is None:
        return None
    try:
        got = client.get_table(ref)
    except NotFound:
        return {"exists": False}
    except ValueError:
        return None
    if got.table_type == "VIEW":
        return {"exists": True, "type": "VIEW"}
    return {
        "exists": True,
        "rows": int(got.num_rows or 0),
        "created": got.created.isoformat() if got.created else None,
        "columns": [f.name for f in got.schema],
    }


def fingerprint_changes(recorded: dict[str, dict[str, Any]], now: dict[str, dict[str, Any] | None]) -> list[str]:
    """Sentences naming every table whose fingerprint now differs from the one its run recorded."""
    changes = []
    for target, before in sorted(recorded.items()):
        after = now.get(target)
        if after is None or after == before:
            continue
        what = [
            f"{key} {before.get(key)!r} -> {after.get(key)!r}"
            for key in ("exists", "type", "rows", "created", "columns")
            if before.get(key) != after.get(key)
        ]
        changes.append(f"{target}: {', '.join(what)}")
    return changes
