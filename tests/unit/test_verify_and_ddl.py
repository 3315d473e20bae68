"""Verification checks (envsync.bigquery.verify), DDL helpers (envsync.sync.run), reports and run params. Pure."""

from __future__ import annotations

from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from envsync.bigquery.ddl import cluster_clause, column_def, column_type_sql, partition_clause
from envsync.bigquery.discovery import TableInfo
from envsync.bigquery.verify import bucket_expr, compare_counts, compare_schema, window_filter
from envsync.core.config import EnvsyncConfig, parse_config
from envsync.core.identifiers import IdentifierError
from envsync.observe.report import human_bytes, render_table
from envsync.operators.params import validate_params


@pytest.fixture
def config() -> EnvsyncConfig:
    return parse_config(
        {
            "project": "envsync-demo",
            "prod": {"datasets": ["sales", "marketing"]},
            "environments": {"dev": {"window_quarters": 3}},
            "state": {"bucket": "envsync-test-state"},
        }
    )


def parse_bq(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)


# ------------------------------------------------------------------------- compare_counts


def test_equal_counts_have_no_problem() -> None:
    counts = {"2026-07-01": 3, "2026-07-02": 4}
    assert compare_counts("dev_sales.orders", counts, dict(counts)) == []
    assert compare_counts("dev_sales.orders", {}, {}) == []


def test_count_differences_name_the_table_and_partitions() -> None:
    problems = compare_counts(
        "dev_sales.orders",
        {"2026-07-01": 3, "2026-07-02": 4, "2026-07-03": 1},
        {"2026-07-01": 3, "2026-07-02": 5, "2026-07-04": 1},
    )
    assert len(problems) == 1
    message = problems[0]
    assert message.startswith("dev_sales.orders: ")
    assert "3 partition(s)" in message
    assert "2026-07-02: prod 4, copy 5" in message
    assert "2026-07-03: prod 1, copy 0" in message
    assert "2026-07-04: prod 0, copy 1" in message
    assert "2026-07-01" not in message


def test_many_count_differences_are_summarised() -> None:
    problems = compare_counts("dev_sales.orders", {f"p{i}": 1 for i in range(8)}, {})
    assert "8 partition(s)" in problems[0]
    assert "and 3 more" in problems[0]


# ------------------------------------------------------------------------- compare_schema

