"""JobRunner: deterministic job ids, labels, and re-attaching to a job an earlier try started."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from google.api_core.exceptions import BadRequest, Conflict, ServiceUnavailable

from envsync.guard import GuardedBigQuery, WriteGuard
from envsync.jobs import JobRunner, JobStats, label_value


def runner_with(client: Any) -> JobRunner:
    guard = WriteGuard("envsync-demo", ["sales"], ["dev_"])
    bq = GuardedBigQuery(client, guard, "US")
    return JobRunner(bq, dag_id="prod_to_dev_sync", run_id="scheduled__2026-11-21T02:00:00+00:00",
                     task_id="sync_dataset", timeout=30)


def fake_job(state: str = "DONE", billed: int = 0) -> mock.Mock:
    job = mock.Mock()
    job.state = state
    job.total_bytes_billed = billed
    return job


SQL = "delete from `envsync-demo.dev_sales.orders` where true"


def test_job_ids_are_deterministic_per_run_and_step() -> None:
    a = runner_with(mock.Mock()).job_id_base("sales", "orders", "clone")
    b = runner_with(mock.Mock()).job_id_base("sales", "orders", "clone")
    c = runner_with(mock.Mock()).job_id_base("sales", "orders", "trim")
    assert a == b != c
    assert a.startswith("envsync_prod_to_dev_sync_") and a.endswith("_sales_orders_clone")


def test_labels_are_valid_bigquery_label_values() -> None:
    labels = runner_with(mock.Mock()).labels
    assert labels["envsync-run"] == "scheduled__2026-11-21t02-00-00-00-00"
    for value in labels.values():
        assert len(value) <= 63 and value == value.lower()
    assert len(label_value("x" * 200)) == 63


def test_a_new_job_is_started_with_attempt_zero_and_counted() -> None:
    client = mock.Mock()
    client.query.return_value = fake_job(billed=123)
    runner = runner_with(client)
    stats = JobStats()
    runner.run(SQL, key=("sales", "orders", "trim"), stats=stats)
    kwargs = client.query.call_args.kwargs
    assert kwargs["job_id"] == runner.job_id_base("sales", "orders", "trim") + "_0"
    assert kwargs["job_config"].labels == runner.labels
    assert (stats.jobs, stats.bytes_billed, stats.job_ids) == (1, 123, [kwargs["job_id"]])


def test_a_retried_task_reattaches_to_its_running_job() -> None:
    client = mock.Mock()
    client.query.side_effect = Conflict("Already Exists: Job")
    running = fake_job(state="RUNNING")
    client.get_job.return_value = running
    runner = runner_with(client)
    runner.run(SQL, key=("sales", "orders", "trim"))
    client.query.assert_called_once()                       # no second job was started
    client.get_job.assert_called_once_with(runner.job_id_base("sales", "orders", "trim") + "_0", location="US")
    running.result.assert_called_once_with(timeout=30)     # it waited for the running job


def test_a_finished_job_with_the_same_id_makes_the_next_attempt() -> None:
    client = mock.Mock()
    new_job = fake_job()
    client.query.side_effect = [Conflict("Already Exists: Job"), new_job]
    client.get_job.return_value = fake_job(state="DONE")
    runner = runner_with(client)
    assert runner.run(SQL, key=("sales", "orders", "trim")) is new_job
    ids = [c.kwargs["job_id"] for c in client.query.call_args_list]
    assert [i.rsplit("_", 1)[1] for i in ids] == ["0", "1"]


def test_a_write_to_prod_never_reaches_the_client() -> None:
    client = mock.Mock()
    with pytest.raises(PermissionError):
        runner_with(client).run("delete from `envsync-demo.sales.orders` where true", key=("x",))
    assert client.method_calls == []


def test_cancel_all_cancels_jobs_in_flight() -> None:
    client = mock.Mock()
    runner = runner_with(client)
    job = fake_job()

    def result(timeout: float) -> None:
        runner.cancel_all()   # as on_kill would, while the job runs

    job.result.side_effect = result
    client.query.return_value = job
    runner.run(SQL, key=("sales", "orders", "trim"))
    client.cancel_job.assert_called_once_with(runner.job_id_base("sales", "orders", "trim") + "_0", location="US")


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (BadRequest("Cannot query over table", errors=[{"reason": "invalidQuery", "message": "m"}]), False),
        (BadRequest("Invalid snapshot time", errors=[{"reason": "invalid", "message": "m"}]), False),
        (BadRequest("no reason given"), False),
        (BadRequest("internal", errors=[{"reason": "jobBackendError", "message": "m"}]), True),
        (ServiceUnavailable("backend down"), True),
        (RuntimeError("network"), True),
    ],
)
def test_a_bigquery_400_fails_its_object_without_retries(error: Exception, retryable: bool) -> None:
    """A 400 that BigQuery answers for the request itself fails the same way on every retry."""
    from envsync.jobs import run_recorded

    def work(stats: Any) -> None:
        raise error

    result = run_recorded({"target": "dev_sales.orders"}, work, deterministic=())
    assert result["status"] == "failed" and result["retryable"] is retryable
    assert type(error).__name__ in result["error"]
