"""prod_copy and time travel on the emulators (the fidelity layer enforces BigQuery's rules): each prod
dataset's own max_time_travel_hours, tables created after T, and prod's schema as of T.

https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window and
https://cloud.google.com/bigquery/docs/access-historical-data.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from testkit import BUCKET, PROJECT, UTC, bq_client, dataset_names, ds, fq, query

pytestmark = pytest.mark.integration


def states(dag_run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def latest_report() -> dict[str, Any]:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    found = ManifestStore(storage_client(PROJECT), BUCKET).latest_report("prod_copy")
    assert found is not None, "no report of prod_copy"
    return found


@pytest.fixture
def marketing_keeps_48_hours(prod: dict[str, Any]) -> Iterator[None]:
    """Prod dataset marketing with a 48 h time-travel window (BigQuery's default is 168 h)."""
    client = bq_client()
    dataset = client.get_dataset(fq("marketing"))
    dataset.max_time_travel_hours = 48
    client.update_dataset(dataset, ["max_time_travel_hours"])
    try:
        yield
    finally:
        dataset = client.get_dataset(fq("marketing"))
        dataset.max_time_travel_hours = 168
        client.update_dataset(dataset, ["max_time_travel_hours"])


def test_as_of_outside_a_datasets_own_48_hour_window_is_refused_naming_it(
    clean_dev: None, marketing_keeps_48_hours: None, run_dag: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # three days ago: inside the config's bound (none set) and BigQuery's default 168 h, but not
    # inside marketing's own 48 h
    as_of = (dt.datetime.now(UTC) - dt.timedelta(days=3)).replace(microsecond=0)
    dag_run = run_dag("prod_copy", None, {"as_of": as_of.isoformat(), "datasets": [ds("sales"), ds("marketing")]})
    assert str(dag_run.state) == "failed"
    assert states(dag_run)["plan[-1]"] == "failed"
    assert not [name for name in dataset_names() if name.startswith("prodcopy_")]  # nothing written
    failure = capsys.readouterr().out  # the task log of dag.test
    assert (
        f"as_of {as_of.isoformat()} is outside BigQuery's time-travel window of 48 h of prod dataset "
        f"{ds('marketing')!r} (its max_time_travel_hours in BigQuery)"
    ) in failure


@pytest.fixture
def late_changes(prod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """T, then after T: a new prod table, a column added to another, and a row inserted into it."""
    query(f"create or replace table `{PROJECT}.sales.tt_accounts` (account_id int64 not null, name string)")
    query(f"insert into `{PROJECT}.sales.tt_accounts` (account_id, name) values (1, 'a'), (2, 'b')")
    time.sleep(1.1)
    cut = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    time.sleep(2.2)
    query(f"create table `{PROJECT}.sales.tt_late` as select 1 as x")
    query(f"alter table `{PROJECT}.sales.tt_accounts` add column tier string")
    query(f"insert into `{PROJECT}.sales.tt_accounts` (account_id, name, tier) values (3, 'c', 'gold')")
    try:
        yield {"cut": cut}
    finally:
        for table in ("tt_accounts", "tt_late"):
            bq_client().delete_table(fq(f"sales.{table}"), not_found_ok=True)


def test_prod_copy_skips_tables_created_after_t_and_verifies_the_schema_as_of_t(
    clean_dev: None, late_changes: dict[str, Any], run_dag: Any
) -> None:
    cut = late_changes["cut"]
    copy = run_dag("prod_copy", None, {"as_of": cut.isoformat(), "datasets": [ds("sales")]})
    assert str(copy.state) == "success", states(copy)

    client = bq_client()
    # the table created after T is not copied (reading it as of T fails on BigQuery) ...
    assert "tt_late" not in {t.table_id for t in client.list_tables(fq("prodcopy_sales"))}
    report = latest_report()
    rows = {r["table"]: r for r in report["results"]}
    late = rows[f"{ds('sales')}.tt_late"]
    assert (late["action"], late["status"]) == ("skip", "skipped")
    assert (
        late["reason"].startswith("created at ")
        and f", after T = {cut.isoformat()}: it did not exist as of T" in late["reason"]
    )
    # ... and the other tables are copied as of T, with the schema they had at T
    copied = client.get_table(fq("prodcopy_sales.tt_accounts"))
    assert [(f.name, f.field_type, f.mode) for f in copied.schema] == [
        ("account_id", "INTEGER", "REQUIRED"),
        ("name", "STRING", "NULLABLE"),
    ]
    assert [
        r["account_id"]
        for r in query(f"select account_id from `{PROJECT}.prodcopy_sales.tt_accounts` order by account_id")
    ] == [1, 2]
    accounts = rows[f"{ds('sales')}.tt_accounts"]
    assert accounts["status"] == "ok" and "columns added since T: ['tier']" in accounts["reason"]
    assert rows[f"{ds('sales')}.orders"]["status"] == "ok"


def test_prod_copy_verification_fails_a_copy_missing_a_column_that_existed_at_t(
    clean_dev: None, late_changes: dict[str, Any], run_dag: Any
) -> None:
    """The verification of the run's plan (prod's schema as of T) applied to a copy without `name`."""
    from envsync.bigquery.jobs import JobRunner, JobStats
    from envsync.core.config import load_config
    from envsync.core.guard import GuardedBigQuery, TableRef, WriteGuard
    from envsync.sync.plan import DatasetPlan
    from envsync.sync.run import DatasetSync, RunInfo

    cut = late_changes["cut"]
    copy = run_dag("prod_copy", None, {"as_of": cut.isoformat(), "datasets": [ds("sales")]})
    assert str(copy.state) == "success", states(copy)
    plan = DatasetPlan.from_dict(next(p for p in latest_report()["plans"] if p["dataset"] == ds("sales")))
    query(
        f"create table `{PROJECT}.prodcopy_sales.tt_accounts_bad` (account_id int64 not null) as "
        f"select account_id from `{PROJECT}.sales.tt_accounts` for system_time as of @cut",
        cut=cut,
    )

    config = load_config()
    bq = GuardedBigQuery(bq_client(), WriteGuard.from_config(config), "US")
    runner = JobRunner(bq, dag_id="tests", run_id=f"verify-{time.time_ns()}", task_id="verify", timeout=120)
    sync = DatasetSync(config, bq, runner, RunInfo("tests", "verify", "verify", cut, None, "prodcopy"))
    action = next(a for a in plan.actions if a.table == "tt_accounts")
    source = TableRef(PROJECT, ds("sales"), "tt_accounts")
    good = TableRef(PROJECT, ds("prodcopy_sales"), "tt_accounts")
    bad = TableRef(PROJECT, ds("prodcopy_sales"), "tt_accounts_bad")
    info = plan.tables["tt_accounts"]
    assert sync._verify(action, info, source, good, JobStats())[1] == []
    rows, problems, _ = sync._verify(action, info, source, bad, JobStats())
    assert rows == 2
    assert problems == [f"{ds('prodcopy_sales')}.tt_accounts: schema differs from prod: column name is missing"]
