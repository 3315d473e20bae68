"""BigQuery's rate limits in the emulator (emulators/bqfidelity/ratelimits.py), each with BigQuery's error.

Limits: https://cloud.google.com/bigquery/quotas; errors: https://cloud.google.com/bigquery/docs/troubleshoot-quotas
("If a BigQuery operation fails because of exceeding a quota, the API returns the HTTP 403 Forbidden
status code"; reason rateLimitExceeded for short-term limits, quotaExceeded for longer-term ones).
The emulator enforces BigQuery's figures by default; these tests start their own stack with the limits
scaled down (devstack.Stack.rate_limits, BQFIDELITY_RATE_LIMITS) so that 2 cores reach them, and check
for each: under the limit nothing is refused, over it the client gets BigQuery's error (exception class,
reason, message), and once the window has passed the same call succeeds. Calls that must see the error
pass retry=None / job_retry=None: the client's DEFAULT_RETRY retries rateLimitExceeded, as it does
against BigQuery.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fidkit import client_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "envsync-demo"
REPO = Path(__file__).resolve().parents[2]
QUOTAS = "https://cloud.google.com/bigquery/quotas"
TROUBLESHOOT = "https://cloud.google.com/bigquery/docs/troubleshoot-quotas"


def stats(url: str, method: str = "GET") -> dict[str, Any]:
    """The emulator's rate limits in force and its refusals so far (DELETE: cleared)."""
    request = urllib.request.Request(f"{url}/bqfidelity/rate-limits", method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def refusal(error: Exception) -> tuple[str, str]:
    """(reason, message) of an API error as the client received it."""
    first = error.errors[0]  # type: ignore[attr-defined]
    return first["reason"], first["message"]


@pytest.fixture
def limited(make_stack: Callable[..., Any], tmp_path: Path) -> Callable[..., tuple[Any, Any]]:
    """Factory: a started stack of its own with these rate limits (BQFIDELITY_RATE_LIMITS), its client
    and a dataset `rl` in it; the stack also reads `tmp_path/latency` (empty: no job latency)."""
    from google.cloud import bigquery

    from envsync.dev import devstack

    def _make(**limits: float) -> tuple[Any, Any]:
        stack = make_stack(rate_limits=json.dumps(limits), latency_file=tmp_path / "latency")
        devstack.up(stack, timeout=120)
        client = client_of(stack)
        dataset = bigquery.Dataset(f"{PROJECT}.rl")
        dataset.location = "US"
        client.create_dataset(dataset)
        stats(stack.bq_url, "DELETE")  # the dataset's creation counted: start from nothing
        return stack, client

    return _make


def test_api_requests_per_user_per_method_are_limited_per_method(limited: Callable[..., tuple[Any, Any]]) -> None:
    """https://cloud.google.com/bigquery/quotas#api_request_quotas: "Maximum number of API requests per
    second per user per method: 100 requests"; "Maximum tables.insert requests per second: 10 requests";
    https://cloud.google.com/bigquery/docs/troubleshoot-quotas#ts-maximum-api-request-limit. Scaled here
    to 5 requests (tables.insert: 2) per 3-second window."""
    from google.api_core.exceptions import Forbidden
    from google.cloud import bigquery

    stack, client = limited(api_requests_per_second=5, tables_insert_per_second=2, api_window_seconds=3)
    client.create_table(bigquery.Table(f"{PROJECT}.rl.t0", schema=[bigquery.SchemaField("x", "INT64")]))
    time.sleep(3.1)

    begun = time.monotonic()
    for _ in range(5):  # under the limit: nothing refused
        client.get_table(f"{PROJECT}.rl.t0", retry=None)
    with pytest.raises(Forbidden) as caught:
        client.get_table(f"{PROJECT}.rl.t0", retry=None)
    assert time.monotonic() - begun < 3, "the burst took longer than the window: the machine is too slow"
    assert caught.value.code == 403
    reason, message = refusal(caught.value)
    assert reason == "rateLimitExceeded"
    assert message.startswith(
        "Exceeded rate limits: too many api requests per user per method for this user_method "
        "(TableService.getTable). For more information, see " + TROUBLESHOOT
    ), message
    assert caught.value.response.json()["error"]["status"] == "PERMISSION_DENIED"
    client.get_dataset(f"{PROJECT}.rl", retry=None)  # another method has its own budget

    # tables.insert has a lower limit of its own
    for name in ("t1", "t2"):
        client.create_table(bigquery.Table(f"{PROJECT}.rl.{name}", schema=[]), retry=None)
    with pytest.raises(Forbidden) as caught:
        client.create_table(bigquery.Table(f"{PROJECT}.rl.t3", schema=[]), retry=None)
    assert "(TableService.insertTable)" in refusal(caught.value)[1]

    time.sleep(3.1)  # the window has passed
    client.get_table(f"{PROJECT}.rl.t0", retry=None)
    client.create_table(bigquery.Table(f"{PROJECT}.rl.t3", schema=[]), retry=None)
    assert stats(stack.bq_url)["refused"] == {"api:bigquery.tables.get": 1, "api:bigquery.tables.insert": 1}


def test_table_metadata_updates_are_limited_per_table_name(limited: Callable[..., tuple[Any, Any]]) -> None:
    """https://cloud.google.com/bigquery/quotas#standard_tables: "Maximum rate of table metadata update
    operations per table: 5 operations per 10 seconds" (tables.insert / patch / update, DDL on tables,
    load, copy and query jobs that write the table, DML, which counts but is "not subject to it");
    #all_tables: "when you ... drop the table and then recreate it, the quota/limit doesn't reset";
    https://cloud.google.com/bigquery/docs/troubleshoot-quotas#ts-maximum-update-table-metadata-limit:
    "Exceeded rate limits: too many table update operations for this table". Scaled here to 2 per 2 s."""
    from google.api_core.exceptions import Forbidden, TooManyRequests
    from google.cloud import bigquery

    stack, client = limited(table_updates=2, partitioned_table_updates=3, metadata_window_seconds=2)
    expected = (
        "Exceeded rate limits: too many table update operations for this table. "
        f"For more information, see {TROUBLESHOOT}"
    )

    # API: tables.insert and tables.patch count; the third update within the window is refused
    table = client.create_table(bigquery.Table(f"{PROJECT}.rl.api", schema=[bigquery.SchemaField("x", "INT64")]))
    table.description = "one"
    table = client.update_table(table, ["description"], retry=None)
    table.description = "two"
    with pytest.raises(Forbidden) as caught:
        client.update_table(table, ["description"], retry=None)
    assert refusal(caught.value) == ("rateLimitExceeded", expected)
    client.create_table(bigquery.Table(f"{PROJECT}.rl.other", schema=[]), retry=None)  # another table: its own
    time.sleep(2.1)
    client.update_table(table, ["description"], retry=None)  # the window has passed

    # jobs: DDL counts, and drop-and-recreate does not reset the count of the name; the job fails
    run = lambda sql: client.query(sql, job_retry=None).result(retry=None)  # noqa: E731
    run(f"create table `{PROJECT}.rl.ddl` (x int64)")
    run(f"drop table `{PROJECT}.rl.ddl`")
    job = client.query(f"create table `{PROJECT}.rl.ddl` (x int64)", job_retry=None)
    with pytest.raises(TooManyRequests) as caught:  # google-cloud-bigquery maps a job's rateLimitExceeded to 429
        job.result(retry=None)
    assert refusal(caught.value)[0] == "rateLimitExceeded" and expected in refusal(caught.value)[1]
    assert job.error_result["reason"] == "rateLimitExceeded" and job.error_result["message"] == expected
    assert job.error_result["location"] == "table.write"
    assert not [t for t in client.list_tables(f"{PROJECT}.rl") if t.table_id == "ddl"]  # nothing created
    time.sleep(2.1)
    run(f"create table `{PROJECT}.rl.ddl` (x int64)")

    # DML counts but is not refused: after it, DDL on the table is
    run(f"insert into `{PROJECT}.rl.ddl` values (1)")
    run(f"insert into `{PROJECT}.rl.ddl` values (2)")  # third update within the window: DML passes
    with pytest.raises(TooManyRequests):
        run(f"alter table `{PROJECT}.rl.ddl` set options (description = 'd')")
    time.sleep(2.1)

    # a copy job into the table counts and fails as a job (the client maps its errorResult to 429)
    run(f"create table `{PROJECT}.rl.source` as select 9 as x")
    run(f"alter table `{PROJECT}.rl.ddl` set options (description = 'd')")
    client.copy_table(f"{PROJECT}.rl.source", f"{PROJECT}.rl.ddl", job_config=_append()).result(retry=None)
    copy = client.copy_table(f"{PROJECT}.rl.source", f"{PROJECT}.rl.ddl", job_config=_append())
    with pytest.raises(TooManyRequests):
        copy.result(retry=None, timeout=30)
    assert copy.error_result["reason"] == "rateLimitExceeded" and copy.error_result["message"] == expected
    counted = client.query(f"select count(*) n from `{PROJECT}.rl.ddl`", job_retry=None).result(retry=None)
    assert [dict(r) for r in counted] == [{"n": 3}]  # 1, 2 and one copy of 9: the refused copy wrote nothing

    # a partitioned table has a higher limit, and its own message
    run(f"create table `{PROJECT}.rl.part` (d date, x int64) partition by d")
    for value in (1, 2):
        run(f"alter table `{PROJECT}.rl.part` set options (description = '{value}')")
    with pytest.raises(TooManyRequests) as caught:
        run(f"alter table `{PROJECT}.rl.part` set options (description = '3')")
    assert "too many partitioned table update operations for this table" in refusal(caught.value)[1]
    assert stats(stack.bq_url)["refused"] == {"table_updates": 5}


def _append() -> Any:
    from google.cloud import bigquery

    return bigquery.CopyJobConfig(write_disposition="WRITE_APPEND")


def test_dataset_metadata_updates_are_limited_per_dataset(limited: Callable[..., tuple[Any, Any]]) -> None:
    """https://cloud.google.com/bigquery/quotas#dataset_limits: "Number of dataset update operations per
    dataset per 10 seconds: 5 operations" (datasets.insert, patch, update, delete; CREATE / ALTER / DROP
    SCHEMA); error "Exceeded rate limits: too many dataset metadata update operations for this dataset"
    (https://cloud.google.com/bigquery/docs/troubleshoot-quotas). Scaled here to 2 per 2 s."""
    from google.api_core.exceptions import Forbidden, TooManyRequests
    from google.cloud import bigquery

    stack, client = limited(dataset_updates=2, metadata_window_seconds=2)
    expected = (
        "Exceeded rate limits: too many dataset metadata update operations for this dataset. "
        f"For more information, see {TROUBLESHOOT}"
    )
    dataset = bigquery.Dataset(f"{PROJECT}.ds")
    dataset.location = "US"
    dataset = client.create_dataset(dataset, retry=None)
    dataset.description = "one"
    dataset = client.update_dataset(dataset, ["description"], retry=None)
    dataset.description = "two"
    with pytest.raises(Forbidden) as caught:
        client.update_dataset(dataset, ["description"], retry=None)
    assert refusal(caught.value) == ("rateLimitExceeded", expected)
    other = client.get_dataset(f"{PROJECT}.rl")
    other.description = "another dataset: its own budget"
    client.update_dataset(other, ["description"], retry=None)

    time.sleep(2.1)
    client.query("alter schema ds set options (description = 'ddl')", job_retry=None).result(retry=None)
    dataset = client.get_dataset(f"{PROJECT}.ds")
    dataset.description = "two"
    client.update_dataset(dataset, ["description"], retry=None)
    job = client.query("alter schema ds set options (description = 'x')", job_retry=None)
    with pytest.raises(TooManyRequests):  # google-cloud-bigquery maps a job's rateLimitExceeded to 429
        job.result(retry=None)
    assert job.error_result["reason"] == "rateLimitExceeded" and job.error_result["message"] == expected
    assert client.get_dataset(f"{PROJECT}.ds").description == "two"
    time.sleep(2.1)
    client.delete_dataset(f"{PROJECT}.ds", retry=None)
    assert stats(stack.bq_url)["refused"] == {"dataset_updates": 2}


def test_a_query_over_the_queue_limit_is_refused(limited: Callable[..., tuple[Any, Any]], tmp_path: Path) -> None:
    """https://cloud.google.com/bigquery/quotas#query_jobs: "Maximum number of queued interactive queries:
    1,000 queries ... Additional interactive queries that exceed this limit return a quota error";
    https://cloud.google.com/bigquery/docs/troubleshoot-quotas#ts-query-queue-limit: "Quota exceeded: Your
    project and region exceeded quota for max number of jobs that can be queued per project." Scaled here
    to 2 queued interactive queries. Locally a query is queued until one of the emulator's 8 job threads
    takes it: a latency of 4 s keeps 8 jobs running, the next ones queued."""
    from google.api_core.exceptions import Forbidden
    from google.cloud import bigquery

    stack, client = limited(queued_interactive_queries=2, queued_batch_queries=1)
    (tmp_path / "latency").write_text("4")
    jobs = [client.query("select 1 as one", job_retry=None) for _ in range(8)]  # running, held
    jobs += [client.query("select 2 as two", job_retry=None) for _ in range(2)]  # queued: the limit
    assert [job.state for job in jobs[-2:]] == ["PENDING", "PENDING"]
    with pytest.raises(Forbidden) as caught:
        client.query("select 3 as three", job_retry=None)
    reason, message = refusal(caught.value)
    assert reason == "quotaExceeded"
    assert "exceeded quota for max number of jobs that can be queued per project" in message, message
    assert message.startswith("Quota exceeded: Your project_and_region exceeded quota"), message
    batch = bigquery.QueryJobConfig(priority="BATCH")  # batch queries have a queue of their own
    jobs.append(client.query("select 4 as four", job_config=batch, job_retry=None))

    (tmp_path / "latency").write_text("0")
    for job in jobs:  # the held jobs end after their 4 s, the queued ones then run at once
        while job.reload() or job.state != "DONE":
            time.sleep(0.1)
    assert [dict(r) for r in client.query("select 5 as five", job_retry=None).result(retry=None)] == [{"five": 5}]
    assert stats(stack.bq_url)["refused"] == {"queued_queries": 1}


def test_concurrent_snapshot_jobs_are_limited(limited: Callable[..., tuple[Any, Any]], tmp_path: Path) -> None:
    """https://cloud.google.com/bigquery/quotas#table_snapshots: "Maximum number of concurrent table
    snapshot jobs: 100 jobs" (copy jobs with operationType SNAPSHOT, CREATE SNAPSHOT TABLE). The pages
    give no error: the emulator fails the job with reason rateLimitExceeded, "Exceeded rate limits: too
    many concurrent table snapshot jobs for this project" (INFERENCE, the shape of BigQuery's other
    concurrency limits). Scaled here to 1 concurrent snapshot job; a latency of 2 s keeps one running."""
    from google.api_core.exceptions import TooManyRequests
    from google.cloud import bigquery

    stack, client = limited(concurrent_snapshot_jobs=1)
    client.query(f"create table `{PROJECT}.rl.base` as select 1 as x", job_retry=None).result(retry=None)
    (tmp_path / "latency").write_text("2")
    snapshot = bigquery.CopyJobConfig(operation_type="SNAPSHOT")
    first = client.copy_table(f"{PROJECT}.rl.base", f"{PROJECT}.rl.snap1", job_config=snapshot)
    assert first.state == "RUNNING"
    second = client.query(f"create snapshot table `{PROJECT}.rl.snap2` clone `{PROJECT}.rl.base`", job_retry=None)
    with pytest.raises(TooManyRequests) as caught:
        second.result(retry=None)
    assert refusal(caught.value) == (
        "rateLimitExceeded",
        f"Exceeded rate limits: too many concurrent table snapshot jobs for this project. "
        f"For more information, see {TROUBLESHOOT}",
    )
    plain = client.copy_table(f"{PROJECT}.rl.base", f"{PROJECT}.rl.copy1")  # not a snapshot: not limited
    first.result(retry=None)
    plain.result(retry=None)
    (tmp_path / "latency").write_text("0")
    client.query(f"create snapshot table `{PROJECT}.rl.snap2` clone `{PROJECT}.rl.base`", job_retry=None).result(
        retry=None
    )
    assert stats(stack.bq_url)["refused"] == {"concurrent_snapshot_jobs": 1}


def test_the_session_emulator_enforces_bigquerys_figures_and_a_burst_under_them_passes(bq: Any, emulators: Any) -> None:
    """https://cloud.google.com/bigquery/quotas: the default limits are BigQuery's; a local burst of 50
    tables.get in well under a second stays under 100 per second per user per method."""
    if emulators is None:
        pytest.skip("emulator only: the limits in force are the emulator's")
    limits = stats(emulators.bq_url)["limits"]
    assert limits == {
        "api_requests_per_second": 100,
        "tables_insert_per_second": 10,
        "projects_list_per_second": 10,
        "jobs_get_per_second": 1000,
        "tabledata_list_per_second": 1000,
        "api_window_seconds": 1,
        "table_updates": 5,
        "partitioned_table_updates": 50,
        "dataset_updates": 5,
        "metadata_window_seconds": 10,
        "queued_interactive_queries": 1000,
        "queued_batch_queries": 20000,
        "concurrent_snapshot_jobs": 100,
    }
    for _ in range(50):
        list(bq.list_datasets(max_results=1, retry=None))  # none refused: retry=None would raise
    assert "api:bigquery.datasets.list" not in stats(emulators.bq_url)["refused"]


def test_the_setting_is_a_json_object_of_known_limits_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """BQFIDELITY_RATE_LIMITS: unset or empty, BigQuery's figures; "off", none; a JSON object overrides
    the limits it names; anything else stops the emulator from starting."""
    monkeypatch.syspath_prepend(str(REPO / "emulators"))
    from bqfidelity import ratelimits

    assert ratelimits.read_setting(None) == ratelimits.DEFAULTS
    assert ratelimits.read_setting(" off ") is None
    assert ratelimits.read_setting('{"table_updates": 1}') == {**ratelimits.DEFAULTS, "table_updates": 1}
    for bad in ('{"tables_updates": 1}', '{"table_updates": 0}', "[1]", "5", '{"table_updates": true}'):
        with pytest.raises(ValueError, match="BQFIDELITY_RATE_LIMITS"):
            ratelimits.read_setting(bad)
    assert ratelimits.method_name("bigquery.jobs.insert") == "JobService.insertJob"
    assert ratelimits.method_name("bigquery.tables.get") == "TableService.getTable"
