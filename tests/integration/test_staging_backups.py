"""Staging keeps prod's backup strategy: the ladder, restores and drills of `staging_<ds>` on the emulators.

Prod is backupkit's `shop`; staging_shop stands in for a seeded staging (a copy of shop's tables made
by cutkit), until the test re-seeds it through reseed_environments. Fingerprints are computed in BigQuery
(row count and BIT_XOR(FARM_FINGERPRINT(TO_JSON_STRING(row)))), as the backups' manifests record them.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from backupkit import (
    PROJECT,
    UTC,
    client,
    contents,
    ds,
    fq,
    make_prod,
    now_utc,
    query,
    report,
    run_time,
    states,
    store,
    table_names,
    take_backup,
    tref,
    write_config,
)
from cutkit import TABLES, fingerprints, make_staging
from testkit import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def staging(emulators: Any) -> None:
    make_prod()
    make_staging()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path / "envsync.yaml", environments=["prod", "staging"])


def test_a_staging_ladder_run_snapshots_into_backup_staging(staging: None, run_dag: Any, cfg: Path) -> None:
    from envsync.backups.ladder import snapshot_name

    hour = run_time()
    dag_run = run_dag("backup_ladder", hour, {}, config_path=cfg)
    assert str(dag_run.state) == "success", states(dag_run)
    expected = {snapshot_name(t, hour) for t in TABLES}
    # staging's snapshots in its own backup datasets, prod's in backup_shop
    assert table_names("backup_staging_shop") == expected
    assert table_names("backup_shop") == expected
    snap = client().get_table(fq(f"backup_staging_shop.{snapshot_name('orders', hour)}"))
    assert snap.table_type == "SNAPSHOT" and snap.labels["envsync-pinned"] == "false"
    assert snap.labels["envsync-source"] == ds("staging_shop")
    # its own manifests (rows and checksum of staging's table as of T) and its own ledger of snapshot jobs
    manifest = store().read(f"backup_manifests/{ds('staging_shop')}/orders/{snapshot_name('orders', hour)}.json")
    assert manifest is not None
    assert (manifest["rows"], int(manifest["checksum"])) == fingerprints("staging_shop")["orders"]
    today = dt.datetime.now(UTC).date().isoformat()
    assert store().read(f"backup_jobs/{ds('staging_shop')}/{today}.json") == {"orders": 1, "customers": 1}
    assert store().read(f"backup_jobs/{ds('shop')}/{today}.json") == {"orders": 1, "customers": 1}
    units = {r["table"].split(".")[0] for r in report("backup_ladder")["results"]}
    assert units == {ds("shop"), ds("staging_shop")}

    # a pin of staging only: the ladder's pinned backups, in staging's backup dataset
    pin = run_dag(
        "backup_ladder", None, {"reason": "before the rollback rehearsal", "environments": ["staging"]}, config_path=cfg
    )
    assert str(pin.state) == "success", states(pin)
    pinned = [t for t in client().list_tables(fq("backup_staging_shop")) if t.labels.get("envsync-pinned") == "true"]
    assert sorted(t.table_id.split("__")[0] for t in pinned) == ["customers", "orders"]
    assert not any(t.labels.get("envsync-pinned") == "true" for t in client().list_tables(fq("backup_shop")))


def test_reseeding_staging_keeps_its_backups_and_a_restore_gives_the_earlier_fingerprints(
    staging: None, run_dag: Any, cfg: Path
) -> None:
    before = fingerprints("staging_shop")
    rows_before = {t: contents(f"staging_shop.{t}") for t in TABLES}
    hour = run_time()
    ladder = run_dag("backup_ladder", hour, {}, config_path=cfg)
    assert str(ladder.state) == "success", states(ladder)
    time.sleep(1.1)
    point = now_utc()  # T: after the snapshot, before the reseed
    time.sleep(1.1)

    # the reseed destroys staging_shop and re-creates it (no seed for shop's tables: they come back empty)
    reseed = run_dag(
        "reseed_environments", None, {"environments": ["staging"], "datasets": [ds("shop")]}, config_path=cfg
    )
    assert str(reseed.state) == "success", states(reseed)
    assert fingerprints("staging_shop") == {t: (0, 0) for t in TABLES}
    kept = table_names("backup_staging_shop")
    assert len(kept) == 2  # the backups are in another dataset: kept

    # the ladder treats the reseed as a new base: a snapshot in the same hour, beside the older one
    again = run_dag("backup_ladder", None, {"environments": ["staging"]}, config_path=cfg)
    assert str(again.state) == "success", states(again)
    taken = {r["table"]: r for r in report("backup_ladder")["results"]}
    assert taken[tref("staging_shop.orders")]["status"] == "ok"
    assert "new base" in taken[tref("staging_shop.orders")]["reason"]
    assert len(table_names("backup_staging_shop")) == 4 and kept <= table_names("backup_staging_shop")

    # staging restored into itself to T, before the reseed: no confirmation phrase, from the snapshots
    # (time travel cannot read the re-created tables as of T)
    restore = run_dag(
        "restore",
        None,
        {"source": "staging", "dataset": ds("shop"), "point_in_time": point.isoformat(), "target": ds("staging_shop")},
        config_path=cfg,
    )
    assert str(restore.state) == "success", states(restore)
    assert fingerprints("staging_shop") == before
    assert {t: contents(f"staging_shop.{t}") for t in TABLES} == rows_before
    assert table_names("staging_shop") == {*TABLES, "big_orders"}  # no stage left (the view came with the reseed)
    results = {r["table"]: r for r in report("restore")["results"]}
    assert {r["action"] for r in results.values()} == {"snapshot"}
    assert "created at" in results[tref("staging_shop.orders")]["reason"]
    # audited like any restore, as staging; the state it overwrote was pinned first
    [audit] = query(
        f"select environment, status, datasets from `{PROJECT}.envsync_audit.runs` where run_id = @r", r=restore.run_id
    )
    assert (audit["environment"], audit["status"], audit["datasets"]) == ("staging", "success", ds("staging_shop"))
    pins = [t for t in client().list_tables(fq("backup_staging_shop")) if t.labels.get("envsync-pinned") == "true"]
    assert sorted(t.table_id.split("__")[0] for t in pins) == ["customers", "orders"]


def test_a_staging_restore_by_time_travel_to_an_earlier_t(staging: None, run_dag: Any, cfg: Path) -> None:
    time.sleep(1.1)
    before = fingerprints("staging_shop")
    point = now_utc()
    time.sleep(1.1)
    query(f"delete from `{PROJECT}.staging_shop.orders` where id > 10")
    query(f"update `{PROJECT}.staging_shop.customers` set name = 'changed' where customer_id < 4")
    assert fingerprints("staging_shop") != before

    restore = run_dag(
        "restore",
        None,
        {"source": "staging", "dataset": ds("shop"), "point_in_time": point.isoformat()},
        config_path=cfg,
    )
    assert str(restore.state) == "success", states(restore)
    assert fingerprints("drill_staging_shop") == before  # the default target: staging's own drill dataset
    assert {r["action"] for r in report("restore")["results"]} == {"time_travel"}
    assert len(contents("staging_shop.orders")) == 10  # staging itself untouched


def test_a_prod_target_is_refused_for_a_staging_restore(staging: None, run_dag: Any, cfg: Path) -> None:
    refused = run_dag(
        "restore", None, {"source": "staging", "dataset": ds("shop"), "target": ds("shop")}, config_path=cfg
    )
    assert str(refused.state) == "failed" and states(refused)["plan[-1]"] == "failed"
    assert "drill_staging_shop" not in {d.dataset_id for d in client().list_datasets()}


def test_a_staging_drill_records_rto_and_rpo_per_environment(staging: None, run_dag: Any, cfg: Path) -> None:
    today = now_utc().replace(hour=0, minute=0, second=0)
    expected = fingerprints("staging_shop")
    used = take_backup(cfg, today - dt.timedelta(days=1, hours=4), dataset="staging_shop")

    drill = run_dag("recovery_drill", today, {"source": "staging"}, config_path=cfg)
    assert str(drill.state) == "success", states(drill)
    assert fingerprints("drill_staging_shop") == expected
    rows = query(
        f"select * from `{PROJECT}.envsync_audit.recovery_drills` where run_id = @r order by table_name", r=drill.run_id
    )
    assert [r["table_name"] for r in rows] == ["customers", "orders"]
    for row in rows:
        assert row["environment"] == "staging" and row["dataset"] == ds("staging_shop")
        assert row["status"] == "ok" and row["source_kind"] == "snapshot"
        assert row["rpo_seconds"] == 4 * 3600.0 and row["rto_seconds"] > 0
        assert row["checksum"] == row["expected_checksum"]
    assert {r["source"] for r in rows} == {m["snapshot"] for m in used}
    [run] = query(f"select environment from `{PROJECT}.envsync_audit.runs` where run_id = @r", r=drill.run_id)
    assert run["environment"] == "staging"
    latest = query((REPO_ROOT / "sql" / "reports" / "recovery_drills.sql").read_text())  # the shipped report
    assert {(r["environment"], r["table_name"]) for r in latest} == {("staging", "customers"), ("staging", "orders")}
