"""backup_ladder, restore and recovery_drill with every environment in its own project (splitkit).

Prod is read in PROD_PROJECT; snapshots (`backup_<ds>`) and drills (`drill_<ds>`) are written in
BACKUP_PROJECT; the state bucket and the audit dataset are NONPROD_PROJECT's. The one write into prod
is the confirmed restore of one prod table. gcp_incompatible: needs several sandbox projects.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backupkit import now_utc, run_time
from splitkit import (
    BACKUP_PROJECT,
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
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.gcp_incompatible]

UTC = dt.UTC
KEYS = {"orders": "order_id", "customers": "customer_id", "orders_flat": "order_id", "audit_log": "id"}


@pytest.fixture(scope="module")
def split_prod(emulators: Any) -> None:
    create_split_prod()


@pytest.fixture
def split(split_prod: None, tmp_path: Path) -> Iterator[Path]:
    """The split config, on an estate holding nothing but prod; prod's objects are the same afterwards."""
    drop_derived()
    prod = set(objects_in(PROD_PROJECT))
    yield split_config(tmp_path)
    assert set(objects_in(PROD_PROJECT)) == prod  # nothing derived (no backup_, drill_, stage) in prod's project


def store() -> Any:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    return ManifestStore(storage_client(NONPROD_PROJECT), SPLIT_BUCKET)


def report(dag_id: str) -> dict[str, Any]:
    found = store().latest_report(dag_id)
    assert found is not None, f"no report of {dag_id}"
    return found