PROD_SCHEMA: list[dict[str, Any]] = [
    {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
    {"name": "amount", "type": "FLOAT", "mode": "NULLABLE"},
    {"name": "paid", "type": "BOOLEAN"},
    {
        "name": "address",
        "type": "RECORD",
        "mode": "NULLABLE",
        "fields": [{"name": "zip", "type": "STRING"}, {"name": "number", "type": "INTEGER"}],
    },
]


def copy_schema() -> list[dict[str, Any]]:
    return [
        {"name": "id", "type": "INT64", "mode": "REQUIRED"},
        {"name": "amount", "type": "FLOAT64", "mode": "NULLABLE"},
        {"name": "paid", "type": "BOOL", "mode": "NULLABLE"},
        {
            "name": "address",
            "type": "STRUCT",
            "mode": "NULLABLE",
            "fields": [{"name": "zip", "type": "STRING"}, {"name": "number", "type": "INT64"}],
        },
    ]


def test_type_aliases_compare_equal() -> None:
    assert compare_schema("dev_sales.orders", PROD_SCHEMA, copy_schema()) == []


def test_missing_column_is_reported() -> None:
    copy = [f for f in copy_schema() if f["name"] != "amount"]
    problems = compare_schema("dev_sales.orders", PROD_SCHEMA, copy)
    assert len(problems) == 1
    assert problems[0].startswith("dev_sales.orders: schema differs")
    assert "column amount is missing" in problems[0]


def test_extra_column_is_reported() -> None:
    copy = copy_schema() + [{"name": "extra", "type": "STRING"}]
    assert "column extra is not in prod" in compare_schema("dev_sales.orders", PROD_SCHEMA, copy)[0]


def test_mode_change_required_to_nullable_is_reported() -> None:
    copy = copy_schema()
    copy[0]["mode"] = "NULLABLE"
    problem = compare_schema("dev_sales.orders", PROD_SCHEMA, copy)[0]
    assert "column id" in problem
    assert "REQUIRED" in problem and "NULLABLE" in problem


def test_nested_field_type_change_is_reported() -> None:
    copy = copy_schema()
    copy[3]["fields"][0]["type"] = "INT64"
    problem = compare_schema("dev_sales.orders", PROD_SCHEMA, copy)[0]
    assert "column address" in problem
    assert "nested fields differ" in problem


def test_column_order_change_is_reported() -> None:
    problem = compare_schema("dev_sales.orders", PROD_SCHEMA, list(reversed(copy_schema())))[0]
    assert "column order differs" in problem


# ------------------------------------------------------------------------- bucket_expr


@pytest.mark.parametrize(
    ("column", "kind", "unit", "expected"),
    [
        ("d", "DATE", "DAY", "cast(`d` as string)"),
        ("d", "DATE", "MONTH", "cast(date_trunc(`d`, MONTH) as string)"),
        ("d", "DATE", "YEAR", "cast(date_trunc(`d`, YEAR) as string)"),
        ("dt", "DATETIME", "DAY", "cast(datetime_trunc(`dt`, DAY) as string)"),
        ("dt", "DATETIME", "HOUR", "cast(datetime_trunc(`dt`, HOUR) as string)"),
        ("ts", "TIMESTAMP", "HOUR", "cast(timestamp_trunc(`ts`, HOUR) as string)"),
        ("ts", "TIMESTAMP", "MONTH", "cast(timestamp_trunc(`ts`, MONTH) as string)"),
        ("_PARTITIONTIME", "TIMESTAMP", "day", "cast(timestamp_trunc(`_PARTITIONTIME`, DAY) as string)"),
    ],
)
def test_bucket_expr(column: str, kind: str, unit: str, expected: str) -> None:
    sql = bucket_expr(column, kind, unit)
    assert sql == expected
    parse_bq(f"select {sql} as partition_key from t")


def test_bucket_expr_without_a_column_is_one_bucket() -> None:
    assert bucket_expr(None, None, "DAY") == "'all'"
    assert window_filter(None) == "true"


def test_bucket_expr_rejects_unknown_granularity_and_bad_columns() -> None:
    with pytest.raises(ValueError, match="'WEEK'"):
        bucket_expr("d", "DATE", "WEEK")
    with pytest.raises(IdentifierError):
        bucket_expr("d`) or (true", "DATE", "DAY")


def test_window_filter_uses_parameters() -> None:
    sql = window_filter("order_date")
    assert sql == "`order_date` >= @window_start and `order_date` < @window_end"
    assert {p.name for p in parse_bq(f"select 1 from t where {sql}").find_all(exp.Parameter)} == {
        "window_start",
        "window_end",
    }


# ------------------------------------------------------------------------- DDL helpers

NESTED = {
    "name": "items",
    "type": "RECORD",
    "mode": "REPEATED",
    "fields": [
        {"name": "sku", "type": "STRING", "mode": "REQUIRED"},
        {"name": "price", "type": "NUMERIC", "precision": "10", "scale": "2"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {
            "name": "dims",
            "type": "RECORD",
            "fields": [{"name": "w", "type": "FLOAT"}, {"name": "ok", "type": "BOOLEAN", "mode": "REQUIRED"}],
        },
    ],
}


def test_column_def_for_a_repeated_struct_with_required_fields() -> None:
    assert column_def(NESTED) == (
        "`items` ARRAY<STRUCT<`sku` STRING NOT NULL, `price` NUMERIC(10, 2), `tags` ARRAY<STRING>, "
        "`dims` STRUCT<`w` FLOAT64, `ok` BOOL NOT NULL>>>"
    )


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (
            {"name": "n", "type": "NUMERIC", "precision": "38", "scale": "9", "mode": "REQUIRED"},
            "`n` NUMERIC(38, 9) NOT NULL",
        ),
        ({"name": "n", "type": "NUMERIC", "precision": "10"}, "`n` NUMERIC(10, 0)"),
        ({"name": "n", "type": "BIGNUMERIC", "precision": "50", "scale": "20"}, "`n` BIGNUMERIC(50, 20)"),
        ({"name": "n", "type": "NUMERIC"}, "`n` NUMERIC"),
        ({"name": "s", "type": "STRING", "maxLength": "10"}, "`s` STRING(10)"),
        ({"name": "i", "type": "INTEGER", "mode": "REPEATED"}, "`i` ARRAY<INT64>"),
        ({"name": "d", "type": "DATE", "mode": "NULLABLE"}, "`d` DATE"),
        ({"name": "ts", "type": "TIMESTAMP", "mode": "REQUIRED"}, "`ts` TIMESTAMP NOT NULL"),
    ],
)
def test_column_def_scalars(field: dict[str, Any], expected: str) -> None:
    assert column_def(field) == expected


def test_column_type_sql_of_a_record() -> None:
    assert (
        column_type_sql({"name": "r", "type": "RECORD", "fields": [{"name": "a", "type": "INTEGER"}]})
        == "STRUCT<`a` INT64>"
    )


def test_column_def_rejects_an_illegal_column_name() -> None:
    with pytest.raises(IdentifierError):
        column_def({"name": "a b", "type": "STRING"})


