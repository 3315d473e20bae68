"""prod_to_dev_sync and prod_copy with the environments in their own projects (splitkit's layout), on
the emulators.

Prod is read in PROD_PROJECT. Dev is written in DEV_PROJECT under prod's own dataset names (an empty
prefix) by jobs that run in NONPROD_PROJECT (dev's jobs_project); prod-copy's prodcopy_ datasets land
in NONPROD_PROJECT. Views read their environment's project only and still answer; nothing lands in
prod's project; a second dev sync a week later replaces what the first one left, dropping only dev's
own objects and never a dataset of dev's project that is not one of prod's names.

gcp_incompatible: needs several sandbox projects (prod, non-prod, dev and backup projects of their own).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from splitkit import (
    DEV_PROJECT,
    NONPROD_PROJECT,
    PROD_PROJECT,
    SPLIT_BUCKET,
    client,
    create_split_prod,
    drop_derived,
    objects_in,
    prod_fingerprints,
    refused_before_any_request,
    split_config,
    split_config_data,
    views_naming,
)
from testkit import FIRST_DAY, LAST_DAY, states

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.gcp_incompatible]

UTC = dt.UTC
A = dt.datetime(2026, 11, 21, 2, 0, tzinfo=UTC)  # window [2026-07-01, 2026-11-21 02:00)
A_WEEK_LATER = A + dt.timedelta(days=7)  # window [2026-07-01, 2026-11-28 02:00): prod ends 2026-11-23
KEYS = {
    "sales.orders": "order_id",
    "sales.customers": "customer_id",
    "sales.orders_flat": "order_id",
    "marketing.sessions": "session_id",
    "marketing.ad_spend": "spend_id",
}


@pytest.fixture(scope="module")
def split_prod(emulators: Any) -> None:
    create_split_prod()


@pytest.fixture
def split(split_prod: None, tmp_path: Path) -> Path:
    """The split config (dev keeps its own sales.notes), on an estate holding nothing but prod."""
    drop_derived()
    return split_config(tmp_path, environments__dev__keep=["sales.notes"])


def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    """The rows of a query run in NONPROD_PROJECT (the test's own jobs never run in dev's project)."""
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    config = bigquery.QueryJobConfig(query_parameters=to_query_parameters(params))
    return [dict(r.items()) for r in client(NONPROD_PROJECT).query(sql, job_config=config, job_retry=None).result()]


def ids(project: str, table: str, column: str) -> set[int]:
    return {r["id"] for r in rows(f"select {column} as id from `{project}.{table}`")}


def days(first: dt.date, last: dt.date) -> set[int]:
    """order_ids of the orders dated first..last inclusive (one order per day from FIRST_DAY)."""
    return {(first - FIRST_DAY).days + i for i in range((last - first).days + 1)}


def contents(project: str, table: str) -> list[str]:
    key = KEYS[f"{table.split('.')[0].removeprefix('prodcopy_')}.{table.split('.')[1]}"]
    sql = f"select to_json_string(t) as j from `{project}.{table}` as t order by {key}"
    return [r["j"] for r in rows(sql)]


def table_names(project: str, dataset: str) -> set[str]:
    return {t.table_id for t in client(project).list_tables(f"{project}.{dataset}")}


def job_ids(project: str) -> set[str]:
    return {job.job_id for job in client(project).list_jobs(project=project, all_users=True)}


def run_jobs(dag_run: Any) -> str:
    """The prefix of the ids of every job a run's guarded runners started (envsync.bigquery.jobs)."""
    from envsync.bigquery.jobs import short_hash

    return f"envsync_{dag_run.dag_id}_{short_hash(dag_run.dag_id, dag_run.run_id)}"


def latest_report(dag_id: str) -> dict[str, Any]:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    return ManifestStore(storage_client(NONPROD_PROJECT), SPLIT_BUCKET).latest_report(dag_id)


def sessions_in(lo: dt.datetime, hi: dt.datetime) -> set[int]:
    sql = (
        f"select session_id from `{PROD_PROJECT}.marketing.sessions` where session_start >= @lo and session_start < @hi"
    )
    return {r["session_id"] for r in rows(sql, lo=lo, hi=hi)}


