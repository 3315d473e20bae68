"""backup_ladder, restore and recovery_drill through Airflow (dag.test) on the emulators.

Prod here is a small dataset `shop` in its own project (backupkit). Assertions are on BigQuery
tables (row-level contents), snapshot metadata, manifests in the state bucket and the audit table.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import sandbox
from backupkit import (
    BUCKET,
    PROJECT,
    UTC,
    client,
    contents,
    dataset_names,
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
    tamper,
    tref,
    write_config,
)
from testkit import REPO_ROOT

pytestmark = pytest.mark.integration


def snapshots() -> dict[str, Any]:
    return {t.table_id: client().get_table(t.reference) for t in client().list_tables(fq("backup_shop"))}


@pytest.fixture
def shop(emulators: Any) -> None:
    make_prod()


@pytest.fixture
def cfg(tmp_path: Path) -> Any:
    def _make(**backups: Any) -> Path:
        return write_config(tmp_path / "envsync.yaml", **backups)

    return _make


# ------------------------------------------------------------------------------------ backup_ladder


def test_ladder_run_snapshots_every_table_with_manifest_and_expiry(shop: None, run_dag: Any, cfg: Any) -> None:
    from envsync.backups.ladder import snapshot_expiry, snapshot_name
    from envsync.core.rungs import Ladder

    config = cfg()
    hour = run_time()
    first = run_dag("backup_ladder", hour, {}, config_path=config)
    assert str(first.state) == "success", states(first)
    snaps = snapshots()
    # tables only: the view is not backed up
    assert set(snaps) == {snapshot_name("orders", hour), snapshot_name("customers", hour)}
    for name, snap in snaps.items():
        assert snap.table_type == "SNAPSHOT"
        assert snap.labels["envsync-pinned"] == "false"
        # kept while a rung or one of the 7 daily slots can still want it
        assert (
            snap.expires
            == snapshot_expiry(Ladder.default(), hour)
            == (hour.replace(hour=0, minute=0, second=0) + dt.timedelta(days=7))
        )
        manifest = store().read(f"backup_manifests/{ds('shop')}/{name.split('__')[0]}/{name}.json")
        assert manifest is not None, name
        table = name.split("__")[0]
        expected = query(
            f"select count(*) as n, coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as c "
            f"from `{PROJECT}.shop.{table}` as t"
        )[0]
        assert (manifest["rows"], manifest["checksum"]) == (expected["n"], str(expected["c"]))
        assert [f["name"] for f in manifest["schema"]] == [
            f.name for f in client().get_table(fq(f"shop.{table}")).schema
        ]
        assert manifest["taken_at"] == hour.isoformat() and manifest["pinned"] is False
    assert snaps[snapshot_name("orders", hour)].num_rows == 40
    plan = report("backup_ladder")
    # the sub-hour rungs are time-travel restore points: recorded, no snapshot
    assert plan["restore_points"] == [(hour - dt.timedelta(minutes=m)).isoformat() for m in (1, 2, 5, 10)]
    assert store().read(f"backup_jobs/{ds('shop')}/{dt.datetime.now(UTC).date().isoformat()}.json") == {
        "orders": 1,
        "customers": 1,
    }

    # a second run in the same hour takes nothing more; a manual run with a reason pins a snapshot
    again = run_dag("backup_ladder", now_utc(), {}, config_path=config)
    assert str(again.state) == "success", states(again)
    assert set(snapshots()) == set(snaps)
    assert {r["action"] for r in report("backup_ladder")["results"]} == {"skip"}
    pin = run_dag("backup_ladder", None, {"reason": "before the big migration", "expiry_days": 30}, config_path=config)
    assert str(pin.state) == "success", states(pin)
    pinned = {n: s for n, s in snapshots().items() if s.labels.get("envsync-pinned") == "true"}
    assert len(pinned) == 2
    for snap in pinned.values():
        assert "before the big migration" in snap.description
        assert dt.timedelta(days=29) < snap.expires - dt.datetime.now(UTC) <= dt.timedelta(days=30)


def test_thinning_keeps_the_ladder_and_never_pins(shop: None, cfg: Any, run_dag: Any) -> None:
    from envsync.backups.ladder import Backup, keep, parse_snapshot_name, snapshot_name
    from envsync.core.rungs import Ladder

    config = cfg()
    top = now_utc().replace(minute=0, second=0)
    # an hourly history of the last 30 hours (simulated), plus one pinned backup 29 hours ago
    taken = [top - dt.timedelta(hours=h) for h in range(30, 0, -1)]
    for instant in taken:
        take_backup(config, instant)
    take_backup(config, top - dt.timedelta(hours=29, minutes=30), pinned=True)
    now = run_time()
    dag_run = run_dag("backup_ladder", now, {}, config_path=config)
    assert str(dag_run.state) == "success", states(dag_run)

    left = {n: s for n, s in snapshots().items() if n.startswith("orders__")}
    history = [Backup(t, snapshot_name("orders", t)) for t in taken + [now]]
    expected = keep(Ladder.default(), history, now)
    pinned = {n for n, s in left.items() if s.labels.get("envsync-pinned") == "true"}
    assert pinned and {n for n in left if n not in pinned} == expected
    assert len(expected) < len(history)
    thinned = [r for r in report("backup_ladder")["results"] if r["action"] == "drop"]
    assert len(thinned) == 2 * (len(history) - len(expected))
    assert all(parse_snapshot_name(r["target"].split(".")[1]) for r in thinned)
    # the thinned snapshots' manifests are gone with them; the kept ones remain
    names = {n.rsplit("/", 1)[1].removesuffix(".json") for n in store().list(f"backup_manifests/{ds('shop')}/orders/")}
    assert names == set(left)


def test_daily_rung_is_exported_to_gcs(shop: None, run_dag: Any, cfg: Any) -> None:
    config = cfg(export={"enabled": True, "format": "PARQUET"})
    hour = run_time()
    dag_run = run_dag("backup_ladder", hour, {}, config_path=config)
    assert str(dag_run.state) == "success", states(dag_run)
    folder = f"backups/{ds('shop')}/orders/{hour.date().isoformat()}/"
    names = store().list(folder)
    assert f"{folder}_manifest.json" in names and any(n.endswith(".parquet") for n in names), names
    exported = store().read(f"{folder}_manifest.json")
    assert exported["rows"] == 40 and exported["format"] == "PARQUET" and exported["taken_at"] == hour.isoformat()


# ------------------------------------------------------------------------------------------ restore


def test_restore_by_time_travel_gives_the_state_at_t(shop: None, run_dag: Any, cfg: Any) -> None:
    config = cfg()
    at_t = {t: contents(f"shop.{t}") for t in ("orders", "customers")}
    time.sleep(1.1)
    point = dt.datetime.now(UTC)
    time.sleep(1.1)
    # after T: rows changed and deleted, a row added
    query(f"update `{PROJECT}.shop.orders` set note = 'changed', amount = 0 where id <= 5")
    query(f"delete from `{PROJECT}.shop.orders` where id > 30")
    query(f"delete from `{PROJECT}.shop.customers` where customer_id in (2, 4)")
    query(f"insert into `{PROJECT}.shop.customers` (customer_id, name) values (99, 'late')")
    assert contents("shop.orders") != at_t["orders"]

    dag_run = run_dag("restore", None, {"dataset": ds("shop"), "point_in_time": point.isoformat()}, config_path=config)
    assert str(dag_run.state) == "success", states(dag_run)
    for table in ("orders", "customers"):
        assert contents(f"drill_shop.{table}") == at_t[table], table  # row by row, the state at T
    assert table_names("drill_shop") == {"orders", "customers"}  # no staging tables left
    results = {r["table"]: r for r in report("restore")["results"]}
    assert {r["action"] for r in results.values()} == {"time_travel"}
    assert results[tref("shop.orders")]["rpo_seconds"] == 0
    # prod itself was only read
    assert len(contents("shop.orders")) == 30


def test_restore_outside_time_travel_uses_the_newest_snapshot_before_t(shop: None, run_dag: Any, cfg: Any) -> None:
    # restore_time_travel_hours: 0 simulates T being older than the time-travel window
    config = cfg(restore_time_travel_hours=0)
    now = now_utc()
    older = take_backup(config, now - dt.timedelta(hours=5))
    query(f"delete from `{PROJECT}.shop.orders` where id > 20")
    at_t = {t: contents(f"shop.{t}") for t in ("orders", "customers")}
    newest = take_backup(config, now - dt.timedelta(hours=2))
    query(f"update `{PROJECT}.shop.orders` set note = 'after' where id < 10")
    take_backup(config, now - dt.timedelta(minutes=1))  # after T: must not be used
    point = now - dt.timedelta(hours=1)

    dag_run = run_dag(
        "restore",
        None,
        {
            "dataset": ds("shop"),
            "tables": ["orders", "customers"],
            "point_in_time": point.isoformat(),
            "target": ds("drill_shop"),
        },
        config_path=config,
    )
    assert str(dag_run.state) == "success", states(dag_run)
    for table in ("orders", "customers"):
        assert contents(f"drill_shop.{table}") == at_t[table], table
    results = {r["table"]: r for r in report("restore")["results"]}
    assert results[tref("shop.orders")]["action"] == "snapshot"
    assert results[tref("shop.orders")]["source"] == newest[1]["snapshot"] != older[1]["snapshot"]
    assert results[tref("shop.orders")]["rpo_seconds"] == 3600.0
    assert "time travel is off" in results[tref("shop.orders")]["reason"]
    # schema restored too: a column added in prod after T is not in the restored table
    query(f"alter table `{PROJECT}.shop.customers` add column email string")
    again = run_dag(
        "restore",
        None,
        {"dataset": ds("shop"), "tables": ["customers"], "point_in_time": point.isoformat()},
        config_path=config,
    )
    assert str(again.state) == "success", states(again)
    assert [f.name for f in client().get_table(fq("drill_shop.customers")).schema] == ["customer_id", "name"]


def test_restore_falls_back_to_the_gcs_export(shop: None, run_dag: Any, cfg: Any) -> None:
    config = cfg(restore_time_travel_hours=0, export={"enabled": True})
    hour = run_time()
    dag_run = run_dag("backup_ladder", hour, {}, config_path=config)
    assert str(dag_run.state) == "success", states(dag_run)
    at_t = {t: contents(f"shop.{t}") for t in ("orders", "customers")}
    # the snapshots are gone (expired): only the export remains
    for name in list(snapshots()):
        client().delete_table(fq(f"backup_shop.{name}"))
    query(f"delete from `{PROJECT}.shop.orders` where id > 2")

    restore = run_dag("restore", None, {"dataset": ds("shop"), "point_in_time": hour.isoformat()}, config_path=config)
    assert str(restore.state) == "success", states(restore)
    results = {r["table"]: r for r in report("restore")["results"]}
    assert results[tref("shop.orders")]["action"] == "export"
    assert (
        results[tref("shop.orders")]["source"]
        == f"gs://{BUCKET}/backups/{ds('shop')}/orders/{hour.date().isoformat()}/"
    )
    for table in ("orders", "customers"):
        assert contents(f"drill_shop.{table}") == at_t[table], table
    orders = client().get_table(fq("drill_shop.orders"))
    assert orders.time_partitioning is not None and orders.time_partitioning.field == "d"


@pytest.mark.xfail(
    not sandbox.ON_GCP,
    strict=True,
    reason="emulator gap: the local BigQuery emulator cannot write "
    "Avro (its DuckDB avro extension is not available offline); real BigQuery exports Avro",
)
def test_export_as_avro(shop: None, run_dag: Any, cfg: Any) -> None:
    config = cfg(export={"enabled": True, "format": "AVRO"})
    hour = run_time()
    dag_run = run_dag("backup_ladder", hour, {}, config_path=config)
    assert str(dag_run.state) == "success", states(dag_run)
    assert any(n.endswith(".avro") for n in store().list(f"backups/{ds('shop')}/orders/{hour.date().isoformat()}/"))


def test_prod_restore_needs_the_exact_confirmation(shop: None, run_dag: Any, cfg: Any) -> None:
    from envsync.core.guard import confirmation_phrase

    config = cfg()
    at_t = contents("shop.orders")
    time.sleep(1.1)
    point = dt.datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.1)
    query(f"delete from `{PROJECT}.shop.orders` where id > 10")
    changed = contents("shop.orders")
    phrase = confirmation_phrase(ds("shop"), point)

    for wrong in ("", "yes", phrase.replace("shop", "shop2"), phrase + " "):
        refused = run_dag(
            "restore",
            None,
            {"dataset": ds("shop"), "point_in_time": point.isoformat(), "target": ds("shop"), "confirm": wrong},
            config_path=config,
        )
        assert str(refused.state) == "failed"
        assert states(refused)["plan[-1]"] == "failed", states(refused)
        # refused before any write: prod unchanged, no backup taken, no scratch dataset (only the
        # audit of the refused run is recorded)
        assert contents("shop.orders") == changed
        assert dataset_names() == {"shop", "envsync_audit"}
        [audit] = query(f"select status, error from `{PROJECT}.envsync_audit.runs` where run_id = @r", r=refused.run_id)
        assert audit["status"] == "failed"

    # "now" cannot be confirmed in advance: a prod restore needs an explicit point_in_time
    implicit = run_dag(
        "restore", None, {"dataset": ds("shop"), "target": ds("shop"), "confirm": phrase}, config_path=config
    )
    assert str(implicit.state) == "failed" and states(implicit)["plan[-1]"] == "failed"
    assert contents("shop.orders") == changed

    confirmed = run_dag(
        "restore",
        None,
        {"dataset": ds("shop"), "point_in_time": point.isoformat(), "target": ds("shop"), "confirm": phrase},
        config_path=config,
    )
    assert str(confirmed.state) == "success", states(confirmed)
    assert contents("shop.orders") == at_t
    assert table_names("shop") == {"orders", "customers", "big_orders"}
    # the state it overwrote was pinned first
    pins = [s for s in snapshots().values() if s.labels.get("envsync-pinned") == "true"]
    assert sorted(p.table_id.split("__")[0] for p in pins) == ["customers", "orders"]
    pinned_orders = next(p for p in pins if p.table_id.startswith("orders__"))
    assert [
        r["j"]
        for r in query(
            f"select to_json_string(t) as j from `{PROJECT}.backup_shop.{pinned_orders.table_id}` as t order by id"
        )
    ] == changed


def prod_restore(run_dag: Any, config: Path, point: dt.datetime, tables: list[str]) -> Any:
    """A confirmed restore of prod dataset shop itself to `point`."""
    from envsync.core.guard import confirmation_phrase

    return run_dag(
        "restore",
        None,
        {
            "dataset": ds("shop"),
            "tables": tables,
            "point_in_time": point.isoformat(),
            "target": ds("shop"),
            "confirm": confirmation_phrase(ds("shop"), point),
        },
        config_path=config,
    )


def test_a_restored_table_starts_a_new_clone_snapshot_chain(shop: None, run_dag: Any, cfg: Any) -> None:
    """https://cloud.google.com/bigquery/quotas#table_snapshots: BigQuery refuses to clone or snapshot the
    result of a clone or snapshot a third time. A restore published as a clone of a snapshot made the
    next snapshot of the restored table depth 3; published by a copy job, the chain starts again, so the
    hourly snapshot of a restored table and the next restore from it work."""
    config = cfg(restore_time_travel_hours=0)  # restore from snapshots
    now = now_utc()
    take_backup(config, now - dt.timedelta(hours=3))
    at_t1 = contents("shop.orders")
    query(f"delete from `{PROJECT}.shop.orders` where id > 30")
    first = prod_restore(run_dag, config, now - dt.timedelta(hours=2), ["orders"])
    assert str(first.state) == "success", states(first)
    assert contents("shop.orders") == at_t1

    query(f"update `{PROJECT}.shop.orders` set note = 'after the first restore' where id <= 3")
    at_t2 = contents("shop.orders")
    second_backup = take_backup(config, now - dt.timedelta(hours=1))  # a snapshot of the restored table
    assert next(m for m in second_backup if m["table"] == "orders")["rows"] == 40
    query(f"delete from `{PROJECT}.shop.orders` where id > 10")
    second = prod_restore(run_dag, config, now - dt.timedelta(minutes=30), ["orders"])
    assert str(second.state) == "success", states(second)
    assert contents("shop.orders") == at_t2
    assert table_names("shop") == {"orders", "customers", "big_orders"}  # no stage left behind
    take_backup(config, now - dt.timedelta(minutes=20))  # and again: a standard table
    [result] = report("restore")["results"]
    assert result["action"] == "snapshot" and "copied into the existing table" in result["published"]


def test_a_prod_restore_keeps_the_tables_own_settings(shop: None, run_dag: Any, cfg: Any) -> None:
    """https://cloud.google.com/bigquery/docs/managing-tables#copy-table: a restore publishes by a copy job
    with WRITE_TRUNCATE into the existing table, which replaces data and schema and keeps the table: its
    labels, description, friendly name, expiration, partition expiration and require_partition_filter
    (and, on BigQuery, its IAM policy, search indexes and tags) survive."""
    config = cfg(restore_time_travel_hours=0)
    c = client()
    orders = c.get_table(fq("shop.orders"))
    expires = (dt.datetime.now(UTC) + dt.timedelta(days=30)).replace(microsecond=0)
    partition_expiration_ms = 3650 * 86_400_000
    orders.labels = {"team": "sales", "tier": "gold"}
    orders.description = "orders of the shop, one row per order"
    orders.friendly_name = "Shop orders"
    orders.expires = expires
    orders.require_partition_filter = True
    orders.time_partitioning = bigquery_time_partitioning("d", partition_expiration_ms)
    c.update_table(
        orders, ["labels", "description", "friendly_name", "expires", "require_partition_filter", "time_partitioning"]
    )
    every_row = "where (d is null or d >= '1900-01-01')"  # the table requires a partition filter

    def rows() -> list[str]:
        return [
            r["j"]
            for r in query(f"select to_json_string(t) as j from `{PROJECT}.shop.orders` as t {every_row} order by id")
        ]

    now = now_utc()
    take_backup(config, now - dt.timedelta(hours=2))
    at_t = rows()
    query(f"update `{PROJECT}.shop.orders` set note = 'changed' {every_row} and id <= 5")
    query(f"delete from `{PROJECT}.shop.orders` {every_row} and id > 20")
    assert rows() != at_t

    restore = prod_restore(run_dag, config, now - dt.timedelta(hours=1), ["orders"])
    assert str(restore.state) == "success", states(restore)
    assert rows() == at_t
    after = c.get_table(fq("shop.orders"))
    assert after.labels == {"team": "sales", "tier": "gold"}
    assert after.description == "orders of the shop, one row per order"
    assert after.friendly_name == "Shop orders"
    assert after.expires == expires
    assert after.require_partition_filter is True
    assert (after.time_partitioning.field, after.time_partitioning.expiration_ms) == ("d", partition_expiration_ms)
    assert after.created == orders.created  # the same table: writers never saw it missing
    assert table_names("shop") == {"orders", "customers", "big_orders"}


def test_a_table_restored_into_prod_after_a_drop_gets_its_recorded_expiration(
    shop: None, run_dag: Any, cfg: Any
) -> None:
    """A table the restore has to create again in prod gets the expiration its backup recorded, not the
    prod dataset's default table expiration
    (https://cloud.google.com/bigquery/docs/updating-datasets#table-expiration)."""
    config = cfg(restore_time_travel_hours=0)
    c = client()
    orders = c.get_table(fq("shop.orders"))
    expires = (dt.datetime.now(UTC) + dt.timedelta(days=30)).replace(microsecond=0)
    orders.expires = expires
    c.update_table(orders, ["expires"])
    now = now_utc()
    [_, backup] = take_backup(config, now - dt.timedelta(hours=2))
    assert backup["table"] == "orders" and backup["table_expires"] == expires.isoformat()
    at_t = contents("shop.orders")
    shop_ds = c.get_dataset(fq("shop"))
    shop_ds.default_table_expiration_ms = 86_400_000
    c.update_dataset(shop_ds, ["default_table_expiration_ms"])
    c.delete_table(fq("shop.orders"))

    restore = prod_restore(run_dag, config, now - dt.timedelta(hours=1), ["orders"])
    assert str(restore.state) == "success", states(restore)
    assert contents("shop.orders") == at_t
    assert c.get_table(fq("shop.orders")).expires == expires
    [result] = report("restore")["results"]
    assert "copied into the new table" in result["published"] and "recorded by the backup" in result["published"]


def bigquery_time_partitioning(field: str, expiration_ms: int) -> Any:
    from google.cloud import bigquery

    return bigquery.TimePartitioning(type_="DAY", field=field, expiration_ms=expiration_ms)


# ------------------------------------------------------------------------------------ recovery drill


def drill_rows(run_id: str) -> list[dict[str, Any]]:
    return query(
        f"select * from `{PROJECT}.envsync_audit.recovery_drills` where run_id = @r order by table_name", r=run_id
    )


def test_drill_records_rto_rpo_and_fails_on_a_tampered_backup(shop: None, run_dag: Any, cfg: Any) -> None:
    config = cfg()
    today = now_utc().replace(hour=0, minute=0, second=0)
    take_backup(config, today - dt.timedelta(days=3))
    expected = {t: contents(f"shop.{t}") for t in ("orders", "customers")}
    used = take_backup(config, today - dt.timedelta(days=1, hours=6))
    take_backup(config, today - dt.timedelta(hours=12))  # after T = logical date - 1 day: not used

    drill = run_dag("recovery_drill", today, {}, config_path=config)
    assert str(drill.state) == "success", states(drill)
    for table in ("orders", "customers"):
        assert contents(f"drill_shop.{table}") == expected[table]
    rows = drill_rows(drill.run_id)
    assert [r["table_name"] for r in rows] == ["customers", "orders"]
    for row in rows:
        assert row["status"] == "ok" and row["source_kind"] == "snapshot"
        assert row["point_in_time"] == today - dt.timedelta(days=1)
        assert row["rpo_seconds"] == 6 * 3600.0
        assert row["rto_seconds"] > 0
        assert row["checksum"] == row["expected_checksum"]
    assert {r["source"] for r in rows} == {m["snapshot"] for m in used}

    # someone changes the backup that the next drill uses
    tamper(next(m["snapshot"] for m in used if m["table"] == "orders"))
    failed = run_dag("recovery_drill", today + dt.timedelta(hours=1), {}, config_path=config)
    assert str(failed.state) == "failed"
    assert states(failed)["restore[0]"] == "failed"
    rows = {r["table_name"]: r for r in drill_rows(failed.run_id)}
    assert rows["orders"]["status"] == "failed" and "backup manifest says 40 rows" in rows["orders"]["error"]
    assert rows["customers"]["status"] == "ok"
    assert "orders" not in table_names("drill_shop")  # a table that failed verification is not left behind

    # the shipped report shows the latest drill per table
    latest = {r["table_name"]: r for r in query((REPO_ROOT / "sql" / "reports" / "recovery_drills.sql").read_text())}
    assert latest["orders"]["status"] == "failed" and latest["orders"]["run_id"] == failed.run_id
    assert [r["table_name"] for r in report_query("failed_verifications")] == [tref("shop.orders")]
    assert latest["customers"]["status"] == "ok" and latest["customers"]["rpo_hours"] == 7.0


def test_restore_without_any_source_fails_naming_the_tables(shop: None, run_dag: Any, cfg: Any) -> None:
    config = cfg(restore_time_travel_hours=0)
    time.sleep(1.1)
    point = now_utc()
    take_backup(config, point + dt.timedelta(seconds=1))  # only after T
    dag_run = run_dag("restore", None, {"dataset": ds("shop"), "point_in_time": point.isoformat()}, config_path=config)
    assert str(dag_run.state) == "failed"
    assert states(dag_run)["restore[0]"] == "failed"
    results = {r["table"]: r for r in report("restore")["results"]}
    assert set(results) == {tref("shop.orders"), tref("shop.customers")}
    for result in results.values():
        assert result["status"] == "failed"
        assert "no snapshot at or before T" in result["error"] and "no GCS export at or before T" in result["error"]
    assert table_names("drill_shop") == set()


# ------------------------------------------------------------------------------------------ audit


def report_query(name: str) -> list[dict[str, Any]]:
    return query((REPO_ROOT / "sql" / "reports" / f"{name}.sql").read_text())


def test_every_run_is_audited_and_the_shipped_reports_read_it(shop: None, run_dag: Any, cfg: Any) -> None:
    config = cfg(restore_time_travel_hours=0)
    time.sleep(1.1)
    before = now_utc()  # after prod was made, before any backup
    backup = run_dag("backup_ladder", run_time(), {}, config_path=config)
    assert str(backup.state) == "success", states(backup)
    restore = run_dag("restore", None, {"dataset": ds("shop"), "point_in_time": before.isoformat()}, config_path=config)
    assert str(restore.state) == "failed"

    runs = {r["dag_id"]: r for r in query(f"select * from `{PROJECT}.envsync_audit.runs`")}
    assert runs["backup_ladder"]["status"] == "success" and runs["backup_ladder"]["run_id"] == backup.run_id
    assert runs["backup_ladder"]["environment"] == "backup" and runs["backup_ladder"]["datasets"] == ds("shop")
    assert runs["backup_ladder"]["objects"] == 2 and runs["backup_ladder"]["row_count"] == 50
    assert runs["backup_ladder"]["duration_seconds"] > 0
    assert runs["restore"]["status"] == "failed" and tref("shop.orders") in runs["restore"]["error"]
    assert runs["restore"]["cut"] == before and runs["restore"]["environment"] == "drill"
    actions = query(
        f"select * from `{PROJECT}.envsync_audit.table_actions` where run_id = @r order by table_name", r=restore.run_id
    )
    assert [(a["table_name"], a["status"]) for a in actions] == [
        (tref("shop.customers"), "failed"),
        (tref("shop.orders"), "failed"),
    ]

    latest = {r["dag_id"]: r for r in report_query("last_runs_per_environment")}
    assert latest["backup_ladder"]["status"] == "success" and latest["restore"]["status"] == "failed"
    coverage = {r["table_name"]: r for r in report_query("backup_coverage")}
    assert set(coverage) == {tref("shop.orders"), tref("shop.customers")}
    assert (
        coverage[tref("shop.orders")]["ladder_snapshots_7d"] == 1
        and coverage[tref("shop.orders")]["minutes_since_newest_backup"] <= 5
    )
    assert report_query("failed_verifications") == []  # a missing backup is not a failed verification
