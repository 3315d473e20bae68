"""Split a table's rows into jobs that each modify at most 4,000 partitions (pure; no I/O).

BigQuery: "Each job operation (query or load) can affect up to 4,000 partitions. BigQuery rejects any
query or load job that attempts to modify more than 4,000 partitions."
(https://cloud.google.com/bigquery/quotas#partitioned_tables). An HOUR-partitioned table over two
quarters has about 4,400 partitions, so a CTAS, an INSERT, a DELETE trim or a load of it must be split.

A `Chunk` is a contiguous range [lo, hi) of the partitioning column's values, aligned to partition
boundaries (except where a window bound falls inside a partition), that covers at most
MAX_PARTITIONS_PER_JOB partitions. `lo = None` means unbounded below and includes NULL (the
__NULL__ partition, and for integer ranges the values below the range); `hi = None` unbounded above.
Chunks are made either from a window (`window_chunks`, arithmetic: every partition of the window is
assumed to exist, an upper bound) or from the partition ids a table really has (`id_chunks`, from
INFORMATION_SCHEMA.PARTITIONS: exact, and gaps cost nothing).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from envsync.core.identifiers import quote_column

MAX_PARTITIONS_PER_JOB = 4000  # https://cloud.google.com/bigquery/quotas#partitioned_tables
TIME_UNITS = ("HOUR", "DAY", "MONTH", "YEAR")
SPECIAL_IDS = ("__NULL__", "__UNPARTITIONED__", "__STREAMING_UNPARTITIONED__")
_ID_FORMATS = {"HOUR": "%Y%m%d%H", "DAY": "%Y%m%d", "MONTH": "%Y%m", "YEAR": "%Y"}


@dataclass(frozen=True)
class Chunk:
    lo: Any | None  # inclusive; None: unbounded below, NULLs included
    hi: Any | None  # exclusive; None: unbounded above
    partitions: int  # partitions this chunk may modify (an upper bound for window chunks)


@dataclass(frozen=True)
class Spec:
    """How a table is partitioned: a time unit on a column (or on _PARTITIONTIME), or integer ranges."""

    column: str  # the partitioning column, or _PARTITIONTIME
    column_type: str  # DATE | DATETIME | TIMESTAMP | INT64
    unit: str  # HOUR | DAY | MONTH | YEAR | RANGE
    range: tuple[int, int, int] | None = None  # start, end, interval of RANGE partitioning

    @property
    def ingestion_time(self) -> bool:
        return self.column.upper() == "_PARTITIONTIME"


def spec_of(info: Any) -> Spec | None:
    """The partitioning of a discovery.TableInfo as a Spec, or None when the table is unpartitioned."""
    if info.range_partitioning:
        rp = info.range_partitioning
        return Spec(rp["field"], "INT64", "RANGE", (int(rp["start"]), int(rp["end"]), int(rp["interval"])))
    if not info.partitioning:
        return None
    unit = info.partitioning["type"].upper()
    field = info.partitioning.get("field")
    if not field:
        return Spec("_PARTITIONTIME", "TIMESTAMP", unit)
    column = info.column(field) or {"type": "TIMESTAMP"}
    return Spec(column.get("name", field), column["type"].upper(), unit)


# ------------------------------------------------------------------------------ time arithmetic


def _naive(value: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    return dt.datetime(value.year, value.month, value.day)


def floor(value: dt.date | dt.datetime, unit: str) -> dt.datetime:
    """The start of the partition of `unit` that contains `value` (naive UTC)."""
    v = _naive(value)
    if unit == "HOUR":
        return v.replace(minute=0, second=0, microsecond=0)
    if unit == "DAY":
        return v.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "MONTH":
        return dt.datetime(v.year, v.month, 1)
    if unit == "YEAR":
        return dt.datetime(v.year, 1, 1)
    raise ValueError(f"unknown partition unit {unit!r}; allowed: {', '.join(TIME_UNITS)}")


def next_start(start: dt.datetime, unit: str) -> dt.datetime:
    if unit == "HOUR":
        return start + dt.timedelta(hours=1)
    if unit == "DAY":
        return start + dt.timedelta(days=1)
    if unit == "MONTH":
        return dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1)
    if unit == "YEAR":
        return dt.datetime(start.year + 1, 1, 1)
    raise ValueError(f"unknown partition unit {unit!r}; allowed: {', '.join(TIME_UNITS)}")


def partitions_between(lo: dt.date | dt.datetime, hi: dt.date | dt.datetime, unit: str) -> int:
    """Partitions of `unit` that rows in [lo, hi) can fall in (every one assumed to exist)."""
    first, end = floor(lo, unit), _naive(hi)
    if end <= _naive(lo):
        return 0
    if unit == "HOUR":
        return int((floor(end - dt.timedelta(microseconds=1), unit) - first) / dt.timedelta(hours=1)) + 1
    if unit == "DAY":
        return (floor(end - dt.timedelta(microseconds=1), unit) - first).days + 1
    last = floor(end - dt.timedelta(microseconds=1), unit)
    if unit == "MONTH":
        return (last.year - first.year) * 12 + last.month - first.month + 1
    return last.year - first.year + 1


def typed(value: dt.datetime, column_type: str) -> Any:
    """A naive UTC partition start as a parameter value of the column's type."""
    kind = column_type.upper()
    if kind == "DATE":
        return value.date()
    if kind == "DATETIME":
        return value
    return value.replace(tzinfo=dt.UTC)