def check_dev_window(end: dt.datetime, last_day: dt.date) -> None:
    """Dev (DEV_PROJECT, prod's dataset names) holds prod's window [2026-07-01, end) table by table."""
    window = days(dt.date(2026, 7, 1), last_day)
    assert ids(DEV_PROJECT, "sales.orders", "order_id") == window
    assert ids(DEV_PROJECT, "sales.orders_flat", "order_id") == window  # its configured date_column
    assert ids(DEV_PROJECT, "marketing.ad_spend", "spend_id") == window  # the detected date column
    assert ids(DEV_PROJECT, "marketing.sessions", "session_id") == sessions_in(dt.datetime(2026, 7, 1, tzinfo=UTC), end)
    assert contents(DEV_PROJECT, "sales.customers") == contents(PROD_PROJECT, "sales.customers")  # copied whole
    orders = rows(f"select count(*) as n from `{DEV_PROJECT}.sales.orders`")[0]["n"]
    assert orders == len(window)
    # the view reads dev's datasets in dev's project, and answers on dev's rows
    view = client(DEV_PROJECT).get_table(f"{DEV_PROJECT}.marketing.campaign_revenue")
    assert DEV_PROJECT in view.view_query and PROD_PROJECT not in view.view_query
    answer = rows(f"select segment, orders from `{DEV_PROJECT}.marketing.campaign_revenue`")
    assert sum(r["orders"] for r in answer) == orders


def test_dev_sync_and_prod_copy_write_their_own_projects_only(split: Path, run_dag: Any) -> None:
    from google.cloud import bigquery

    prod_before = prod_fingerprints()
    prod_objects = set(objects_in(PROD_PROJECT))
    prod_jobs, dev_jobs = job_ids(PROD_PROJECT), job_ids(DEV_PROJECT)
    dev, nonprod = client(DEV_PROJECT), client(NONPROD_PROJECT)  # no job runs in dev's project
    for name in ("sales", "scratch"):  # dev's own objects: a dataset of prod's name, one envsync does not own
        dataset = bigquery.Dataset(f"{DEV_PROJECT}.{name}")
        dataset.location = "US"
        dev.create_dataset(dataset, exists_ok=True)
    for table in ("sales.stale_table", "sales.notes", "scratch.keepsake"):
        nonprod.query(f"create table `{DEV_PROJECT}.{table}` as select 1 as x", job_retry=None).result()

    first = run_dag("prod_to_dev_sync", A, config_path=split)
    assert str(first.state) == "success", states(first)
    check_dev_window(A, dt.date(2026, 11, 21))
    # what only dev had is dropped, but what dev keeps stays, and a dataset envsync does not own is not touched
    assert table_names(DEV_PROJECT, "sales") == {"orders", "customers", "orders_flat", "notes"}
    assert table_names(DEV_PROJECT, "marketing") == {"sessions", "ad_spend", "campaign_revenue"}
    assert table_names(DEV_PROJECT, "scratch") == {"keepsake"}
    labels = dev.get_dataset(f"{DEV_PROJECT}.sales").labels
    assert labels["envsync-managed"] == "true" and labels["envsync-env"] == "dev" and labels["team"] == "sales"
    assert views_naming(DEV_PROJECT) == {}
    # the report names sources and targets with their projects
    report = latest_report("prod_to_dev_sync")
    targets = {r["table"]: r["target"] for r in report["results"]}
    assert targets[f"{PROD_PROJECT}.sales.orders"] == f"{DEV_PROJECT}.sales.orders"
    assert targets[f"{PROD_PROJECT}.marketing.campaign_revenue"] == f"{DEV_PROJECT}.marketing.campaign_revenue"
    assert {r["target"] for r in report["results"] if r["status"] == "dropped"} == {f"{DEV_PROJECT}.sales.stale_table"}
    # the sync's jobs ran in dev's jobs project, none in dev's or prod's
    prefix = run_jobs(first)
    assert {j for j in job_ids(NONPROD_PROJECT) if j.startswith(prefix)}, "no job of the dev sync in NONPROD_PROJECT"
    assert job_ids(DEV_PROJECT) == dev_jobs
    assert not {j for j in job_ids(PROD_PROJECT) - prod_jobs if j.startswith(prefix)}

    # a week later: dev was worked on meanwhile; the next sync replaces what the first one left
    for sql in (
        f"delete from `{DEV_PROJECT}.sales.customers` where customer_id < 5",
        f"insert into `{DEV_PROJECT}.sales.orders` (order_id, order_date) values (-1, '2026-01-01')",
        f"create table `{DEV_PROJECT}.marketing.stale_table` as select 1 as x",
    ):
        nonprod.query(sql, job_retry=None).result()
    second = run_dag("prod_to_dev_sync", A_WEEK_LATER, config_path=split)
    assert str(second.state) == "success", states(second)
    assert LAST_DAY < A_WEEK_LATER.date()
    check_dev_window(A_WEEK_LATER, LAST_DAY)
    assert table_names(DEV_PROJECT, "sales") == {"orders", "customers", "orders_flat", "notes"}
    assert table_names(DEV_PROJECT, "marketing") == {"sessions", "ad_spend", "campaign_revenue"}
    assert table_names(DEV_PROJECT, "scratch") == {"keepsake"}
    assert latest_report("prod_to_dev_sync")["window"]["end"] == A_WEEK_LATER.isoformat()

    copy = run_dag("prod_copy", None, config_path=split)
    assert str(copy.state) == "success", states(copy)
    for table in KEYS:
        assert contents(NONPROD_PROJECT, f"prodcopy_{table}") == contents(PROD_PROJECT, table), table
    view = f"{NONPROD_PROJECT}.prodcopy_marketing.campaign_revenue"
    sql = client(NONPROD_PROJECT).get_table(view).view_query
    assert f"{NONPROD_PROJECT}.prodcopy_sales" in sql.replace("`", "")
    assert rows(f"select sum(orders) as n from `{view}`")[0]["n"] == len(days(FIRST_DAY, LAST_DAY))
    assert views_naming(NONPROD_PROJECT) == {}
    copied = {name for name in objects_in(NONPROD_PROJECT) if name.startswith("prodcopy_")}
    assert copied == {f"prodcopy_{t}" for t in KEYS} | {"prodcopy_marketing.campaign_revenue"}
    assert not {name for name in objects_in(DEV_PROJECT) if name.startswith("prodcopy_")}

    # prod's project holds exactly what it held, unchanged
    assert set(objects_in(PROD_PROJECT)) == prod_objects
    assert prod_fingerprints() == prod_before
    refusals = refused_before_any_request(split)
    assert len(refusals) == 6
    assert any("prod dataset" in r for r in refusals) and any("envsync-unconfigured" in r for r in refusals)


