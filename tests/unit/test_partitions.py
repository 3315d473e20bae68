"""Chunking into jobs of at most 4,000 partitions (envsync.bigquery.partitions), the DDL of column options and
ingestion-time tables (envsync.bigquery.ddl), and the plan's job counts (envsync.sync.plan). Pure.

https://cloud.google.com/bigquery/quotas#partitioned_tables: each query or load job can modify at
most 4,000 partitions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from envsync.bigquery.ddl import carried_schema, column_def, column_type_sql, partition_clause
from envsync.bigquery.discovery import DatasetInfo, TableInfo
from envsync.bigquery.partitions import (
    MAX_PARTITIONS_PER_JOB,
    Chunk,
    Spec,
    chunk_params,
    chunk_predicate,
    id_chunks,
    outside_window,
    partial_partitions,
    partitions_between,
    window_chunks,
)
from envsync.core.config import parse_config
from envsync.core.window import quarter_window
from envsync.sync.plan import plan_dataset

UTC = dt.UTC
HOURLY = Spec("ts", "TIMESTAMP", "HOUR")


def hour_ids(start: dt.datetime, count: int) -> list[str]:
    return [(start + dt.timedelta(hours=i)).strftime("%Y%m%d%H") for i in range(count)]


def test_an_hourly_window_of_two_quarters_is_two_chunks_covering_it_exactly() -> None:
    lo, hi = dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 12, 31, 22, tzinfo=UTC)
    assert partitions_between(lo, hi, "HOUR") == 4414
    chunks = window_chunks(lo, hi, "HOUR", "TIMESTAMP")
    boundary = lo + dt.timedelta(hours=MAX_PARTITIONS_PER_JOB)
    assert chunks == [Chunk(None, boundary, 4000), Chunk(boundary, None, 414)]
    assert all(c.partitions <= MAX_PARTITIONS_PER_JOB for c in chunks)


def test_a_window_that_fits_is_one_chunk_and_no_extra_predicate() -> None:
    chunks = window_chunks(dt.date(2026, 7, 1), dt.date(2026, 12, 1), "DAY", "DATE")
    assert chunks == [Chunk(None, None, 153)]
    assert chunk_predicate("d", chunks[0]) == "true" and chunk_params(chunks[0]) == {}


def test_date_window_chunks_are_typed_dates() -> None:
    chunks = window_chunks(dt.date(2000, 1, 1), dt.date(2026, 1, 1), "DAY", "DATE")
    assert len(chunks) == 3 and isinstance(chunks[1].lo, dt.date) and not isinstance(chunks[1].lo, dt.datetime)
    assert sum(c.partitions for c in chunks) == (dt.date(2026, 1, 1) - dt.date(2000, 1, 1)).days


@pytest.mark.parametrize(
    "unit,lo,hi,count",
    [
        ("MONTH", dt.datetime(2026, 7, 1), dt.datetime(2026, 11, 21, 2), 5),
        ("YEAR", dt.datetime(2026, 7, 1), dt.datetime(2027, 1, 1), 1),
        ("DAY", dt.datetime(2026, 7, 1), dt.datetime(2026, 7, 1), 0),
    ],
)
def test_partitions_between(unit: str, lo: dt.datetime, hi: dt.datetime, count: int) -> None:
    assert partitions_between(lo, hi, unit) == count


def test_delete_trim_chunks_from_the_partitions_outside_the_window() -> None:
    ids = hour_ids(dt.datetime(2026, 1, 1), 8758) + ["__NULL__"]
    keep = outside_window(HOURLY, dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 12, 31, 22, tzinfo=UTC))
    chunks = id_chunks(ids, HOURLY, keep=keep)
    assert [c.partitions for c in chunks] == [4000, 345]  # 4,344 hours before July + __NULL__
    assert chunks[0].lo is None and chunks[1].hi is None
    assert chunks[1].lo == dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(hours=3999)
    assert chunk_predicate("ts", chunks[0]) == "(`ts` is null or `ts` < @chunk_hi)"
    assert chunk_predicate("ts", chunks[1]) == "`ts` >= @chunk_lo"


def test_a_bound_inside_a_partition_keeps_that_partition_in_the_trim_and_is_billed() -> None:
    day = Spec("ts", "TIMESTAMP", "DAY")
    lo, hi = dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 11, 21, 2, tzinfo=UTC)
    keep = outside_window(day, lo, hi)
    assert keep("20261121") and keep("20260630") and not keep("20261120") and not keep("20260701")
    assert partial_partitions(lo, hi, "DAY") == ["window end 2026-11-21 02:00:00 is inside a DAY partition"]
    assert partial_partitions(dt.date(2026, 7, 1), dt.date(2026, 11, 22), "DAY") == []


def test_integer_range_ids_chunk_by_their_starts() -> None:
    spec = Spec("b", "INT64", "RANGE", (0, 90_000, 10))
    chunks = id_chunks([str(i * 10) for i in range(9000)] + ["__UNPARTITIONED__"], spec)
    assert [c.partitions for c in chunks] == [4000, 4000, 1001]
    assert (chunks[1].lo, chunks[1].hi) == (39_990, 79_990)


# ------------------------------------------------------------------------------------------ DDL


def test_range_columns_render_their_element_type() -> None:
    assert column_type_sql({"name": "stay", "type": "RANGE", "rangeElementType": {"type": "DATE"}}) == "RANGE<DATE>"
    with pytest.raises(ValueError, match="'stay'.*RANGE element type"):
        column_type_sql({"name": "stay", "type": "RANGE"})


def test_collation_is_part_of_the_column_definition_and_validated() -> None:
    assert column_def({"name": "email", "type": "STRING", "collation": "und:ci"}) == "`email` STRING COLLATE 'und:ci'"
    assert (
        column_def({"name": "tags", "type": "STRING", "mode": "REPEATED", "collation": "und:ci"})
        == "`tags` ARRAY<STRING COLLATE 'und:ci'>"
    )
    with pytest.raises(ValueError, match='collation "x\'"'):
        column_def({"name": "email", "type": "STRING", "collation": "x'"})


def test_carried_schema_copies_descriptions_defaults_and_policy_tags_also_nested() -> None:
    prod = [
        {"name": "email", "type": "STRING", "description": "it's", "policyTags": {"names": ["t1"]}},
        {"name": "status", "type": "STRING", "defaultValueExpression": "'new'"},
        {
            "name": "addr",
            "type": "RECORD",
            "fields": [{"name": "zip", "type": "STRING", "policyTags": {"names": ["t2"]}}],
        },
    ]
    created = [
        {"name": "email", "type": "STRING"},
        {"name": "status", "type": "STRING"},
        {"name": "addr", "type": "RECORD", "fields": [{"name": "zip", "type": "STRING"}]},
    ]
    assert carried_schema(prod, created) == prod


@pytest.mark.parametrize(
    "unit,clause",
    [
        ("DAY", "partition by _PARTITIONDATE"),
        ("HOUR", "partition by timestamp_trunc(_PARTITIONTIME, HOUR)"),
        ("MONTH", "partition by date_trunc(_PARTITIONDATE, MONTH)"),
    ],
)
def test_ingestion_time_partitioning_is_created(unit: str, clause: str) -> None:
    info = TableInfo(
        "core", "t", "TABLE", schema=[{"name": "id", "type": "INTEGER"}], partitioning={"type": unit, "field": None}
    )
    assert partition_clause(info) == clause


# ------------------------------------------------------------------------------------- the plan


def _plan(*tables: TableInfo, ids: dict[str, list[str]] | None = None, **overrides: Any) -> dict[str, Any]:
    config = parse_config(
        {
            "project": "envsync-demo",
            "prod": {"datasets": ["core"]},
            "tables": overrides,
            "state": {"bucket": "envsync-test-state"},
        }
    )
    info = DatasetInfo("core", "US", None, {}, list(tables))
    window = quarter_window(dt.datetime(2026, 12, 31, 22, tzinfo=UTC), 2)
    plan = plan_dataset(config, info, existing=None, window=window, partition_ids=ids)
    return {a.table: a for a in plan.actions}


def _hourly(name: str = "hourly", unit: str = "HOUR") -> TableInfo:
    return TableInfo(
        "core",
        name,
        "TABLE",
        schema=[{"name": "id", "type": "INTEGER"}, {"name": "ts", "type": "TIMESTAMP"}],
        partitioning={"type": unit, "field": "ts"},
        num_bytes=8758 * 16,
        num_rows=8758,
    )


def test_the_plan_counts_two_delete_jobs_for_an_hourly_table_of_a_year() -> None:
    a = _plan(_hourly(), ids={"hourly": hour_ids(dt.datetime(2026, 1, 1), 8758)})["hourly"]
    assert (a.action, a.est_jobs) == ("clone_window", 6)  # clone, partitions, 2 DELETEs, verify, swap


def test_a_clone_with_few_partitions_outside_the_window_is_trimmed_without_listing_them() -> None:
    from envsync.sync.plan import single_trim

    a = _plan(_hourly("daily", "DAY"), ids={"daily": [f"2026{m:02d}01" for m in range(1, 13)]})["daily"]
    assert single_trim(a) and a.trim_partitions is not None and a.trim_partitions < 12
    assert (a.action, a.est_jobs) == ("clone_window", 4)  # clone, 1 DELETE, verify, swap: no listing
    year = _plan(_hourly(), ids={"hourly": hour_ids(dt.datetime(2026, 1, 1), 8758)})["hourly"]
    assert not single_trim(year) and year.trim_partitions is not None and year.trim_partitions > 4000
    unknown = _plan(_hourly("daily", "DAY"))["daily"]  # no partition ids: the clone's are listed
    assert unknown.trim_partitions is None and not single_trim(unknown)


def test_the_plan_counts_two_insert_jobs_for_a_ctas_of_two_hourly_quarters() -> None:
    a = _plan(_hourly(), **{"core.hourly": {"strategy": "ctas_window"}})["hourly"]
    assert (a.action, a.est_jobs) == ("ctas_window", 5)  # CREATE, 2 INSERTs, verify, swap


def test_the_plan_bills_the_partition_a_mid_day_window_end_falls_in() -> None:
    a = _plan(_hourly("daily", "DAY"), ids={"daily": [f"2026{m:02d}01" for m in range(1, 13)]})["daily"]
    assert "window end 2026-12-31 22:00:00 is inside a DAY partition" in a.billing_note
    assert a.est_bytes_billed >= 8758 * 16 // 12


# ------------------------------------------------------------------------ policy tags never lost


class _Table:
    def __init__(self, schema: list[Any]) -> None:
        self.schema = schema


class _Client:
    def __init__(self, fields: list[dict[str, Any]]) -> None:
        from google.cloud import bigquery

        self.stored = [bigquery.SchemaField.from_api_repr(f) for f in fields]

    def get_table(self, ref: str) -> _Table:
        return _Table(list(self.stored))


class _BQ:
    """A table whose schema update keeps descriptions but (like a caller without the Data Catalog
    fine-grained reader permission) not the policy tags, unless `keeps_tags`."""

    def __init__(self, fields: list[dict[str, Any]], keeps_tags: bool) -> None:
        self.client = _Client(fields)
        self.keeps_tags = keeps_tags

    def update_table(self, table: _Table, fields: list[str]) -> None:
        from google.cloud import bigquery

        assert fields == ["schema"]
        reprs = [f.to_api_repr() for f in table.schema]
        if not self.keeps_tags:
            for f in reprs:
                f.pop("policyTags", None)
        self.client.stored = [bigquery.SchemaField.from_api_repr(f) for f in reprs]


PROD_TAGGED = [
    {
        "name": "email",
        "type": "STRING",
        "mode": "NULLABLE",
        "description": "e-mail",
        "policyTags": {"names": ["projects/p/locations/us/taxonomies/1/policyTags/2"]},
    },
    {"name": "status", "type": "STRING", "mode": "NULLABLE", "defaultValueExpression": "'new'"},
]
CREATED = [
    {"name": "email", "type": "STRING", "mode": "NULLABLE"},
    {"name": "status", "type": "STRING", "mode": "NULLABLE"},
]


def test_carry_column_options_applies_prod_options() -> None:
    from envsync.bigquery.ddl import carry_column_options
    from envsync.core.guard import TableRef

    bq = _BQ(CREATED, keeps_tags=True)
    carry_column_options(bq, TableRef("envsync-demo", "dev_core", "t"), PROD_TAGGED)  # type: ignore[arg-type]  # a fake BigQuery client
    stored = [f.to_api_repr() for f in bq.client.stored]
    assert stored[0]["policyTags"] == PROD_TAGGED[0]["policyTags"] and stored[0]["description"] == "e-mail"
    assert stored[1]["defaultValueExpression"] == "'new'"


def test_a_derived_table_that_would_lose_its_policy_tags_fails() -> None:
    from envsync.bigquery.ddl import ColumnOptionsError, carry_column_options
    from envsync.core.guard import TableRef

    bq = _BQ(CREATED, keeps_tags=False)
    with pytest.raises(ColumnOptionsError, match="dev_core.t.*policy tags of prod were not applied.*email"):
        carry_column_options(bq, TableRef("envsync-demo", "dev_core", "t"), PROD_TAGGED)  # type: ignore[arg-type]  # a fake BigQuery client