def test_produced_ddl_parses_as_bigquery() -> None:
    fields = [
        {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
        NESTED,
        {"name": "amount", "type": "NUMERIC", "precision": "10", "scale": "2", "mode": "REQUIRED"},
        {"name": "order_date", "type": "DATE"},
    ]
    info = TableInfo(
        "sales",
        "orders",
        "TABLE",
        schema=fields,
        partitioning={"type": "DAY", "field": "order_date"},
        clustering=["id"],
    )
    ddl = (
        "create or replace table `envsync-demo.dev_sales.orders` (\n    "
        + ",\n    ".join(column_def(f) for f in fields)
        + f"\n)\n{partition_clause(info)}\n{cluster_clause(info)}"
    )
    tree = parse_bq(ddl)
    assert isinstance(tree, exp.Create)
    schema = tree.this
    assert isinstance(schema, exp.Schema)
    columns = {c.name: c for c in schema.expressions if isinstance(c, exp.ColumnDef)}
    assert list(columns) == ["id", "items", "amount", "order_date"]
    items_type = columns["items"].args["kind"]
    assert items_type.is_type(exp.DataType.Type.ARRAY)
    inner = items_type.expressions[0]
    assert inner.is_type(exp.DataType.Type.STRUCT)
    assert [f.name for f in inner.expressions] == ["sku", "price", "tags", "dims"]
    assert columns["amount"].args["kind"].sql("bigquery") == "NUMERIC(10, 2)"
    assert any(isinstance(c.kind, exp.NotNullColumnConstraint) for c in columns["id"].constraints)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (
            TableInfo(
                "s", "t", "TABLE", schema=[{"name": "d", "type": "DATE"}], partitioning={"type": "DAY", "field": "d"}
            ),
            "partition by `d`",
        ),
        (
            TableInfo(
                "s", "t", "TABLE", schema=[{"name": "d", "type": "DATE"}], partitioning={"type": "MONTH", "field": "d"}
            ),
            "partition by date_trunc(`d`, MONTH)",
        ),
        (
            TableInfo(
                "s",
                "t",
                "TABLE",
                schema=[{"name": "ts", "type": "TIMESTAMP"}],
                partitioning={"type": "MONTH", "field": "ts"},
            ),
            "partition by timestamp_trunc(`ts`, MONTH)",
        ),
        (
            TableInfo(
                "s",
                "t",
                "TABLE",
                schema=[{"name": "ts", "type": "TIMESTAMP"}],
                partitioning={"type": "DAY", "field": "ts"},
            ),
            "partition by timestamp_trunc(`ts`, DAY)",
        ),
        (
            TableInfo(
                "s",
                "t",
                "TABLE",
                schema=[{"name": "dt", "type": "DATETIME"}],
                partitioning={"type": "HOUR", "field": "dt"},
            ),
            "partition by datetime_trunc(`dt`, HOUR)",
        ),
        (
            TableInfo(
                "s",
                "t",
                "TABLE",
                schema=[{"name": "n", "type": "INTEGER"}],
                range_partitioning={"field": "n", "start": 0, "end": 100, "interval": 10},
            ),
            "partition by range_bucket(`n`, generate_array(0, 100, 10))",
        ),
        (TableInfo("s", "t", "TABLE", schema=[{"name": "n", "type": "INTEGER"}]), ""),
    ],
    ids=["date-day", "date-month", "timestamp-month", "timestamp-day", "datetime-hour", "range", "none"],
)
def test_partition_clause(info: TableInfo, expected: str) -> None:
    clause = partition_clause(info)
    assert clause == expected
    column = info.schema[0]
    tree = parse_bq(f"create table `p1234x.d.t` ({column_def(column)}) {clause}")
    assert isinstance(tree, exp.Create)
    if clause:
        assert tree.find(exp.PartitionedByProperty) is not None


def test_cluster_clause() -> None:
    assert cluster_clause(TableInfo("s", "t", "TABLE", clustering=["a", "b"])) == "cluster by `a`, `b`"
    assert cluster_clause(TableInfo("s", "t", "TABLE")) == ""


# ------------------------------------------------------------------------- report


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (10 * 1024**2, "10.0 MB"),
        (3 * 1024**3, "3.0 GB"),
        (1024**4, "1.0 TB"),
        (5 * 1024**5, "5120.0 TB"),
    ],
)
def test_human_bytes(value: int | None, text: str) -> None:
    assert human_bytes(value) == text


def test_render_table_aligns_columns() -> None:
    out = render_table(["table", "rows"], [["sales.orders", "1,000"], ["sales.x", 5]])
    lines = out.split("\n")
    assert lines == [
        "table         rows ",
        "------------  -----",
        "sales.orders  1,000",
        "sales.x       5    ",
    ]


