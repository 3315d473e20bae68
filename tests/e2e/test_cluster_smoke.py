"""A real Airflow cluster with the Celery executor end to end: Postgres metadata DB, separate
api-server / scheduler / dag-processor / triggerer processes, tasks run by a Celery worker on the
local Redis. `prod_to_dev_sync` is triggered through the REST API with a conf and its dev tables are
checked; then a two-date backfill of `cleanup_test_environments` is checked run by run (each test
creates its own test-environment datasets, labelled like reseed_environments does). The LocalExecutor
backfill is tests/e2e/test_recovery_drill_backfill.py.

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
UTC = dt.UTC


def _bq(project: str = PROJECT) -> Any:
    from envsync.core.clients import bigquery_client  # the emulators fixture set BIGQUERY_EMULATOR_HOST

    return bigquery_client(project, "US")


def _create_test_env(name: str, expires: dt.datetime, project: str = PROJECT) -> str:
    """A test environment dataset as reseed_environments labels it, expiring at `expires`."""
    from google.cloud import bigquery

    dataset_id = f"test_{name}_sales"
    dataset = bigquery.Dataset(f"{project}.{dataset_id}")
    dataset.location = "US"
    dataset.labels = {"envsync-env": "test", "envsync-test-env": name, "envsync-expires": str(int(expires.timestamp()))}
    _bq(project).create_dataset(dataset, exists_ok=True)
    return dataset_id


def _datasets(project: str = PROJECT) -> set[str]:
    return {d.dataset_id for d in _bq(project).list_datasets(project=project)}


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
            f"{run['dag_run_id']}: task states {states}\n{cluster.tail_logs()}"
        )


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


E2E_PROJECT = "envsync-e2e"
SYNC_DAG = "prod_to_dev_sync"


def _e2e_config(tmp_path: Any) -> Any:
    """The shipped config on a project of this test's own (its own demo prod and state bucket)."""
    import yaml
    from cluster import REPO_ROOT

    data = yaml.safe_load((REPO_ROOT / "config" / "envsync.yaml").read_text())
    data.update(project=E2E_PROJECT, state={"bucket": "envsync-e2e-state"})
    path = tmp_path / "envsync.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    from envsync.core.clients import bigquery_client
    from envsync.core.guard import to_query_parameters

    client = bigquery_client(E2E_PROJECT, "US")
    job = client.query(
        sql, job_config=bigquery.QueryJobConfig(query_parameters=to_query_parameters(params)), job_retry=None
    )
    return [dict(r) for r in job.result()]


