"""Smoke tests of a real Airflow cluster: Postgres metadata DB, separate api-server / scheduler /
dag-processor processes, tasks run by LocalExecutor or by a Celery worker on the local Redis.

The DAG is `cleanup_test_environments` against the BigQuery emulator: each test creates its own
test-environment datasets (labelled like reseed_environments does) and checks what the runs deleted.

Observed with Airflow 3.3.2 (and relied on or asserted below):
- `airflow backfill create` on a paused DAG creates its runs in state `queued`, and they stay queued
  (the scheduler only starts runs of unpaused DAGs; the backfill itself is not paused). Unpause the
  DAG and they run.
- Unpausing a DAG (catchup=False) makes the scheduler create a run for its latest cron tick at once.
  That run would run beside the backfill runs: the DAG's max_active_runs=1 does not count backfill
  runs (a backfill has its own max_active_runs, default 10). So the tests unpause first, let that run
  finish, and pause again before the backfill; unpausing again schedules nothing new.
- `--from-date` / `--to-date` are inclusive; a bare date means its midnight (2026-11-17..2026-11-19
  gives the 04:00 ticks of the 17th and 18th only), so the test passes the ticks themselves.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cluster import AirflowCluster, redis_reachable

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

DAG_ID = "cleanup_test_environments"
TASK_ID = "delete_expired"
PROJECT = "envsync-demo"  # config/envsync.yaml
UTC = dt.timezone.utc


def _bq() -> Any:
    from envsync.clients import bigquery_client  # the emulators fixture set BIGQUERY_EMULATOR_HOST

    return bigquery_client(PROJECT, "US")


def _create_test_env(name: str, expires: dt.datetime) -> str:
    """A test environment dataset as reseed_environments labels it, expiring at `expires`."""
    from google.cloud import bigquery

    dataset_id = f"test_{name}_sales"
    dataset = bigquery.Dataset(f"{PROJECT}.{dataset_id}")
    dataset.location = "US"
    dataset.labels = {"envsync-env": "test", "envsync-test-env": name,
                      "envsync-expires": str(int(expires.timestamp()))}
    _bq().create_dataset(dataset, exists_ok=True)
    return dataset_id


def _datasets() -> set[str]:
    return {d.dataset_id for d in _bq().list_datasets(project=PROJECT)}


def _drop(*dataset_ids: str) -> None:
    for dataset_id in dataset_ids:
        _bq().delete_dataset(f"{PROJECT}.{dataset_id}", delete_contents=True, not_found_ok=True)


def _assert_loopback_only(cluster: AirflowCluster) -> None:
    sockets = cluster.listening_sockets()
    assert ("127.0.0.1", cluster.port) in {(addr, port) for addr, port, _ in sockets}, sockets
    assert {addr for addr, _, _ in sockets} == {"127.0.0.1"}, f"a component listens beyond loopback: {sockets}"


def _assert_all_tasks_succeeded(cluster: AirflowCluster, runs: list[dict[str, Any]]) -> None:
    for run in runs:
        tis = cluster.task_instances(DAG_ID, run["dag_run_id"])
        states = {ti["task_id"]: ti["state"] for ti in tis}
        assert states and set(states.values()) == {"success"}, (
            f"{run['dag_run_id']}: task states {states}\n{cluster.tail_logs()}")


def _unpause_and_run_latest_tick(cluster: AirflowCluster) -> dict[str, Any]:
    """Unpause the DAG (only it: the others stay paused) and wait for the scheduled run this creates.

    It must be done before the test's own runs: the DAG's max_active_runs=1 does not hold a scheduled
    run back from running beside backfill runs, and two cleanups deleting the same dataset at once
    fail on the emulator (DuckLake commit conflict)."""
    assert cluster.wait_for_dag(DAG_ID, timeout=60)["is_paused"] is True  # dags_are_paused_at_creation
    cluster.unpause(DAG_ID)
    [scheduled] = cluster.wait_for_runs(DAG_ID, 1, timeout=120, run_type="scheduled")
    assert scheduled["state"] == "success", cluster.tail_logs()
    _assert_all_tasks_succeeded(cluster, [scheduled])
    return scheduled


def test_backfill_two_days_on_local_executor(airflow_cluster: AirflowCluster) -> None:
    started = time.monotonic()
    cluster = airflow_cluster
    _assert_loopback_only(cluster)
    scheduled = _unpause_and_run_latest_tick(cluster)

    tag = uuid.uuid4().hex[:6]
    day1 = (dt.datetime.now(UTC) - dt.timedelta(days=4)).replace(hour=4, minute=0, second=0, microsecond=0)
    day2 = day1 + dt.timedelta(days=1)
    # expired at both ticks / expired between the two ticks / expires in a week
    old = _create_test_env(f"e2eold{tag}", day1 - dt.timedelta(hours=1))
    mid = _create_test_env(f"e2emid{tag}", day1 + dt.timedelta(hours=8))
    keep = _create_test_env(f"e2ekeep{tag}", dt.datetime.now(UTC) + dt.timedelta(days=7))
    try:
        # a backfill of a paused DAG only queues its runs ...
        cluster.pause(DAG_ID)
        t0 = time.monotonic()
        output = cluster.backfill(DAG_ID, day1, day2, extra_args=["--max-active-runs", "1"])
        backfill_cli = time.monotonic() - t0
        created = cluster.dag_runs(DAG_ID, run_type="backfill")
        assert [r["logical_date"] for r in created] == [
            day1.strftime("%Y-%m-%dT%H:%M:%SZ"), day2.strftime("%Y-%m-%dT%H:%M:%SZ")], output[-2000:]
        cluster.wait_scheduler_heartbeats(3)
        assert {r["state"] for r in cluster.dag_runs(DAG_ID, run_type="backfill")} == {"queued"}

        # ... which run once it is unpaused, one after the other (--max-active-runs 1)
        cluster.unpause(DAG_ID)
        t0 = time.monotonic()
        runs = cluster.wait_for_runs(DAG_ID, 2, timeout=120, run_type="backfill")
        run_time = time.monotonic() - t0
        assert [r["state"] for r in runs] == ["success", "success"], cluster.tail_logs()
        _assert_all_tasks_succeeded(cluster, runs)
        assert runs[0]["end_date"] <= runs[1]["start_date"]
        # unpausing again scheduled nothing new: the latest tick had run already
        assert {r["dag_run_id"] for r in cluster.dag_runs(DAG_ID)} == {
            scheduled["dag_run_id"], *(r["dag_run_id"] for r in runs)}

        # each run judged expiry at its own logical date (the cron tick)
        results = [cluster.xcom(DAG_ID, r["dag_run_id"], TASK_ID) for r in runs]
        assert [dt.datetime.fromisoformat(r["checked_at"]) for r in results] == [day1, day2]
        assert [r["deleted"] for r in results] == [[old], [mid]], results
        remaining = _datasets()
        assert keep in remaining and old not in remaining and mid not in remaining
    finally:
        _drop(old, mid, keep)
    print(f"\n[e2e] backfill CLI {backfill_cli:.1f}s, 2 backfill runs done {run_time:.1f}s after unpause, "
          f"test body {time.monotonic() - started:.1f}s (cluster start: {cluster.timings['start']:.1f}s)")


def test_rest_trigger_on_celery_executor(make_cluster: Callable[..., AirflowCluster]) -> None:
    reason = redis_reachable()
    if reason:
        pytest.skip(f"the CeleryExecutor test needs the local Redis: {reason}")
    started = time.monotonic()
    cluster = make_cluster(executor="CeleryExecutor", triggerer=True)
    _assert_loopback_only(cluster)  # the worker and the triggerer serve no logs, bind nothing
    _unpause_and_run_latest_tick(cluster)  # already through Celery
    tag = uuid.uuid4().hex[:6]
    expired = _create_test_env(f"e2ecel{tag}", dt.datetime.now(UTC) - dt.timedelta(hours=1))
    try:
        conf = {"requested_by": "e2e", "tag": tag}
        triggered = cluster.trigger(DAG_ID, conf=conf)  # no logical date, like the UI's trigger button
        assert triggered["conf"] == conf and triggered["logical_date"] is None

        t0 = time.monotonic()
        [run] = cluster.wait_for_runs(DAG_ID, 1, timeout=120, run_type="manual")
        run_time = time.monotonic() - t0
        assert run["dag_run_id"] == triggered["dag_run_id"] and run["state"] == "success", cluster.tail_logs()
        assert run["conf"] == conf
        _assert_all_tasks_succeeded(cluster, [run])
        result = cluster.xcom(DAG_ID, run["dag_run_id"], TASK_ID)
        assert expired in result["deleted"] and expired not in _datasets()
        # a manual run without logical date judges expiry at its trigger time (run_after)
        assert dt.datetime.fromisoformat(result["checked_at"]) == dt.datetime.fromisoformat(
            run["run_after"].replace("Z", "+00:00"))

        # it really went through Celery: the worker ran it and stored its result in the result backend
        [ti] = cluster.task_instances(DAG_ID, run["dag_run_id"])
        assert ti["executor"] is None and ti["queue"] == "default"  # the default executor: Celery
        # the worker records the Celery task's end shortly after the task instance reported success
        def celery_statuses() -> list[str] | None:
            statuses = [row[0] for row in cluster.query("SELECT status FROM celery_taskmeta")]
            return statuses if statuses.count("SUCCESS") >= 2 or "FAILURE" in statuses else None

        statuses = cluster.wait_for(celery_statuses, 30, "2 finished Celery tasks (scheduled + manual run)")
        assert set(statuses) == {"SUCCESS"}, statuses
        assert cluster.redis_keys(), f"no broker keys under {cluster.redis_prefix} in Redis db {cluster.redis_db}"
        worker_log = cluster.log_path("celery-worker").read_text(errors="replace")
        assert run["dag_run_id"] in worker_log and "succeeded" in worker_log, worker_log[-3000:]
    finally:
        _drop(expired)
    print(f"\n[e2e] celery run done {run_time:.1f}s after trigger, test body {time.monotonic() - started:.1f}s "
          f"(cluster start: {cluster.timings['start']:.1f}s)")
