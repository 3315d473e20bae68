"""prod_copy through Airflow (dag.test) on the emulators: a full copy as of T, and a one-click reset."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from testkit import PROJECT, UTC, bq_client, dataset_names, ds, fq, query

pytestmark = pytest.mark.integration


def contents(table: str, key: str) -> list[str]:
    return [r["j"] for r in query(f"select to_json_string(t) as j from `{PROJECT}.{table}` as t order by {key}")]


def states(dag_run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def test_prod_copy_is_whole_and_reset_discards_changes(clean_dev: None, run_dag: Any) -> None:
    copy = run_dag("prod_copy", None, {"datasets": [ds("sales"), ds("marketing")]})
    assert str(copy.state) == "success", states(copy)
    # a full copy: every row of prod, not a window; the view reads prod-copy
    for table, key in (
        ("sales.orders", "order_id"),
        ("sales.orders_flat", "order_id"),
        ("sales.customers", "customer_id"),
        ("marketing.sessions", "session_id"),
    ):
        assert contents(f"prodcopy_{table}", key) == contents(table, key), table
    view = bq_client().get_table(fq("prodcopy_marketing.campaign_revenue"))
    assert ds("prodcopy_sales") in view.view_query and f"`{ds('sales')}." not in view.view_query
    assert bq_client().get_dataset(fq("prodcopy_sales")).labels["envsync-env"] == "prodcopy"
    expected = {
        t: contents(f"prodcopy_{t}", k) for t, k in (("sales.orders", "order_id"), ("sales.customers", "customer_id"))
    }

    # people work in prod-copy ...
    query(f"delete from `{PROJECT}.prodcopy_sales.orders` where order_id < 100")
    query(f"insert into `{PROJECT}.prodcopy_sales.customers` (customer_id, name, segment) values (999, 'x', 'y')")
    query(f"create table `{PROJECT}.prodcopy_sales.scratch` as select 1 as x")
    # ... and prod moves on after T
    query(f"insert into `{PROJECT}.sales.customers` (customer_id, name, segment) values (500, 'new', 'retail')")
    try:
        reset = run_dag("prod_copy", None, {"mode": "reset", "datasets": [ds("sales")]})
        assert str(reset.state) == "success", states(reset)
        # back to exactly the copy as of the recorded T: changes gone, prod's later row not there
        assert {
            t: contents(f"prodcopy_{t}", k)
            for t, k in (("sales.orders", "order_id"), ("sales.customers", "customer_id"))
        } == expected
        assert "scratch" not in {t.table_id for t in bq_client().list_tables(fq("prodcopy_sales"))}
    finally:
        query(f"delete from `{PROJECT}.sales.customers` where customer_id = 500")


def test_as_of_outside_time_travel_is_refused_before_any_write(clean_dev: None, run_dag: Any) -> None:
    too_old = (dt.datetime.now(UTC) - dt.timedelta(days=8)).isoformat()
    dag_run = run_dag("prod_copy", None, {"as_of": too_old})
    assert str(dag_run.state) == "failed"
    assert states(dag_run)["plan[-1]"] == "failed"
    assert not [name for name in dataset_names() if name.startswith("prodcopy_")]

    from envsync.sync.prodcopy import AsOfError, check_as_of, parse_as_of

    now = dt.datetime(2026, 11, 22, 12, tzinfo=UTC)
    with pytest.raises(AsOfError, match="outside BigQuery's time-travel window of 168 h"):
        check_as_of(parse_as_of("2026-11-14T12:00:00Z", now), now, 168)
    with pytest.raises(AsOfError, match="in the future"):
        check_as_of(parse_as_of("2026-11-23T00:00:00+00:00", now), now, 168)
    with pytest.raises(AsOfError, match="no time zone"):
        parse_as_of("2026-11-20T08:00:00", now)
    check_as_of(parse_as_of("2026-11-20T08:00:00+00:00", now), now, 168)  # inside: accepted
