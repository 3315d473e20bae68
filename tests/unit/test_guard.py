"""The prod write guard (envsync.core.guard): identifiers, write targets of SQL, and the guarded client.

No BigQuery: the client is a `Mock(spec=bigquery.Client)`, and the point of most tests is that a
refused write never reaches it.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from google.cloud import bigquery

from envsync.core.guard import GuardedBigQuery, ProdWriteRefused, TableRef, WriteGuard, WriteTarget, to_query_parameters
from envsync.core.identifiers import IdentifierError, quote, quote_column, validate_identifier

PROJECT = "envsync-demo"
PROD = ("sales", "marketing")
PREFIXES = ("dev_", "qa_", "staging_")


@pytest.fixture
def guard() -> WriteGuard:
    return WriteGuard(PROJECT, PROD, PREFIXES)


@pytest.fixture
def client() -> mock.Mock:
    return mock.Mock(spec=bigquery.Client)


@pytest.fixture
def bq(client: mock.Mock, guard: WriteGuard) -> GuardedBigQuery:
    return GuardedBigQuery(client, guard, "US")


def targets(found: list[WriteTarget]) -> list[str]:
    return [str(t) for t in found]


# ------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("project", "envsync-demo"),
        ("project", "abcdef"),
        ("project", "a" * 30),
        ("dataset", "sales"),
        ("dataset", "_private"),
        ("dataset", "dev_sales_2"),
        ("dataset", "a" * 1024),
        ("table", "orders"),
        ("table", "orders-2026"),
        ("table", "2026_orders"),
        ("table", "a" * 1024),
        ("column", "order_date"),
        ("column", "_PARTITIONTIME"),
        ("column", "a" * 300),
    ],
)
def test_validate_identifier_accepts_legal_names(kind: str, value: str) -> None:
    assert validate_identifier(kind, value) == value


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("dataset", "sales`; drop table x; --"),
        ("table", "orders`; drop table sales.orders; --"),
        ("column", "d`) or true --"),
        ("dataset", "a.b"),
        ("table", "a.b"),
        ("dataset", ""),
        ("table", ""),
        ("column", ""),
        ("project", ""),
        ("dataset", "sales data"),
        ("table", "order items"),
        ("column", "order date"),
        ("dataset", "my-ds"),
        ("dataset", "1sales"),
        ("column", "1col"),
        ("dataset", "a" * 1025),
        ("table", "a" * 1025),
        ("column", "a" * 301),
        ("project", "a" * 31),
        ("project", "abcde"),
        ("project", "Envsync-demo"),
        ("project", "envsync-demo-"),
        ("project", "1envsync"),
        ("table", "été"),
        ("dataset", None),
        ("table", 5),
    ],
)
def test_validate_identifier_rejects_illegal_names(kind: str, value: object) -> None:
    with pytest.raises(IdentifierError, match=f"illegal {kind} name") as info:
        validate_identifier(kind, value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("kind", "value"),
    [("dataset", "sales\n"), ("table", "orders\n"), ("column", "d\n"), ("project", "envsync-demo\n")],
)
def test_validate_identifier_rejects_a_trailing_newline(kind: str, value: str) -> None:
    with pytest.raises(IdentifierError):
        validate_identifier(kind, value)


def test_quote_backticks_a_validated_path() -> None:
    assert quote("envsync-demo", "dev_sales", "orders") == "`envsync-demo.dev_sales.orders`"
    assert quote("dev_sales", "orders") == "`dev_sales.orders`"
    assert quote("orders") == "`orders`"
    assert quote_column("order_date") == "`order_date`"


@pytest.mark.parametrize(
    "parts",
    [
        ("envsync-demo", "sales`; drop table x; --", "orders"),
        ("sales", "orders`"),
        ("Bad_Project", "sales", "orders"),
        ("sales.x", "orders"),
    ],
)
def test_quote_refuses_illegal_parts(parts: tuple[str, ...]) -> None:
    with pytest.raises(IdentifierError):
        quote(*parts)


def test_quote_column_refuses_injection() -> None:
    with pytest.raises(IdentifierError):
        quote_column("x` = 1 or true --")


def test_table_ref_validates_and_renders() -> None:
    ref = TableRef(PROJECT, "dev_sales", "orders")
    assert ref.sql == "`envsync-demo.dev_sales.orders`"
    assert ref.api == "envsync-demo.dev_sales.orders"
    assert str(ref) == "dev_sales.orders"
    with pytest.raises(IdentifierError):
        TableRef(PROJECT, "dev_sales", "orders; drop")


# ------------------------------------------------------------------------- WriteGuard.check


@pytest.mark.parametrize("dataset", ["sales", "marketing"])
def test_check_refuses_a_prod_dataset(guard: WriteGuard, dataset: str) -> None:
    with pytest.raises(ProdWriteRefused, match=f"'{dataset}' is a prod dataset"):
        guard.check(WriteTarget(PROJECT, dataset, "orders"), "write")
    with pytest.raises(ProdWriteRefused):
        guard.check(WriteTarget(PROJECT, dataset), "drop dataset")


@pytest.mark.parametrize("dataset", ["raw", "sales_copy", "prod_sales", "Dev_sales", "DEV_SALES", "devsales"])
def test_check_refuses_a_dataset_without_an_allowed_prefix(guard: WriteGuard, dataset: str) -> None:
    with pytest.raises(ProdWriteRefused, match="has no environment prefix") as info:
        guard.check(WriteTarget(PROJECT, dataset, "t"), "write")
    assert dataset in str(info.value)


def test_check_refuses_another_project(guard: WriteGuard) -> None:
    with pytest.raises(ProdWriteRefused, match="only writes to project 'envsync-demo'"):
        guard.check(WriteTarget("other-project", "dev_sales", "orders"), "write")


@pytest.mark.parametrize("dataset", ["dev_sales", "qa_sales", "staging_marketing", "dev_anything"])
def test_check_allows_environment_datasets(guard: WriteGuard, dataset: str) -> None:
    guard.check(WriteTarget(PROJECT, dataset, "orders"), "write")
    guard.check(WriteTarget(PROJECT, dataset), "create dataset")


def test_a_prod_dataset_that_looks_like_an_environment_is_still_prod() -> None:
    guard = WriteGuard(PROJECT, ["sales", "dev_legacy"], PREFIXES)
    with pytest.raises(ProdWriteRefused, match="prod dataset"):
        guard.check(WriteTarget(PROJECT, "dev_legacy", "t"), "write")


def test_guard_needs_an_allowed_prefix() -> None:
    with pytest.raises(ValueError):
        WriteGuard(PROJECT, PROD, [])


# ------------------------------------------------------------------------- check_statement

ALLOWED = [
    (
        "create or replace table `envsync-demo.dev_sales.orders__envsync_stage`\n"
        "clone `envsync-demo.sales.orders`\n    for system_time as of @cut",
        ["envsync-demo.dev_sales.orders__envsync_stage"],
    ),
    (
        "CREATE OR REPLACE TABLE dev_sales.orders CLONE sales.orders FOR SYSTEM_TIME AS OF @t",
        ["envsync-demo.dev_sales.orders"],
    ),
    (
        "create or replace table `envsync-demo`.dev_sales.x clone `envsync-demo`.sales.x for system_time as of @t",
        ["envsync-demo.dev_sales.x"],
    ),
    ("delete from `envsync-demo.dev_sales.orders` where order_date < @window_start", ["envsync-demo.dev_sales.orders"]),
    ("drop table if exists `envsync-demo.dev_sales.orders`", ["envsync-demo.dev_sales.orders"]),
    ("drop schema dev_sales cascade", ["envsync-demo.dev_sales"]),
    (
        "alter table `envsync-demo.dev_sales.orders__envsync_stage` rename to `orders`",
        ["envsync-demo.dev_sales.orders__envsync_stage"],
    ),
    ("insert into dev_sales.orders select * from sales.orders", ["envsync-demo.dev_sales.orders"]),
    (
        "merge dev_sales.orders t using sales.orders s on t.id = s.id when matched then update set a = s.a",
        ["envsync-demo.dev_sales.orders"],
    ),
    ("update qa_sales.orders set a = 1 where true", ["envsync-demo.qa_sales.orders"]),
    ("truncate table staging_sales.orders", ["envsync-demo.staging_sales.orders"]),
    (
        "create or replace view `envsync-demo.dev_sales.v` as select * from `envsync-demo.dev_sales.orders`",
        ["envsync-demo.dev_sales.v"],
    ),
    (
        "drop table if exists `envsync-demo.dev_sales.orders`;\n"
        "alter table `envsync-demo.dev_sales.orders__envsync_stage` rename to `orders`;",
        ["envsync-demo.dev_sales.orders", "envsync-demo.dev_sales.orders__envsync_stage"],
    ),
    (
        "create or replace table `envsync-demo.dev_sales.t` (`id` INT64 NOT NULL, `d` DATE) partition by `d`\n"
        "as select * from `envsync-demo.sales.t` for system_time as of @cut where `d` >= @window_start",
        ["envsync-demo.dev_sales.t"],
    ),
]


@pytest.mark.parametrize(("sql", "expected"), ALLOWED)
def test_check_statement_allows_writes_to_environments_and_returns_the_targets(
    guard: WriteGuard, sql: str, expected: list[str]
) -> None:
    assert targets(guard.check_statement(sql)) == expected


REFUSED_PROD = [
    "create or replace table `envsync-demo.sales.orders` clone `envsync-demo.dev_sales.orders` "
    "for system_time as of @cut",
    "CREATE OR REPLACE TABLE sales.orders CLONE dev_sales.orders FOR SYSTEM_TIME AS OF @t",
    "create or replace table `envsync-demo`.sales.x clone `envsync-demo`.dev_sales.x for system_time as of @t",
    "CREATE TABLE IF NOT EXISTS sales.x CLONE dev_sales.x",
    "CREATE SNAPSHOT TABLE sales.snap CLONE sales.orders",
    "delete from `envsync-demo.sales.orders` where true",
    "DELETE FROM sales.orders AS o WHERE true",
    "drop table if exists `envsync-demo.sales.orders`",
    "drop table sales.orders",
    "DROP VIEW marketing.v",
    "drop schema sales cascade",
    "DROP SCHEMA `envsync-demo.sales` CASCADE",
    "alter table `envsync-demo.sales.orders` rename to orders_old",
    "ALTER TABLE sales.orders SET OPTIONS (description = 'x')",
    "insert into sales.orders (a) values (1)",
    "INSERT sales.orders VALUES (1)",
    "merge sales.orders t using dev_sales.o s on t.id = s.id when matched then update set a = s.a",
    "update sales.orders set a = 1 where true",
    "truncate table `envsync-demo.sales.orders`",
    "create view marketing.v as select 1",
    "create or replace view `envsync-demo.sales.v` as select * from `envsync-demo.dev_sales.orders`",
    "CREATE SCHEMA sales",
]


@pytest.mark.parametrize("sql", REFUSED_PROD)
def test_check_statement_refuses_writes_to_prod(guard: WriteGuard, sql: str) -> None:
    with pytest.raises(ProdWriteRefused, match="is a prod dataset and prod is read-only"):
        guard.check_statement(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "drop table if exists dev_sales.a; drop table sales.orders",
        "drop table if exists `envsync-demo.dev_sales.orders`;\nalter table `envsync-demo.sales.orders` rename to `x`;",
        "CREATE OR REPLACE TABLE dev_sales.a CLONE sales.a FOR SYSTEM_TIME AS OF @t; DROP TABLE sales.orders",
        "CREATE OR REPLACE TABLE dev_sales.a CLONE sales.a FOR SYSTEM_TIME AS OF @t;\n"
        "CREATE OR REPLACE TABLE sales.b CLONE dev_sales.a FOR SYSTEM_TIME AS OF @t",
        "select 1; delete from sales.orders where true",
    ],
)
def test_check_statement_refuses_a_script_whose_later_statement_writes_prod(guard: WriteGuard, sql: str) -> None:
    with pytest.raises(ProdWriteRefused, match="'sales' is a prod dataset"):
        guard.check_statement(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "select * from sales.orders",
        "select * from `envsync-demo.sales.orders` for system_time as of @cut where d >= @window_start",
        "with recent as (select * from sales.orders where d > '2026-01-01') select count(*) from recent",
        "select 1 union all select 2",
        "select * from sales.orders limit 0",
    ],
)
def test_check_statement_allows_read_only_sql_and_returns_nothing(guard: WriteGuard, sql: str) -> None:
    assert guard.check_statement(sql) == []


@pytest.mark.parametrize(
    "sql",
    [
        "delete from orders where true",
        "create table orders (a int64)",
        "drop table orders",
        "create temp table t as select 1",
    ],
)
def test_check_statement_refuses_an_unqualified_write_target(guard: WriteGuard, sql: str) -> None:
    with pytest.raises(ProdWriteRefused, match="cannot tell which dataset"):
        guard.check_statement(sql)


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        ("create table raw.t (a int64)", "has no environment prefix"),
        ("create table `other-project.dev_sales.t` (a int64)", "only writes to project"),
        ("this is not sql at all ((", "cannot parse"),
        ("delete from where", "refused"),
        ("EXECUTE IMMEDIATE 'drop table sales.orders'", "cannot analyse"),
        ("CALL sales.proc()", "cannot analyse"),
        ("BEGIN TRANSACTION; DELETE FROM sales.orders WHERE true; COMMIT TRANSACTION", "refused"),
        ("DECLARE x INT64; DROP TABLE sales.orders", "refused"),
        ("LOAD DATA INTO sales.orders FROM FILES(format = 'CSV', uris = ['gs://b/x.csv'])", "refused"),
        ("CREATE FUNCTION sales.f(x INT64) AS (x)", "refused"),
    ],
)
def test_check_statement_fails_closed(guard: WriteGuard, sql: str, match: str) -> None:
    with pytest.raises(ProdWriteRefused, match=match):
        guard.check_statement(sql)


# ------------------------------------------------------------------------- GuardedBigQuery


def test_refused_query_never_reaches_the_client(bq: GuardedBigQuery, client: mock.Mock) -> None:
    with pytest.raises(ProdWriteRefused):
        bq.start_query(
            "delete from `envsync-demo.sales.orders` where true",
            params={"cut": dt.datetime(2026, 11, 21, tzinfo=dt.UTC)},
            job_id="envsync_x",
            labels={"envsync-dag": "prod_to_dev_sync"},
        )
    assert client.method_calls == []
    assert client.mock_calls == []


def test_refused_dry_run_query_never_reaches_the_client(bq: GuardedBigQuery, client: mock.Mock) -> None:
    with pytest.raises(ProdWriteRefused):
        bq.start_query("drop schema sales cascade", job_id="j", labels={}, dry_run=True)
    assert client.method_calls == []


def test_refused_create_dataset_never_reaches_the_client(bq: GuardedBigQuery, client: mock.Mock) -> None:
    with pytest.raises(ProdWriteRefused, match="create dataset"):
        bq.create_dataset(bigquery.Dataset("envsync-demo.sales"))
    with pytest.raises(ProdWriteRefused, match="no environment prefix"):
        bq.create_dataset(bigquery.Dataset("envsync-demo.scratch"))
    with pytest.raises(ProdWriteRefused, match="only writes to project"):
        bq.create_dataset(bigquery.Dataset("other-project.dev_sales"))
    assert client.method_calls == []


def test_refused_update_dataset_never_reaches_the_client(bq: GuardedBigQuery, client: mock.Mock) -> None:
    with pytest.raises(ProdWriteRefused):
        bq.update_dataset(bigquery.Dataset("envsync-demo.marketing"), ["description"])
    assert client.method_calls == []


def test_refused_update_table_never_reaches_the_client(bq: GuardedBigQuery, client: mock.Mock) -> None:
    with pytest.raises(ProdWriteRefused, match="update table"):
        bq.update_table(bigquery.Table("envsync-demo.sales.orders"), ["labels"])
    assert client.method_calls == []


def test_refused_delete_table_never_reaches_the_client(bq: GuardedBigQuery, client: mock.Mock) -> None:
    with pytest.raises(ProdWriteRefused, match="delete table"):
        bq.delete_table(TableRef(PROJECT, "sales", "orders"))
    assert client.method_calls == []


def test_dev_query_reaches_the_client_once_with_job_id_labels_and_typed_parameters(
    bq: GuardedBigQuery, client: mock.Mock
) -> None:
    cut = dt.datetime(2026, 11, 21, 2, 5, 0, 123456, tzinfo=dt.UTC)
    sql = "delete from `envsync-demo.dev_sales.orders` where d < @window_start or d >= @window_end"
    labels = {"envsync-dag": "prod_to_dev_sync", "envsync-task": "sync_dataset", "envsync-run": "r1"}
    job = bq.start_query(
        sql,
        params={
            "window_start": dt.date(2026, 7, 1),
            "cut": cut,
            "limit": 10,
            "name": "orders",
            "flag": True,
        },
        job_id="envsync_prod_to_dev_sync_abc123",
        labels=labels,
    )
    client.query.assert_called_once()
    assert job is client.query.return_value
    args, kwargs = client.query.call_args
    assert args == (sql,)
    assert kwargs["job_id"] == "envsync_prod_to_dev_sync_abc123"
    assert kwargs["location"] == "US"
    config = kwargs["job_config"]
    assert isinstance(config, bigquery.QueryJobConfig)
    assert config.labels == labels
    assert config.use_legacy_sql is False
    assert not config.dry_run
    by_name = {p.name: p for p in config.query_parameters}
    assert {name: p.type_ for name, p in by_name.items()} == {
        "window_start": "DATE",
        "cut": "TIMESTAMP",
        "limit": "INT64",
        "name": "STRING",
        "flag": "BOOL",
    }
    assert by_name["cut"].value == cut
    assert by_name["window_start"].value == dt.date(2026, 7, 1)
    # nothing but the one query
    assert [c[0] for c in client.method_calls] == ["query"]


def test_dev_api_writes_reach_the_client(bq: GuardedBigQuery, client: mock.Mock) -> None:
    dataset = bigquery.Dataset("envsync-demo.dev_sales")
    bq.create_dataset(dataset)
    client.create_dataset.assert_called_once_with(dataset, exists_ok=False)
    table = bigquery.Table("envsync-demo.dev_sales.orders")
    bq.update_table(table, ("description", "labels"))
    client.update_table.assert_called_once_with(table, ["description", "labels"])
    bq.delete_table(TableRef(PROJECT, "dev_sales", "orders__envsync_stage"))
    client.delete_table.assert_called_once_with("envsync-demo.dev_sales.orders__envsync_stage", not_found_ok=True)


# ------------------------------------------------------------------------- to_query_parameters


def test_to_query_parameters_types() -> None:
    params = to_query_parameters(
        {
            "b": False,
            "i": 0,
            "f": 1.5,
            "ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            "dt": dt.datetime(2026, 1, 1),
            "d": dt.date(2026, 1, 1),
            "s": "x'; drop table sales.orders; --",
        }
    )
    assert all(isinstance(p, bigquery.ScalarQueryParameter) for p in params)
    assert [(p.name, p.type_) for p in params] == [
        ("b", "BOOL"),
        ("i", "INT64"),
        ("f", "FLOAT64"),
        ("ts", "TIMESTAMP"),
        ("dt", "DATETIME"),
        ("d", "DATE"),
        ("s", "STRING"),
    ]
    assert params[-1].value == "x'; drop table sales.orders; --"


@pytest.mark.parametrize("value", [None, [1, 2], {"a": 1}, b"bytes"])
def test_to_query_parameters_rejects_unsupported_values(value: object) -> None:
    with pytest.raises(TypeError, match="'p'"):
        to_query_parameters({"p": value})
