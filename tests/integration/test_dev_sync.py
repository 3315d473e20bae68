"""The prod_to_dev_sync DAG run through Airflow (dag.test) against the local BigQuery/GCS emulators.

Assertions are on the dev tables themselves: which rows, which columns, which objects exist.
Expected windows are written out here as literal dates, independently of envsync.core.window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest import mock

import pytest
from testkit import (
    BUCKET,
    FIRST_DAY,
    LAST_DAY,
    PROJECT,
    UTC,
    bq_client,
    dataset_names,
    drop_environment_datasets,
    ds,
    fq,
    query,
    tref,
)

pytestmark = pytest.mark.integration

A = dt.datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def days(first: dt.date, last: dt.date) -> set[int]:
    """order_ids of the orders dated first..last inclusive (one order per day from FIRST_DAY)."""
    return {(first - FIRST_DAY).days + i for i in range((last - first).days + 1)}


def ids(table: str, column: str) -> set[int]:
    return {row["id"] for row in query(f"select {column} as id from `{PROJECT}.{table}`")}


def table_names(dataset: str) -> set[str]:
    return {t.table_id for t in bq_client().list_tables(fq(dataset))}


def contents(table: str, key: str) -> list[str]:
    return [r["j"] for r in query(f"select to_json_string(t) as j from `{PROJECT}.{table}` as t order by {key}")]


def dev_snapshot(only: str = "dev_") -> dict[str, list[str]]:
    keys = {
        "dev_sales.orders": "order_id",
        "dev_sales.customers": "customer_id",
        "dev_sales.orders_flat": "order_id",
        "dev_marketing.sessions": "session_id",
        "dev_marketing.ad_spend": "spend_id",
    }
    return {table: contents(table, key) for table, key in keys.items() if table.startswith(only)}


def task_states(dag_run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def create_dev_only_objects() -> None:
    from google.cloud import bigquery

    client = bq_client()
    for name in ("dev_sales", "dev_marketing"):
        dataset = bigquery.Dataset(fq(name))
        dataset.location = "US"
        client.create_dataset(dataset, exists_ok=True)
    query(f"create or replace table `{PROJECT}.dev_sales.stale_table` as select 1 as x")
    query(f"create or replace table `{PROJECT}.dev_sales.audit_log` as select 1 as x")
    query(f"create or replace view `{PROJECT}.dev_marketing.old_view` as select 1 as x")


# ---------------------------------------------------------------------------------------------


def test_dry_run_writes_nothing(clean_dev: None, run_dag: Any) -> None:
    dag_run = run_dag("prod_to_dev_sync", A, {"dry_run": True})
    assert str(dag_run.state) == "success", task_states(dag_run)
    datasets = dataset_names()
    assert not {d for d in datasets if d.startswith("dev_")}, datasets


def test_weekly_sync_copies_exactly_the_window(clean_dev: None, run_dag: Any) -> None:
    create_dev_only_objects()
    dag_run = run_dag("prod_to_dev_sync", A)
    assert str(dag_run.state) == "success", task_states(dag_run)

    # window [2026-07-01, 2026-11-21 02:00): 2026-06-30 out, 2026-07-01 in, 2026-11-21 in, 2026-11-22 out
    assert ids("dev_sales.orders", "order_id") == days(dt.date(2026, 7, 1), dt.date(2026, 11, 21))
    dates = query(f"select min(order_date) lo, max(order_date) hi from `{PROJECT}.dev_sales.orders`")[0]
    assert (dates["lo"], dates["hi"]) == (dt.date(2026, 7, 1), dt.date(2026, 11, 21))

    # nested and repeated fields arrive intact, row for row
    prod_rows = query(
        f"select order_id, to_json_string(struct(items, shipping)) as j from `{PROJECT}.sales.orders` "
        "where order_date between @lo and @hi order by order_id",
        lo=dt.date(2026, 7, 1),
        hi=dt.date(2026, 11, 21),
    )
    dev_rows = query(
        f"select order_id, to_json_string(struct(items, shipping)) as j "
        f"from `{PROJECT}.dev_sales.orders` order by order_id"
    )
    assert dev_rows == prod_rows
    assert len(query(f"select i from `{PROJECT}.dev_sales.orders`, unnest(items) as i")) == 2 * len(dev_rows)
    schema = {f.name: f for f in bq_client().get_table(fq("dev_sales.orders")).schema}
    assert schema["items"].mode == "REPEATED" and [f.name for f in schema["items"].fields] == ["sku", "quantity"]

    # the unpartitioned table is windowed on the configured date_column (order_date), not ship_date
    assert ids("dev_sales.orders_flat", "order_id") == days(dt.date(2026, 7, 1), dt.date(2026, 11, 21))
    # the auto-detected date column of ad_spend
    assert ids("dev_marketing.ad_spend", "spend_id") == days(dt.date(2026, 7, 1), dt.date(2026, 11, 21))

    # TIMESTAMP edges of the MONTH-partitioned table: [2026-07-01 00:00, 2026-11-21 02:00)
    edge_ids = ids("dev_marketing.sessions", "session_id") & {100000, 100001, 100002, 100003}
    assert edge_ids == {100001, 100002}
    expected = {
        r["session_id"]
        for r in query(
            f"select session_id from `{PROJECT}.marketing.sessions` where session_start >= @lo and session_start < @hi",
            lo=dt.datetime(2026, 7, 1, tzinfo=UTC),
            hi=A,
        )
    }
    assert ids("dev_marketing.sessions", "session_id") == expected

    # the dimension table is copied whole
    assert contents("dev_sales.customers", "customer_id") == contents("sales.customers", "customer_id")

    # the view reads dev tables only, and gives the answer computed on dev
    view = bq_client().get_table(fq("dev_marketing.campaign_revenue"))
    assert ds("dev_sales") in view.view_query and ds("dev_marketing") in view.view_query
    assert f"`{ds('sales')}." not in view.view_query and f" {ds('sales')}." not in view.view_query
    from_view = query(f"select segment, orders from `{PROJECT}.dev_marketing.campaign_revenue` order by segment")
    assert sum(r["orders"] for r in from_view) == len(dev_rows)

    # excluded and dev-only objects are gone; nothing else is left behind
    assert table_names("dev_sales") == {"orders", "customers", "orders_flat"}
    assert table_names("dev_marketing") == {"sessions", "ad_spend", "campaign_revenue"}

    # dev datasets carry prod's metadata and the managed label
    dev = bq_client().get_dataset(fq("dev_sales"))
    assert dev.labels["envsync-managed"] == "true" and dev.labels["team"] == "sales"
    assert dev.description == "prod sales" and int(dev.max_time_travel_hours) == 48

    # the manifest records A, T and the window
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    report = ManifestStore(storage_client(PROJECT), BUCKET).latest_report("prod_to_dev_sync")
    assert report["anchor"] == A.isoformat()
    assert report["window"]["start"] == "2026-07-01T00:00:00+00:00"
    assert dt.datetime.fromisoformat(report["cut"]) > A
    actions = {r["table"]: r["action"] for r in report["results"]}
    assert actions[tref("sales.orders")] == "clone_window" and actions[tref("sales.orders_flat")] == "ctas_window"
    assert actions[tref("sales.customers")] == "full_clone" and actions[tref("marketing.campaign_revenue")] == "view"
    assert {r["target"] for r in report["results"] if r["status"] == "dropped"} == {
        tref("dev_sales.stale_table"),
        tref("dev_sales.audit_log"),
        tref("dev_marketing.old_view"),
    }

    # a second run is idempotent: same objects, same contents
    before = dev_snapshot()
    again = run_dag("prod_to_dev_sync", A)
    assert str(again.state) == "success", task_states(again)
    assert dev_snapshot() == before
    assert table_names("dev_sales") == {"orders", "customers", "orders_flat"}


def test_earlier_logical_date_shifts_the_window(clean_dev: None, run_dag: Any) -> None:
    anchor = dt.datetime(2026, 8, 15, 2, 0, tzinfo=UTC)
    dag_run = run_dag("prod_to_dev_sync", anchor, {"window_quarters": 1, "datasets": [ds("sales")]})
    assert str(dag_run.state) == "success", task_states(dag_run)
    # one quarter ending at A: [2026-07-01, 2026-08-15 02:00)
    assert ids("dev_sales.orders", "order_id") == days(dt.date(2026, 7, 1), dt.date(2026, 8, 15))
    assert "dev_marketing" not in dataset_names()

    dag_run = run_dag("prod_to_dev_sync", anchor, {"window_quarters": 3, "datasets": [ds("sales")]})
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert ids("dev_sales.orders", "order_id") == days(dt.date(2026, 1, 1), dt.date(2026, 8, 15))


def test_manual_run_with_null_logical_date(clean_dev: None, run_dag: Any) -> None:
    dag_run = run_dag("prod_to_dev_sync", None, {"datasets": [ds("sales")], "tables": ["orders"]})
    assert str(dag_run.state) == "success", task_states(dag_run)
    anchor = dag_run.run_after.astimezone(UTC)
    quarter_first_month = 3 * ((anchor.month - 1) // 3) + 1 - 3
    year = anchor.year + (quarter_first_month - 1) // 12
    start = dt.date(year, (quarter_first_month - 1) % 12 + 1, 1)
    last = min(anchor.date() if anchor.time() != dt.time(0) else anchor.date() - dt.timedelta(days=1), LAST_DAY)
    assert ids("dev_sales.orders", "order_id") == days(start, last)
    assert table_names("dev_sales") == {"orders"}  # a filtered run copies only what it names


def test_failed_verification_leaves_nothing_and_a_rerun_converges(clean_dev: None, run_dag: Any) -> None:
    # A faulty build (a step that loses rows of the staged copy, as a concurrent writer or a bad
    # trim would) must be caught by the verification, which fails the table without retries.
    from envsync.sync.run import DatasetSync

    build = DatasetSync._build

    def lossy_build(self: Any, action: Any, info: Any, source: Any, stage: Any, stats: Any) -> None:
        build(self, action, info, source, stage, stats)
        if action.table == "orders":
            self.runner.run(
                f"delete from {stage.sql} where order_date = @day",
                key=("lossy", action.table),
                params={"day": dt.date(2026, 8, 1)},
            )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatasetSync, "_build", lossy_build)
        failed = run_dag("prod_to_dev_sync", A, {"datasets": [ds("sales")]})
    assert str(failed.state) == "failed"
    states = task_states(failed)
    assert states["sync_dataset[0]"] == "failed" and states["report[-1]"] == "failed", states
    # the failed table is not in dev at all (neither published nor staged); the others are complete
    names = table_names("dev_sales")
    assert "orders" not in names and not any(n.endswith("__envsync_stage") for n in names)
    assert names == {"customers", "orders_flat"}
    report = query_manifest_results()
    failed_rows = [r for r in report if r["status"] == "failed"]
    assert [r["table"] for r in failed_rows] == [tref("sales.orders")]
    assert (
        tref("dev_sales.orders") in failed_rows[0]["error"] and "2026-08-01: prod 1, copy 0" in failed_rows[0]["error"]
    )
    sync_ti = next(ti for ti in failed.get_task_instances() if ti.task_id == "sync_dataset")
    assert sync_ti.try_number == 1  # a failed verification is not retried

    # rerun the same run (same run id, same recorded T) with the shipped config: converges
    rerun = run_dag("prod_to_dev_sync", A, {"datasets": [ds("sales")]})
    assert str(rerun.state) == "success", task_states(rerun)
    converged = dev_snapshot("dev_sales.")
    drop_environment_datasets()
    clean = run_dag("prod_to_dev_sync", A, {"datasets": [ds("sales")]})
    assert str(clean.state) == "success", task_states(clean)
    assert dev_snapshot("dev_sales.") == converged


def query_manifest_results() -> list[dict[str, Any]]:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    return ManifestStore(storage_client(PROJECT), BUCKET).latest_report("prod_to_dev_sync")["results"]


def test_write_aimed_at_prod_is_refused_before_any_api_call(prod: dict[str, Any]) -> None:
    from envsync.core.config import load_config
    from envsync.core.guard import GuardedBigQuery, ProdWriteRefused, TableRef, WriteGuard

    client = bq_client()
    guarded = GuardedBigQuery(client, WriteGuard.from_config(load_config()), "US")
    rows_before = client.get_table(fq("sales.orders")).num_rows
    with mock.patch.object(client, "_call_api", wraps=client._call_api) as api:
        with pytest.raises(ProdWriteRefused, match=f"'{ds('sales')}' is a prod dataset"):
            guarded.start_query(f"delete from `{fq('sales.orders')}` where true", job_id="x", labels={})
        with pytest.raises(ProdWriteRefused, match="prod dataset"):
            guarded.start_query(
                f"create or replace table `{fq('marketing.sessions')}` clone `{fq('dev_marketing.sessions')}`",
                job_id="y",
                labels={},
            )
        with pytest.raises(ProdWriteRefused):
            guarded.delete_table(TableRef(PROJECT, ds("sales"), "customers"))
        with pytest.raises(ProdWriteRefused, match="no environment prefix"):
            guarded.start_query(f"drop table `{fq('other.t')}`", job_id="z", labels={})
        assert api.call_count == 0
    assert client.get_table(fq("sales.orders")).num_rows == rows_before
    assert client.get_table(fq("sales.customers")).num_rows == 20


def test_cloned_table_keeps_prod_partitioning(clean_dev: None, run_dag: Any) -> None:
    dag_run = run_dag("prod_to_dev_sync", A, {"datasets": [ds("sales")], "tables": ["orders"]})
    assert str(dag_run.state) == "success", task_states(dag_run)
    table = bq_client().get_table(fq("dev_sales.orders"))
    assert table.time_partitioning is not None and table.time_partitioning.field == "order_date"
    assert table.clustering_fields == ["customer_id"]


def test_ctas_table_keeps_declared_partitioning(clean_dev: None, run_dag: Any, config_file: Any) -> None:
    # Forced to ctas_window, the partitioned fact table keeps DAY partitioning and clustering, which
    # the emulator can show for CTAS.
    cfg = config_file(
        tables={"sales.orders": {"strategy": "ctas_window"}, "sales.audit_log": {"exclude": True}},
        sync__verify_partitioning="error",
    )
    dag_run = run_dag("prod_to_dev_sync", A, {"datasets": [ds("sales")], "tables": ["orders"]}, config_path=cfg)
    assert str(dag_run.state) == "success", task_states(dag_run)
    table = bq_client().get_table(fq("dev_sales.orders"))
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("DAY", "order_date")
    assert table.clustering_fields == ["customer_id"]
    assert ids("dev_sales.orders", "order_id") == days(dt.date(2026, 7, 1), dt.date(2026, 11, 21))


def test_missing_prod_dataset_fails_the_plan_naming_it(clean_dev: None, run_dag: Any, config_file: Any) -> None:
    cfg = config_file(prod={"datasets": ["sales", "nosuch"]})
    dag_run = run_dag("prod_to_dev_sync", A, config_path=cfg)
    assert str(dag_run.state) == "failed"
    states = task_states(dag_run)
    assert states["plan[-1]"] == "failed", states
    plan_ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "plan")
    assert plan_ti.try_number == 1  # not retried: the config does not match prod
    # nothing was written anywhere
    assert not [name for name in dataset_names() if name.startswith("dev_")]
    from envsync.bigquery.discovery import DiscoveryError
    from envsync.core.config import load_config
    from envsync.sync.run import build_plans

    with pytest.raises(
        DiscoveryError, match=rf"prod dataset '{ds('nosuch')}' \(prod.datasets in the config\) does not exist"
    ):
        build_plans(load_config(cfg), bq_client(), datasets=[ds("sales"), ds("nosuch")], tables=[])