def partial_partitions(lo: Any, hi: Any, unit: str) -> list[str]:
    """Window bounds that fall inside a partition of `unit` (for example mid-day for DAY partitions):
    a DELETE keeping [lo, hi) touches part of that partition, which BigQuery scans and bills
    (https://cloud.google.com/bigquery/docs/reference/standard-sql/dml-syntax#on-demand_query_size_calculation)."""
    found = []
    for name, bound in (("start", lo), ("end", hi)):
        if unit in TIME_UNITS and _naive(bound) != floor(bound, unit):
            found.append(f"window {name} {_naive(bound).isoformat(sep=' ')} is inside a {unit} partition")
    return found


# ------------------------------------------------------------------------------------ chunking


def window_chunks(
    lo: dt.date | dt.datetime,
    hi: dt.date | dt.datetime,
    unit: str,
    column_type: str,
    limit: int = MAX_PARTITIONS_PER_JOB,
) -> list[Chunk]:
    """[lo, hi) in contiguous chunks of at most `limit` partitions of `unit`; the first chunk starts
    unbounded and the last ends unbounded (the caller's window filter bounds them), so that the
    chunks together keep exactly the rows the window keeps. One chunk when the window fits."""
    total = partitions_between(lo, hi, unit)
    if total <= limit:
        return [Chunk(None, None, total)]
    chunks: list[Chunk] = []
    start, left, bound = floor(lo, unit), total, None
    while left > 0:
        take = min(limit, left)
        end = start
        for _ in range(take):
            end = next_start(end, unit)
        left -= take
        chunks.append(Chunk(bound, typed(end, column_type) if left > 0 else None, take))
        start, bound = end, typed(end, column_type)
    return chunks


def window_chunks_on(spec: Spec | None, column: str | None, lo: Any, hi: Any) -> list[Chunk]:
    """Chunks of the window [lo, hi) on `column` of a table partitioned as `spec`: one chunk unless
    the table is time-partitioned on that very column (rows of a table partitioned on another column
    cannot be bounded from the window)."""
    if spec is None or spec.unit == "RANGE" or column is None or spec.column.lower() != column.lower():
        return [Chunk(None, None, 0)]
    return window_chunks(lo, hi, spec.unit, spec.column_type)


def id_start(partition_id: str, spec: Spec) -> Any:
    """The first value of the partition `partition_id` (INFORMATION_SCHEMA.PARTITIONS), typed."""
    if spec.unit == "RANGE":
        return int(partition_id)
    return typed(dt.datetime.strptime(partition_id, _ID_FORMATS[spec.unit]), spec.column_type)