def test_celery_cluster_rest_trigger_of_the_sync_then_a_two_date_backfill(
    make_cluster: Callable[..., AirflowCluster], tmp_path: Any
) -> None:
    """Issue #5's end to end: the Celery executor on the local Redis; prod_to_dev_sync triggered through
    the REST API with a conf, the dev tables checked; then a two-date backfill checked run by run."""
    reason = redis_reachable()
    if reason:
        pytest.skip(f"the CeleryExecutor test needs the local Redis: {reason}")
    from envsync.core.clients import bigquery_client
    from envsync.core.window import quarter_window
    from envsync.dev.demo import create_demo_prod

    started = time.monotonic()
    config = _e2e_config(tmp_path)
    client = bigquery_client(E2E_PROJECT, "US")
    for ds in client.list_datasets():
        client.delete_dataset(ds.reference, delete_contents=True, not_found_ok=True)
    create_demo_prod(client, E2E_PROJECT, "US", 2_000)
    cluster = make_cluster(executor="CeleryExecutor", triggerer=True, extra_env={"ENVSYNC_CONFIG": str(config)})
    _assert_loopback_only(cluster)  # the worker and the triggerer serve no logs, bind nothing

    # unpausing schedules the latest Saturday tick; max_active_runs=1 runs it before the REST trigger
    assert cluster.wait_for_dag(SYNC_DAG, timeout=90)["is_paused"] is True
    cluster.unpause(SYNC_DAG)
    conf = {"datasets": ["sales"], "window_quarters": 1, "tables": ["orders", "customers"]}
    triggered = cluster.trigger(SYNC_DAG, conf=conf)  # no logical date, like the UI's trigger button
    assert triggered["conf"] == conf and triggered["logical_date"] is None
    t0 = time.monotonic()
    [run] = cluster.wait_for_runs(SYNC_DAG, 1, timeout=240, run_type="manual")
    sync_seconds = time.monotonic() - t0
    assert run["dag_run_id"] == triggered["dag_run_id"] and run["state"] == "success", cluster.tail_logs()
    states = {
        f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in cluster.task_instances(SYNC_DAG, run["dag_run_id"])
    }
    assert set(states.values()) == {"success"} and "sync_dataset[0]" in states, states
    cluster.wait_for_runs(SYNC_DAG, 2, timeout=240)  # the scheduled run too, before reading dev
    cluster.pause(SYNC_DAG)

    # the dev tables: one quarter (the conf's window) anchored at the trigger time, the rows of prod
    anchor = dt.datetime.fromisoformat(run["run_after"].replace("Z", "+00:00"))
    window = quarter_window(anchor, 1)
    [counts] = _rows(
        f"select (select count(*) from `{E2E_PROJECT}.dev_sales.orders`) as dev, "
        f"(select min(order_date) from `{E2E_PROJECT}.dev_sales.orders`) as first_day, "
        f"(select count(*) from `{E2E_PROJECT}.sales.orders` where order_date >= @start and order_date < @end) as prod",
        start=window.start.date(),
        end=window.end.date() + dt.timedelta(days=1),
    )
    assert counts["dev"] == counts["prod"] > 0 and counts["first_day"] >= window.start.date(), counts
    assert (
        _rows(f"select count(*) as n from `{E2E_PROJECT}.dev_sales.customers`")[0]["n"]
        == _rows(f"select count(*) as n from `{E2E_PROJECT}.sales.customers`")[0]["n"]
    )
    # it really went through Celery: the worker ran the tasks and stored their results in the backend
    statuses = cluster.wait_for(
        lambda: (lambda s: s if s.count("SUCCESS") >= len(states) else None)(
            [row[0] for row in cluster.query("SELECT status FROM celery_taskmeta")]
        ),
        30,
        "the Celery results of the sync's tasks",
    )
    assert "FAILURE" not in statuses
    assert cluster.redis_keys(), f"no broker keys under {cluster.redis_prefix} in Redis db {cluster.redis_db}"

    # a two-date backfill of the daily cleanup, on the same Celery cluster
    _unpause_and_run_latest_tick(cluster)
    tag = uuid.uuid4().hex[:6]
    day1 = (dt.datetime.now(UTC) - dt.timedelta(days=4)).replace(hour=4, minute=0, second=0, microsecond=0)
    day2 = day1 + dt.timedelta(days=1)
    old = _create_test_env(f"e2eold{tag}", day1 - dt.timedelta(hours=1), project=E2E_PROJECT)
    mid = _create_test_env(f"e2emid{tag}", day1 + dt.timedelta(hours=8), project=E2E_PROJECT)
    keep = _create_test_env(f"e2ekeep{tag}", dt.datetime.now(UTC) + dt.timedelta(days=7), project=E2E_PROJECT)
    cluster.pause(DAG_ID)
    cluster.backfill(DAG_ID, day1, day2, extra_args=["--max-active-runs", "1"])
    cluster.unpause(DAG_ID)
    runs = cluster.wait_for_runs(DAG_ID, 2, timeout=120, run_type="backfill")
    assert [r["state"] for r in runs] == ["success", "success"], cluster.tail_logs()
    _assert_all_tasks_succeeded(cluster, runs)
    results = [cluster.xcom(DAG_ID, r["dag_run_id"], TASK_ID) for r in runs]
    assert [dt.datetime.fromisoformat(r["checked_at"]) for r in results] == [day1, day2]
    assert [r["deleted"] for r in results] == [[old], [mid]], results
    assert keep in _datasets(project=E2E_PROJECT)
    print(
        f"\n[e2e] Celery: REST-triggered {SYNC_DAG} done in {sync_seconds:.1f}s (after the scheduled tick); "
        f"test body {time.monotonic() - started:.1f}s (cluster start: {cluster.timings['start']:.1f}s)"
    )