def states(dag_run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def rows(project: str, dataset: str, table: str) -> list[str]:
    """Every row of `project.dataset.table` as JSON, in key order."""
    sql = f"select to_json_string(t) as j from `{project}.{dataset}.{table}` as t order by {KEYS[table]}"
    return [r["j"] for r in client(project).query(sql).result()]


def query(project: str, sql: str) -> list[dict[str, Any]]:
    return [dict(r) for r in client(project).query(sql).result()]


def base_tables(dataset: str) -> set[str]:
    return {
        name.split(".")[1]
        for name, kind in objects_in(PROD_PROJECT).items()
        if name.startswith(f"{dataset}.") and kind == "TABLE"
    }


def run_job_projects(dag_run: Any) -> set[str]:
    """The projects whose jobs include one of this run's (job ids start with the run's prefix,
    envsync.bigquery.jobs)."""
    from envsync.bigquery.jobs import short_hash

    prefix = f"envsync_{dag_run.dag_id}_{short_hash(dag_run.dag_id, dag_run.run_id)}"
    return {
        project
        for project in (PROD_PROJECT, NONPROD_PROJECT, BACKUP_PROJECT)
        if any(j.job_id.startswith(prefix) for j in client(project).list_jobs(project=project, all_users=True))
    }


def taken_at(name: str) -> dt.datetime | None:
    """The instant in the name of snapshot `backup_<ds>.<table>__<stamp>`."""
    from envsync.backups.ladder import parse_snapshot_name

    parsed = parse_snapshot_name(name.split(".")[1])
    return parsed[1] if parsed else None


def take_backup(config_path: Path, dataset: str, tables: list[str], taken_at: dt.datetime) -> list[dict[str, Any]]:
    """Snapshots of the current state of prod's `dataset.<tables>`, recorded as taken at `taken_at` (what a
    ladder run then would have made), through envsync's backup engine on the split config."""
    from envsync.backups.snapshots import BackupCatalog, BackupEngine
    from envsync.bigquery.jobs import JobRunner, JobStats
    from envsync.core.config import load_config
    from envsync.core.guard import GuardedBigQuery, WriteGuard

    config = load_config(config_path)
    bq = GuardedBigQuery(client(BACKUP_PROJECT), WriteGuard.from_config(config), "US")
    runner = JobRunner(bq, dag_id="tests", run_id=f"seed-{taken_at:%Y%m%d%H%M}", task_id="backup", timeout=120)
    engine = BackupEngine(config, bq, runner, BackupCatalog(config, bq.client, store()))
    engine.ensure_backup_dataset(dataset)
    expires = dt.datetime.now(UTC) + dt.timedelta(days=30)
    return [
        engine.snapshot(
            dataset,
            table,
            taken_at=taken_at,
            as_of=None,
            pinned=False,
            reason="test",
            expires=expires,
            stats=JobStats(),
        )
        for table in tables
    ]


def test_the_ladder_snapshots_prod_into_the_backup_project(split: Path, run_dag: Any) -> None:
    from envsync.backups.ladder import Backup, keep, snapshot_name
    from envsync.core.rungs import Ladder

    before = prod_fingerprints()
    top = now_utc().replace(minute=0, second=0)
    history = [top - dt.timedelta(hours=h) for h in range(6, 0, -1)]  # customers: six earlier hourly snapshots
    for instant in history:
        take_backup(split, "sales", ["customers"], instant)
    hour = run_time()
    first = run_dag("backup_ladder", hour, {}, config_path=split)
    assert str(first.state) == "success", states(first)
    # the snapshot jobs ran in the backup project; the audit's in the audit dataset's; none in prod's
    assert run_job_projects(first) == {BACKUP_PROJECT, NONPROD_PROJECT}

    backups = objects_in(BACKUP_PROJECT)
    for dataset in ("sales", "marketing"):
        at_hour = {n for n in backups if n.startswith(f"backup_{dataset}.") and taken_at(n) == hour}
        assert at_hour == {f"backup_{dataset}.{snapshot_name(t, hour)}" for t in base_tables(dataset)}, dataset
    assert all(kind == "SNAPSHOT" for kind in backups.values()), backups
    # the manifest names the snapshot with its project; rows and checksum are prod's
    name = snapshot_name("orders", hour)
    manifest = store().read(f"backup_manifests/sales/orders/{name}.json")
    assert manifest is not None and manifest["snapshot"] == f"{BACKUP_PROJECT}.backup_sales.{name}"
    [expected] = query(
        PROD_PROJECT,
        f"select count(*) as n, coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as c "
        f"from `{PROD_PROJECT}.sales.orders` as t",
    )
    assert (manifest["rows"], manifest["checksum"]) == (expected["n"], str(expected["c"]))
    results = {r["table"]: r for r in report("backup_ladder")["results"] if r["action"] == "snapshot"}
    assert results[f"{PROD_PROJECT}.sales.orders"]["target"] == f"{BACKUP_PROJECT}.backup_sales.{name}"
    # thinning ran in the backup project: customers keeps exactly the ladder's snapshots
    kept = {n.split(".")[1] for n in objects_in(BACKUP_PROJECT) if n.startswith("backup_sales.customers__")}
    ladder = [Backup(t, snapshot_name("customers", t)) for t in [*history, hour]]
    assert kept == keep(Ladder.default(), ladder, hour) and len(kept) < len(ladder)
    dropped = [r for r in report("backup_ladder")["results"] if r["action"] == "drop"]
    assert dropped and all(r["target"].startswith(f"{BACKUP_PROJECT}.backup_sales.customers__") for r in dropped)

    # again in the same hour: nothing new; a manual run with a reason pins every table
    again = run_dag("backup_ladder", now_utc(), {}, config_path=split)
    assert str(again.state) == "success", states(again)
    assert {r["action"] for r in report("backup_ladder")["results"]} == {"skip"}
    pin = run_dag("backup_ladder", None, {"reason": "before the split", "expiry_days": 30}, config_path=split)
    assert str(pin.state) == "success", states(pin)
    bq = client(BACKUP_PROJECT)
    pinned = [
        n
        for n in objects_in(BACKUP_PROJECT)
        if bq.get_table(f"{BACKUP_PROJECT}.{n}").labels.get("envsync-pinned") == "true"
    ]
    assert {n.split(".")[0] for n in pinned} == {"backup_sales", "backup_marketing"}
    assert len(pinned) == len(base_tables("sales")) + len(base_tables("marketing"))
    assert prod_fingerprints() == before  # prod was only read
    refusals = refused_before_any_request(split)
    assert len(refusals) == 6 and PROD_PROJECT in refusals[0]


def test_a_backup_dataset_in_another_location_fails_the_plan_naming_both(split: Path, run_dag: Any) -> None:
    from google.cloud import bigquery

    from envsync.backups.snapshots import BackupCatalog, BackupError
    from envsync.core.config import load_config

    elsewhere = bigquery.Dataset(f"{BACKUP_PROJECT}.backup_sales")
    elsewhere.location = "EU"
    client(BACKUP_PROJECT).create_dataset(elsewhere)
    failed = run_dag("backup_ladder", run_time(), {"datasets": ["sales"]}, config_path=split)
    assert str(failed.state) == "failed"
    assert states(failed)["plan[-1]"] == "failed", states(failed)
    assert objects_in(BACKUP_PROJECT) == {}  # no snapshot taken
    catalog = BackupCatalog(load_config(split), client(BACKUP_PROJECT), store())
    with pytest.raises(BackupError) as refused:
        catalog.source_dataset("sales")
    assert f"backup dataset {BACKUP_PROJECT}.backup_sales is in EU" in str(refused.value)
    assert f"source dataset {PROD_PROJECT}.sales is in US" in str(refused.value)


def test_restores_and_drills_write_the_drill_datasets_of_the_backup_project(split: Path, run_dag: Any) -> None:
    before = prod_fingerprints()
    time.sleep(1.1)
    point = now_utc()
    time.sleep(1.1)
    restore = run_dag(
        "restore",
        None,
        {"dataset": "sales", "tables": ["customers", "orders"], "point_in_time": point.isoformat()},
        config_path=split,
    )
    assert str(restore.state) == "success", states(restore)
    assert PROD_PROJECT not in run_job_projects(restore)  # prod was read by jobs of the drill's project
    for table in ("customers", "orders"):
        assert rows(BACKUP_PROJECT, "drill_sales", table) == rows(PROD_PROJECT, "sales", table), table
    results = {r["table"]: r for r in report("restore")["results"]}
    orders = results[f"{PROD_PROJECT}.sales.orders"]
    assert orders["action"] == "time_travel" and orders["source"] == f"{PROD_PROJECT}.sales.orders"
    assert orders["target"] == f"{BACKUP_PROJECT}.drill_sales.orders"
    assert set(objects_in(BACKUP_PROJECT)) == {"drill_sales.customers", "drill_sales.orders"}  # no stage left

    # the drill of the day: every sales table from its snapshot of the day before
    today = now_utc().replace(hour=0, minute=0, second=0)
    used = take_backup(split, "sales", sorted(base_tables("sales")), today - dt.timedelta(days=1, hours=6))
    drill = run_dag("recovery_drill", today, {"datasets": ["sales"]}, config_path=split)
    assert str(drill.state) == "success", states(drill)
    for table in base_tables("sales"):
        assert rows(BACKUP_PROJECT, "drill_sales", table) == rows(PROD_PROJECT, "sales", table), table
    audit = query(
        NONPROD_PROJECT,
        f"select * from `{NONPROD_PROJECT}.envsync_audit.recovery_drills` where run_id = '{drill.run_id}' "
        "order by table_name",
    )
    assert [r["table_name"] for r in audit] == sorted(base_tables("sales"))
    for row in audit:
        assert row["status"] == "ok" and row["source_kind"] == "snapshot", row
        assert row["dataset"] == f"{PROD_PROJECT}.sales"
        assert row["target"] == f"{BACKUP_PROJECT}.drill_sales.{row['table_name']}"
        assert row["rpo_seconds"] == 6 * 3600.0 and row["checksum"] == row["expected_checksum"]
    assert {r["source"] for r in audit} == {m["snapshot"] for m in used}
    assert all(s.startswith(f"{BACKUP_PROJECT}.backup_sales.") for s in {m["snapshot"] for m in used})
    assert prod_fingerprints() == before


def test_a_confirmed_restore_writes_only_the_restored_prod_table(split: Path, run_dag: Any) -> None:
    from envsync.core.guard import confirmation_phrase

    at_t = rows(PROD_PROJECT, "sales", "customers")
    time.sleep(1.1)
    point = now_utc()
    time.sleep(1.1)
    # the incident: rows of prod's customers are lost after T
    client(PROD_PROJECT).query(f"delete from `{PROD_PROJECT}.sales.customers` where customer_id >= 10").result()
    changed = rows(PROD_PROJECT, "sales", "customers")
    assert changed != at_t
    before = prod_fingerprints()

    restore = run_dag(
        "restore",
        None,
        {
            "dataset": "sales",
            "tables": ["customers"],
            "point_in_time": point.isoformat(),
            "target": "sales",
            "confirm": confirmation_phrase("sales", point),
        },
        config_path=split,
    )
    assert str(restore.state) == "success", states(restore)
    assert PROD_PROJECT in run_job_projects(restore)  # prod's jobs project runs its confirmed restore
    assert rows(PROD_PROJECT, "sales", "customers") == at_t
    after = prod_fingerprints()
    assert set(after) == set(before)  # no stage table left in prod
    assert {k: v for k, v in after.items() if k != "sales.customers"} == {
        k: v for k, v in before.items() if k != "sales.customers"
    }
    [result] = report("restore")["results"]
    assert result["target"] == f"{PROD_PROJECT}.sales.customers" and result["action"] == "time_travel"
    # the state it overwrote was pinned first, in the backup project
    bq = client(BACKUP_PROJECT)
    [pin] = [
        n
        for n in objects_in(BACKUP_PROJECT)
        if bq.get_table(f"{BACKUP_PROJECT}.{n}").labels.get("envsync-pinned") == "true"
    ]
    assert pin.startswith("backup_sales.customers__")
    assert [
        r["j"]
        for r in query(
            BACKUP_PROJECT,
            f"select to_json_string(t) as j from `{BACKUP_PROJECT}.{pin}` as t order by customer_id",
        )
    ] == changed
