"""JobRunner: deterministic job ids, labels, and re-attaching to a job an earlier try started."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from google.api_core.exceptions import BadRequest, Conflict, ServiceUnavailable
from jobkit import backoff_runner, fake_job

from envsync.bigquery.jobs import JobRunner, JobStats, label_value
from envsync.core.guard import GuardedBigQuery, WriteGuard


def runner_with(client: Any) -> JobRunner:
    guard = WriteGuard("envsync-demo", ["sales"], ["dev_"])
    bq = GuardedBigQuery(client, guard, "US")
    return JobRunner(
        bq, dag_id="prod_to_dev_sync", run_id="scheduled__2026-11-21T02:00:00+00:00", task_id="sync_dataset", timeout=30
    )


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
    client.query.assert_called_once()  # no second job was started
    client.get_job.assert_called_once_with(runner.job_id_base("sales", "orders", "trim") + "_0", location="US")
    running.result.assert_called_once_with(timeout=30)  # it waited for the running job


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
        runner.cancel_all()  # as on_kill would, while the job runs

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
    from envsync.bigquery.jobs import run_recorded

    def work(stats: Any) -> None:
        raise error

    result = run_recorded({"target": "dev_sales.orders"}, work, deterministic=())
    assert result["status"] == "failed" and result["retryable"] is retryable
    assert type(error).__name__ in result["error"]


# ------------------------------------------------------------------ retries with backoff, job timeouts
# https://cloud.google.com/bigquery/docs/error-messages, https://cloud.google.com/bigquery/docs/troubleshoot-quotas

import concurrent.futures  # noqa: E402 (the imports of the tests of this section)

from google.api_core.exceptions import Forbidden, InternalServerError, NotFound, TooManyRequests  # noqa: E402 (the imports of the tests of this section)

from envsync.bigquery.jobs import JobTimeoutError, is_transient_job_error, run_recorded  # noqa: E402 (the imports of the tests of this section)

TABLE_UPDATES = Forbidden(
    "Exceeded rate limits: too many table update operations for this table",
    errors=[
        {
            "reason": "rateLimitExceeded",
            "message": "Exceeded rate limits: too many table update operations for this table",
        }
    ],
)


def attempt_numbers(client: Any) -> list[str]:
    return [c.kwargs["job_id"].rsplit("_", 1)[1] for c in client.query.call_args_list]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TABLE_UPDATES, True),
        (TooManyRequests("rate", errors=[{"reason": "rateLimitExceeded", "message": "Exceeded rate limits"}]), True),
        (InternalServerError("backend", errors=[{"reason": "backendError", "message": "m"}]), True),
        (InternalServerError("internal", errors=[{"reason": "internalError", "message": "m"}]), True),
        (BadRequest("table unavailable", errors=[{"reason": "tableUnavailable", "message": "m"}]), True),
        (
            BadRequest(
                "Resources exceeded",
                errors=[{"reason": "resourcesExceeded", "message": "Resources exceeded: transient, try again later"}],
            ),
            True,
        ),
        (
            BadRequest(
                "Resources exceeded during query execution: The query could not be executed in the allotted memory",
                errors=[{"reason": "resourcesExceeded", "message": "allotted memory"}],
            ),
            False,
        ),
        (BadRequest("bad", errors=[{"reason": "invalidQuery", "message": "Syntax error"}]), False),
        (Forbidden("quota", errors=[{"reason": "quotaExceeded", "message": "Quota exceeded: daily"}]), False),
        (RuntimeError("not an API error"), False),
    ],
)
def test_which_job_errors_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient_job_error(error) is transient


def test_a_finished_job_that_hit_too_many_table_updates_is_retried_with_backoff_under_the_next_id() -> None:
    client = mock.Mock()
    failed, ok = fake_job(), fake_job(billed=5)
    failed.result.side_effect = TABLE_UPDATES
    client.query.side_effect = [failed, failed, ok]
    runner, sleeps = backoff_runner(client)
    stats = JobStats()
    assert runner.run(SQL, key=("sales", "orders", "trim"), stats=stats) is ok
    assert attempt_numbers(client) == ["0", "1", "2"]
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # 1 s, 2 s, with jitter
    assert stats.jobs == 1 and stats.job_ids[0].endswith("_2")


def test_a_transient_error_when_starting_the_job_is_retried_under_the_same_id() -> None:
    client = mock.Mock()
    ok = fake_job()
    client.query.side_effect = [InternalServerError("backend", errors=[{"reason": "backendError", "message": "m"}]), ok]
    runner, sleeps = backoff_runner(client)
    assert runner.run(SQL, key=("sales", "orders", "trim")) is ok
    assert attempt_numbers(client) == ["0", "0"] and len(sleeps) == 1


def test_a_404_straight_after_a_conflict_waits_for_the_job_to_become_visible() -> None:
    client = mock.Mock()
    running = fake_job(state="RUNNING")
    client.query.side_effect = Conflict("Already Exists: Job")
    client.get_job.side_effect = [NotFound("Not found: Job"), running]
    runner, sleeps = backoff_runner(client)
    runner.run(SQL, key=("sales", "orders", "trim"))
    assert attempt_numbers(client) == ["0", "0"] and len(sleeps) == 1
    running.result.assert_called_once_with(timeout=30)


def test_retries_stop_at_the_budget_and_the_table_fails_as_retryable() -> None:
    client = mock.Mock()
    failed = fake_job()
    failed.result.side_effect = TABLE_UPDATES
    client.query.return_value = failed
    runner, sleeps = backoff_runner(client, max_retries=3)

    def work(stats: Any) -> None:
        runner.run(SQL, key=("sales", "orders", "trim"), stats=stats)

    result = run_recorded({"target": "dev_sales.orders"}, work, deterministic=())
    assert client.query.call_count == 4 and len(sleeps) == 3
    assert all(b > a for a, b in zip(sleeps, sleeps[1:], strict=False))  # exponential
    assert result["status"] == "failed" and result["retryable"] is True
    assert "too many table update operations" in result["error"]


def test_the_total_backoff_is_bounded_by_the_deadline() -> None:
    client = mock.Mock()
    failed = fake_job()
    failed.result.side_effect = InternalServerError("backend", errors=[{"reason": "backendError", "message": "m"}])
    client.query.return_value = failed
    runner, sleeps = backoff_runner(client, max_retries=100, deadline=20)
    with pytest.raises(InternalServerError):
        runner.run(SQL, key=("sales", "orders", "trim"))
    assert sum(sleeps) <= 20 and len(sleeps) >= 3 and max(sleeps) <= 32


def test_a_deterministic_error_is_not_retried() -> None:
    client = mock.Mock()
    failed = fake_job()
    failed.result.side_effect = BadRequest("Syntax error", errors=[{"reason": "invalidQuery", "message": "m"}])
    client.query.return_value = failed
    runner, sleeps = backoff_runner(client)
    result = run_recorded(
        {"target": "dev_sales.orders"}, lambda stats: runner.run(SQL, key=("x",), stats=stats), deterministic=()
    )
    assert client.query.call_count == 1 and sleeps == []
    assert result["retryable"] is False


def test_a_persisting_table_unavailable_400_leaves_the_table_retryable() -> None:
    error = BadRequest("unavailable", errors=[{"reason": "tableUnavailable", "message": "m"}])
    result = run_recorded({"target": "dev_sales.orders"}, lambda stats: (_ for _ in ()).throw(error), deterministic=())
    assert result["retryable"] is True


def test_every_query_job_carries_the_runners_timeout_server_side() -> None:
    client = mock.Mock()
    client.query.return_value = fake_job()
    runner_with(client).run(SQL, key=("sales", "orders", "trim"))
    config = client.query.call_args.kwargs["job_config"]
    assert config.to_api_repr()["jobTimeoutMs"] == "30000"


def test_a_job_the_worker_stops_waiting_for_is_cancelled() -> None:
    client = mock.Mock()
    job = fake_job(state="RUNNING")
    job.result.side_effect = concurrent.futures.TimeoutError()
    client.query.return_value = job
    runner = runner_with(client)
    with pytest.raises(JobTimeoutError, match="did not finish within 30 s"):
        runner.run(SQL, key=("sales", "orders", "trim"))
    client.cancel_job.assert_called_once_with(runner.job_id_base("sales", "orders", "trim") + "_0", location="US")


def test_load_jobs_carry_the_server_side_timeout() -> None:
    from google.cloud import bigquery

    from envsync.core.guard import TableRef

    client = mock.Mock()
    bq = GuardedBigQuery(client, WriteGuard("envsync-demo", ["sales"], ["dev_"]), "US")
    config = bigquery.LoadJobConfig(source_format="PARQUET")
    bq.load_table_from_uri(
        ["gs://b/x"], TableRef("envsync-demo", "dev_sales", "orders"), config, job_id="j", job_timeout_ms=60_000
    )
    assert client.load_table_from_uri.call_args.kwargs["job_config"].to_api_repr()["jobTimeoutMs"] == "60000"
