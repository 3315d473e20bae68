"""A real `airflow backfill create` of recovery_drill over 3 dates, executed by a real scheduler.

The cluster (cluster.py): api-server, scheduler and dag-processor on 127.0.0.1, a fresh Postgres
metadata database on this machine, LocalExecutor. Prod is the small `shop` of tests/integration/
backupkit.py; before the backfill, prod changes three times and a backup is recorded after each change
at a time before each drill's T (the emulator cannot time-travel before a table existed, so backups
are recorded under earlier instants). Each drill run must restore the backup of its own T: the audit
rows (source snapshot, RPO, row counts) prove it.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cluster import AirflowCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from backupkit import PROJECT, make_prod, query, take_backup, write_config  # noqa: E402 (after the sys.path line above)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

DAG_ID = "recovery_drill"
UTC = dt.UTC


def _states(cluster: AirflowCluster, run_id: str) -> dict[str, str]:
    return {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in cluster.task_instances(DAG_ID, run_id)}


def test_backfill_of_three_dates_by_a_real_scheduler(
    make_cluster: Callable[..., AirflowCluster], tmp_path: Path
) -> None:
    started = time.monotonic()
    make_prod()
    config = write_config(tmp_path / "envsync.yaml")
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    dates = [today - dt.timedelta(days=n) for n in (3, 2, 1)]  # the backfill's logical dates
    expected: dict[dt.datetime, dict[str, Any]] = {}
    for i, date in enumerate(dates):
        point = date - dt.timedelta(days=1)  # each drill's T
        query(f"delete from `{PROJECT}.shop.orders` where id > {40 - 5 * (i + 1)}")
        backups = take_backup(config, point - dt.timedelta(hours=2))
        expected[date] = {
            "T": point,
            "orders": 40 - 5 * (i + 1),
            "sources": {m["table"]: m["snapshot"] for m in backups},
        }
    take_backup(config, today - dt.timedelta(hours=23))  # newer than every T: never used by the backfill

    cluster = make_cluster(extra_env={"ENVSYNC_CONFIG": str(config)})
    assert cluster.wait_for_dag(DAG_ID, timeout=90)["is_paused"] is True
    # unpausing schedules the latest tick (today) at once; let it finish so it does not share the
    # drill datasets with the backfill runs (a backfill has its own max_active_runs)
    cluster.unpause(DAG_ID)
    [scheduled] = cluster.wait_for_runs(DAG_ID, 1, timeout=180, run_type="scheduled")
    assert scheduled["state"] == "success", f"{_states(cluster, scheduled['dag_run_id'])}\n{cluster.tail_logs()}"
    cluster.pause(DAG_ID)

    t0 = time.monotonic()
    output = cluster.backfill(DAG_ID, dates[0], dates[-1], extra_args=["--max-active-runs", "1"])
    created = cluster.dag_runs(DAG_ID, run_type="backfill")
    assert [r["logical_date"] for r in created] == [d.strftime("%Y-%m-%dT%H:%M:%SZ") for d in dates], output[-2000:]
    cluster.unpause(DAG_ID)
    runs = cluster.wait_for_runs(DAG_ID, 3, timeout=300, run_type="backfill")
    backfill_seconds = time.monotonic() - t0
    for run in runs:
        states = _states(cluster, run["dag_run_id"])
        assert run["state"] == "success" and set(states.values()) == {"success"}, f"{states}\n{cluster.tail_logs()}"

    for run, date in zip(runs, dates, strict=False):
        rows = {
            r["table_name"]: r
            for r in query(
                f"select * from `{PROJECT}.envsync_audit.recovery_drills` where run_id = @r", r=run["dag_run_id"]
            )
        }
        assert set(rows) == {"orders", "customers"}, run["dag_run_id"]
        for table, row in rows.items():
            assert row["status"] == "ok" and row["point_in_time"] == expected[date]["T"]
            assert row["source_kind"] == "snapshot" and row["source"] == expected[date]["sources"][table]
            assert row["rpo_seconds"] == 2 * 3600.0 and row["rto_seconds"] > 0
            assert row["checksum"] == row["expected_checksum"]
        assert rows["orders"]["row_count"] == expected[date]["orders"] and rows["customers"]["row_count"] == 10
        [audit] = query(f"select * from `{PROJECT}.envsync_audit.runs` where run_id = @r", r=run["dag_run_id"])
        assert (audit["run_type"], audit["status"], audit["dag_id"]) == ("backfill", "success", DAG_ID)
    print(
        f"\n[e2e] recovery_drill backfill of 3 dates: {backfill_seconds:.1f}s from `backfill create` to 3 "
        f"successful runs; test {time.monotonic() - started:.1f}s (cluster start {cluster.timings['start']:.1f}s)"
    )
