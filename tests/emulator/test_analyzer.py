"""Every query job is analyzed by GoogleSQL (ZetaSQL) before it runs, as BigQuery's front end does.

BigQuery resolves a statement (names, types, function signatures, parameters) before executing it,
and answers a statement it refuses with a 400 `invalidQuery` job error carrying the analyzer's
message (https://cloud.google.com/bigquery/docs/error-messages: invalidQuery). These tests go through
google-cloud-bigquery against the emulator with the fidelity layer (emulators/bqfidelity/analyzer.py).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import fidkit
import pytest
from google.api_core import exceptions

pytestmark = pytest.mark.integration

PROJECT = "envsync-demo"


def _orders(bq: Any, ds: str) -> str:
    """A table with a partitioning DATE, a TIMESTAMP, a REPEATED RECORD and a RECORD."""
    fidkit.run(
        bq,
        f"""
        create table `{PROJECT}.{ds}.orders` (
            order_id int64 not null,
            order_date date,
            created_at timestamp,
            amount numeric,
            items array<struct<sku string, quantity int64>>,
            shipping struct<city string, country string>
        )
        partition by order_date
        """,
    )
    fidkit.run(
        bq,
        f"""
        insert into `{PROJECT}.{ds}.orders` (order_id, order_date, created_at, amount, items, shipping)
        values
            (1, date '2026-01-05', timestamp '2026-01-05 10:00:00+00', 12.5,
             [struct('A-1' as sku, 2 as quantity), struct('B-2' as sku, 1 as quantity)],
             struct('Paris' as city, 'FR' as country)),
            (2, date '2026-02-10', timestamp '2026-02-10 11:30:00+00', 3.25,
             [struct('C-3' as sku, 5 as quantity)],
             struct('Tokyo' as city, 'JP' as country))
        """,
    )
    return f"{PROJECT}.{ds}.orders"


def _refusal(bq: Any, sql: str, **params: Any) -> tuple[dict[str, Any], Any]:
    """Run a query that must fail; returns (the job's errorResult, the raised exception)."""
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    config = bigquery.QueryJobConfig(query_parameters=to_query_parameters(params))
    job = bq.query(sql, job_config=config, job_retry=None)
    with pytest.raises(exceptions.BadRequest) as raised:
        job.result()
    job.reload()
    return job.error_result, raised.value


def _stats(emulators: Any) -> dict[str, Any]:
    return json.loads(emulators.analyzer_stats.read_text())


def test_valid_sql_over_nested_and_repeated_fields_runs(bq: Any, dataset: Any, emulators: Any) -> None:
    table = _orders(bq, dataset())
    before = _stats(emulators)["accepted"]

    rows = fidkit.run(
        bq,
        f"""
        select o.order_id, item.sku, item.quantity, o.shipping.city
        from `{table}` as o, unnest(o.items) as item
        where o.order_date >= @start and o.created_at < @until
        order by o.order_id, item.sku
        """,
        start=dt.date(2026, 1, 1),
        until=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    )

    assert [(r["order_id"], r["sku"], r["quantity"], r["city"]) for r in rows] == [
        (1, "A-1", 2, "Paris"),
        (1, "B-2", 1, "Paris"),
        (2, "C-3", 5, "Tokyo"),
    ]
    assert _stats(emulators)["accepted"] > before


def test_unknown_column_is_refused_as_invalid_query(bq: Any, dataset: Any, emulators: Any) -> None:
    table = _orders(bq, dataset())
    before = _stats(emulators)["refused"]

    error, raised = _refusal(bq, f"select order_id, order_dat from `{table}`")

    assert error["reason"] == "invalidQuery"
    assert error["location"] == "query"
    assert error["message"] == "Unrecognized name: order_dat; Did you mean order_date? at [1:18]"
    assert raised.code == 400
    stats = _stats(emulators)
    assert stats["refused"] == before + 1
    assert stats["refusals"][-1]["message"] == error["message"]


def test_wrong_types_are_refused(bq: Any, dataset: Any) -> None:
    table = _orders(bq, dataset())

    error, _ = _refusal(bq, f"select order_id from `{table}` where order_date = created_at")
    assert error["reason"] == "invalidQuery"
    assert error["message"].startswith("No matching signature for operator = for argument types: DATE, TIMESTAMP")

    # A TIMESTAMP parameter where BigQuery wants a DATE: refused, whatever DuckDB would coerce.
    error, _ = _refusal(
        bq, f"select order_id from `{table}` where order_date = @cut", cut=dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    )
    assert "argument types: DATE, TIMESTAMP" in error["message"]

    error, _ = _refusal(bq, f"select sum(shipping) from `{table}`")
    assert error["message"].startswith("No matching signature for aggregate function SUM")


def test_undeclared_parameter_is_refused(bq: Any, dataset: Any) -> None:
    table = _orders(bq, dataset())

    sql = f"select order_id from `{table}` where order_date >= @window_start"
    error, _ = _refusal(bq, sql, other=1)

    assert error == {
        "reason": "invalidQuery",
        "location": "query",
        "message": f"Query parameter 'window_start' not found at [1:{sql.index('@') + 1}]",
    }


def test_statements_the_emulator_would_run_but_bigquery_refuses(bq: Any, dataset: Any) -> None:
    table = _orders(bq, dataset())

    error, _ = _refusal(bq, f"delete from `{table}`")
    assert error["message"] == "DELETE must have a WHERE clause at [1:1]"
    # the refused DELETE did not run
    assert fidkit.run(bq, f"select count(*) as n from `{table}`") == [{"n": 2}]

    error, _ = _refusal(bq, "select cast(1 as int32) as x")
    assert error["message"] == "Type not found: int32 at [1:18]"


def test_dry_run_is_analyzed_and_refused_synchronously_with_400(bq: Any, dataset: Any) -> None:
    from google.cloud import bigquery

    table = _orders(bq, dataset())
    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)

    ok = bq.query(f"select order_id, shipping.country from `{table}`", job_config=config, job_retry=None)
    assert [field.name for field in ok.schema] == ["order_id", "country"]

    with pytest.raises(exceptions.BadRequest) as raised:
        bq.query(f"select shipping.county from `{table}`", job_config=config, job_retry=None)
    assert raised.value.code == 400
    assert raised.value.errors[0]["reason"] == "invalidQuery"
    assert "Field name county does not exist in STRUCT<city STRING, country STRING>" in raised.value.message