def test_render_table_without_rows() -> None:
    assert render_table(["a", "bb"], []) == "a  bb\n-  --"


# ------------------------------------------------------------------------- validate_params


def test_empty_datasets_mean_all_configured(config: EnvsyncConfig) -> None:
    for empty in (None, "", []):
        assert validate_params(config, empty, None, None, False) == (["sales", "marketing"], [], 3, False)


def test_valid_params_pass_through(config: EnvsyncConfig) -> None:
    assert validate_params(config, ["sales"], ["orders", "sales.items"], 2, True) == (
        ["sales"],
        ["orders", "sales.items"],
        2,
        True,
    )


def test_unknown_dataset_is_named(config: EnvsyncConfig) -> None:
    with pytest.raises(ValueError, match=r"\['finance'\]") as info:
        validate_params(config, ["sales", "finance"], [], 2, False)
    assert "datasets" in str(info.value)


def test_datasets_must_be_a_list(config: EnvsyncConfig) -> None:
    with pytest.raises(ValueError, match="'sales'"):
        validate_params(config, "sales", [], 2, False)


@pytest.mark.parametrize(("entry", "named"), [("bad name", "'bad name'"), ("a.b.c", "'a.b'"), ("sales.x;y", "'x;y'")])
def test_bad_table_entry_is_named(config: EnvsyncConfig, entry: str, named: str) -> None:
    with pytest.raises(ValueError, match="param tables") as info:
        validate_params(config, ["sales"], ["orders", entry], 2, False)
    assert named in str(info.value)


def test_tables_must_be_a_list(config: EnvsyncConfig) -> None:
    with pytest.raises(ValueError, match="'orders'"):
        validate_params(config, ["sales"], "orders", 2, False)


@pytest.mark.parametrize("bad", [0, 9, "x", "", True, 2.5, "-1"])
def test_bad_window_is_rejected_naming_the_value(config: EnvsyncConfig, bad: object) -> None:
    with pytest.raises(ValueError, match="window_quarters") as info:
        validate_params(config, ["sales"], [], bad, False)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize(("raw", "value"), [("3", 3), (" 8 ", 8), (1, 1), (None, 3)])
def test_window_from_a_rendered_template_string(config: EnvsyncConfig, raw: object, value: int) -> None:
    assert validate_params(config, ["sales"], [], raw, False)[2] == value


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("False", False), ("1", True), (False, False), (True, True)]
)
def test_dry_run_from_a_rendered_template_string(config: EnvsyncConfig, raw: object, value: bool) -> None:
    assert validate_params(config, ["sales"], [], 2, raw)[3] is value


def test_duplicate_datasets_are_rejected_or_merged(config: EnvsyncConfig) -> None:
    try:
        datasets, *_ = validate_params(config, ["sales", "sales"], [], 2, False)
    except ValueError as error:
        assert "sales" in str(error)
    else:
        assert datasets == ["sales"]


def test_partition_filter_keeps_every_row_on_the_partitioning_column() -> None:
    """Tables with require_partition_filter are read with a predicate on the partitioning column only
    (https://cloud.google.com/bigquery/docs/querying-partitioned-tables); other tables with `true`."""
    from envsync.bigquery.discovery import TableInfo
    from envsync.bigquery.verify import partition_filter

    schema = [{"name": "d", "type": "DATE"}, {"name": "ts", "type": "TIMESTAMP"}, {"name": "n", "type": "INTEGER"}]
    day = TableInfo(
        "s", "t", "TABLE", schema=schema, partitioning={"type": "DAY", "field": "d"}, require_partition_filter=True
    )
    assert partition_filter(day) == "(`d` is null or `d` >= date '0001-01-01')"
    hour = TableInfo(
        "s", "t", "TABLE", schema=schema, partitioning={"type": "HOUR", "field": "ts"}, require_partition_filter=True
    )
    assert partition_filter(hour) == "(`ts` is null or `ts` >= timestamp '0001-01-01 00:00:00+00')"
    ranged = TableInfo(
        "s",
        "t",
        "TABLE",
        schema=schema,
        require_partition_filter=True,
        range_partitioning={"field": "n", "start": 0, "end": 100, "interval": 10},
    )
    assert partition_filter(ranged) == "(`n` is null or `n` >= -9223372036854775807 - 1)"
    ingestion = TableInfo(
        "s", "t", "TABLE", schema=schema, partitioning={"type": "DAY", "field": None}, require_partition_filter=True
    )
    assert "_PARTITIONTIME is null or _PARTITIONTIME >=" in partition_filter(ingestion)
    assert (
        partition_filter(TableInfo("s", "t", "TABLE", schema=schema, partitioning={"type": "DAY", "field": "d"}))
        == "true"
    )