def id_chunks(
    partition_ids: Iterable[str],
    spec: Spec,
    *,
    keep: Callable[[str], bool] = lambda _: True,
    limit: int = MAX_PARTITIONS_PER_JOB,
) -> list[Chunk]:
    """Chunks of at most `limit` of the partitions `keep` selects, from a table's partition ids.

    The special partitions (__NULL__, __UNPARTITIONED__) go to the first chunk (lo = None). Chunk
    boundaries are the starts of real partitions, so a chunk's range may span partitions that `keep`
    leaves out: the caller's own filter excludes their rows, and a job modifies only partitions whose
    rows it writes or deletes.
    """
    ids = sorted(set(partition_ids))
    special = [i for i in ids if i in SPECIAL_IDS and keep(i)]
    real = sorted((i for i in ids if i not in SPECIAL_IDS and keep(i)), key=lambda i: _sort_key(i, spec))
    if len(special) + len(real) <= limit:
        return [Chunk(None, None, len(special) + len(real))]
    groups: list[list[str]] = []
    current = list(special)
    for pid in real:
        if len(current) == limit:
            groups.append(current)
            current = []
        current.append(pid)
    groups.append(current)
    chunks = []
    for index, group in enumerate(groups):
        lo = None if index == 0 else id_start(group[0], spec)
        hi = id_start(groups[index + 1][0], spec) if index + 1 < len(groups) else None
        chunks.append(Chunk(lo, hi, len(group)))
    return chunks


def _sort_key(partition_id: str, spec: Spec) -> Any:
    return int(partition_id) if spec.unit == "RANGE" else partition_id


def outside_window(spec: Spec, lo: Any, hi: Any) -> Callable[[str], bool]:
    """`keep` for id_chunks: partitions holding rows outside [lo, hi) (NULL, before, after, or the
    partitions a bound falls inside)."""
    if spec.unit == "RANGE":
        raise ValueError("integer-range partitions have no time window")
    start, end = _naive(lo), _naive(hi)

    def keep(partition_id: str) -> bool:
        if partition_id in SPECIAL_IDS:
            return True
        first = dt.datetime.strptime(partition_id, _ID_FORMATS[spec.unit])
        return first < start or next_start(first, spec.unit) > end

    return keep


# --------------------------------------------------------------------------------- SQL and params


def chunk_predicate(column: str, chunk: Chunk) -> str:
    """SQL that keeps the rows of `chunk` (NULLs with the first): bound to @chunk_lo / @chunk_hi."""
    col = quote_column(column)
    if chunk.lo is None and chunk.hi is None:
        return "true"
    if chunk.lo is None:
        return f"({col} is null or {col} < @chunk_hi)"
    if chunk.hi is None:
        return f"{col} >= @chunk_lo"
    return f"{col} >= @chunk_lo and {col} < @chunk_hi"


def partition_id_sql(spec: Spec) -> str:
    """SQL for the partition id (as in INFORMATION_SCHEMA.PARTITIONS) of a row of a time-unit or
    integer-range partitioned table."""
    col = quote_column(spec.column)
    if spec.unit == "RANGE":
        assert spec.range is not None  # a RANGE spec carries its range
        start, end, interval = spec.range
        return (
            f"case when {col} is null then '__NULL__' when {col} < {int(start)} or {col} >= {int(end)} "
            f"then '__UNPARTITIONED__' else cast({int(start)} + div({col} - {int(start)}, {int(interval)}) "
            f"* {int(interval)} as string) end"
        )
    fmt = {"HOUR": "%Y%m%d%H", "DAY": "%Y%m%d", "MONTH": "%Y%m", "YEAR": "%Y"}[spec.unit]
    function = {"DATE": "format_date", "DATETIME": "format_datetime"}.get(spec.column_type, "format_timestamp")
    trunc = {"DATE": "date_trunc", "DATETIME": "datetime_trunc"}.get(spec.column_type, "timestamp_trunc")
    return f"coalesce({function}('{fmt}', {trunc}({col}, {spec.unit})), '__NULL__')"


def chunk_params(chunk: Chunk) -> dict[str, Any]:
    return {k: v for k, v in (("chunk_lo", chunk.lo), ("chunk_hi", chunk.hi)) if v is not None}


def describe(chunks: Sequence[Chunk]) -> str:
    return ", ".join(
        f"[{c.lo if c.lo is not None else '-inf'}, {c.hi if c.hi is not None else '+inf'}): {c.partitions} partitions"
        for c in chunks
    )