def test_script_statements_see_the_tables_created_before_them(bq: Any, dataset: Any) -> None:
    ds = dataset()
    table = _orders(bq, ds)

    rows = fidkit.run(
        bq,
        f"""
        create table `{PROJECT}.{ds}.big_orders` as select order_id, amount from `{table}` where amount > 10;
        select order_id, amount * 2 as doubled from `{PROJECT}.{ds}.big_orders`;
        """,
    )
    assert [(r["order_id"], float(r["doubled"])) for r in rows] == [(1, 25.0)]


def test_a_refused_statement_stops_its_script_after_the_statements_before_it(bq: Any, dataset: Any) -> None:
    ds = dataset()
    table = _orders(bq, ds)

    error, _ = _refusal(
        bq,
        f"""
        create table `{PROJECT}.{ds}.copy` as select order_id from `{table}`;
        select amount from `{PROJECT}.{ds}.copy`;
        """,
    )

    assert error["reason"] == "invalidQuery"
    assert error["message"].startswith("Unrecognized name: amount")
    assert [t.table_id for t in bq.list_tables(f"{PROJECT}.{ds}")] == ["copy", "orders"]


def test_default_dataset_and_backquoted_name_forms_resolve(bq: Any, dataset: Any) -> None:
    from google.cloud import bigquery

    ds = dataset()
    _orders(bq, ds)
    config = bigquery.QueryJobConfig(default_dataset=f"{PROJECT}.{ds}")
    for name in ("orders", f"{ds}.orders", f"`{ds}.orders`", f"`{PROJECT}`.{ds}.orders", f"`{PROJECT}.{ds}`.orders"):
        rows = list(bq.query(f"select count(*) as n from {name}", job_config=config, job_retry=None).result())
        assert rows[0]["n"] == 2, name


def test_information_schema_is_declared(bq: Any, dataset: Any) -> None:
    ds = dataset()
    _orders(bq, ds)

    rows = fidkit.run(bq, f"select table_name, table_type from `{PROJECT}.{ds}`.INFORMATION_SCHEMA.TABLES")
    assert rows == [{"table_name": "orders", "table_type": "BASE TABLE"}]

    error, _ = _refusal(bq, f"select table_nme from `{PROJECT}.{ds}`.INFORMATION_SCHEMA.TABLES")
    assert error["message"].startswith("Unrecognized name: table_nme; Did you mean table_name?")


def test_a_missing_table_is_left_to_the_emulator_which_answers_not_found(bq: Any, dataset: Any, emulators: Any) -> None:
    ds = dataset()
    before = _stats(emulators)["not_found"]

    job = bq.query(f"select x from `{PROJECT}.{ds}.nothing`", job_retry=None)
    with pytest.raises(exceptions.NotFound):
        job.result()

    assert _stats(emulators)["not_found"] == before + 1


def test_a_script_calling_its_temporary_function_runs(bq: Any, emulators: Any) -> None:
    before = _stats(emulators)["passed"].get("temp_function_call", 0)

    rows = fidkit.run(bq, "create temp function twice(x int64) as (x * 2);\nselect twice(21) as v;")

    assert rows == [{"v": 42}]
    # the CREATE TEMP FUNCTION is analyzed; the call cannot be (the function is not in the catalog)
    assert _stats(emulators)["passed"]["temp_function_call"] == before + 1


def test_a_script_s_variables_are_declared_to_the_analyzer(bq: Any, dataset: Any) -> None:
    table = _orders(bq, dataset())

    rows = fidkit.run(
        bq,
        f"""
        declare first_day date default date '2026-02-01';
        declare factor int64 default 2;
        select order_id, factor * 10 as scaled from `{table}` where order_date >= first_day;
        """,
    )
    assert rows == [{"order_id": 2, "scaled": 20}]

    error, _ = _refusal(
        bq,
        f"""
        declare first_day timestamp default timestamp '2026-02-01 00:00:00+00';
        select order_id from `{table}` where order_date >= first_day;
        """,
    )
    assert error["message"].startswith("No matching signature for operator >= for argument types: DATE, TIMESTAMP")