def test_a_view_of_dev_reads_dev_or_a_reported_third_project_never_prod() -> None:
    from envsync.bigquery.discovery import DatasetInfo, TableInfo
    from envsync.bigquery.jobs import JobStats
    from envsync.core.config import parse_config
    from envsync.core.guard import TableRef
    from envsync.sync.plan import plan_dataset
    from envsync.sync.run import VerificationError, create_view, view_datasets

    config = parse_config(split_config_data())
    sql = (
        f"select * from `{PROD_PROJECT}.sales.orders` join sales.customers using (customer_id) "
        "join `shared-reference.geo.countries` using (country)"
    )
    info = DatasetInfo("marketing", "US", None, {}, [TableInfo("marketing", "mixed", "VIEW", view_query=sql)])
    action = plan_dataset(config, info, existing=None).actions[0]
    assert action.other_projects == ["shared-reference.geo"]
    assert "reads shared-reference.geo of another project: left as it is" in action.reason
    assert set(view_datasets(action.view_sql or "", DEV_PROJECT)) == {("sales", True), ("shared-reference.geo", False)}
    assert action.depends_on == ["sales.customers", "sales.orders"]  # the third project's table is no dev view

    class Recorder:
        def __init__(self) -> None:
            self.sql: list[str] = []

        def run(self, sql: str, **_: Any) -> None:
            self.sql.append(sql)

    def create(runner: Recorder, view_sql: str) -> None:
        create_view(
            runner,  # type: ignore[arg-type]  # records the statements instead of running them
            TableRef(DEV_PROJECT, "marketing", "mixed"),
            view_sql,
            allowed_prefix="",
            datasets=["sales", "marketing"],
            other_projects=action.other_projects,
            env="dev",
            key=("marketing", "mixed"),
            stats=JobStats(),
        )

    created = Recorder()
    create(created, action.view_sql or "")
    assert len(created.sql) == 2 and PROD_PROJECT not in created.sql[0]  # create, then the LIMIT 0 probe
    for foreign, named in (
        (f"select * from `{PROD_PROJECT}.sales.orders`", f"{PROD_PROJECT}.sales"),
        ("select * from scratch.notes", "scratch"),
        ("select * from `another-project.geo.countries`", "another-project.geo"),
    ):
        refused = Recorder()
        with pytest.raises(VerificationError, match=f"would read \\['{named}'\\], which are not dev datasets"):
            create(refused, foreign)
        assert refused.sql == []
