"""Jobs take time when a test asks for it, and jobs.cancel stops them (emulators/bqfidelity/latency.py).

BigQuery's jobs are asynchronous: jobs.insert answers while the job is still PENDING or RUNNING
(https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/insert), the client polls jobs.get until
it is DONE (https://cloud.google.com/bigquery/docs/managing-jobs), and jobs.cancel stops a running job,
which ends DONE with errorResult reason "stopped" and without its effects
(https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/cancel). local-bigquery finishes jobs
in well under a second, inside the insert's own answer; with a latency file (devstack.Stack.latency_file,
BQFIDELITY_LATENCY_FILE) every job stays RUNNING for the file's seconds first, so tests can cancel a job,
or kill its client, while it runs. These tests start their own stack with a latency file and check:
- latency 3 s: a query job is RUNNING in the insert's answer (which comes at once), jobs.cancel ends it
  DONE with reason "stopped" within a second, and its CREATE TABLE did not happen;
- the file set to 0: the next job is fast again (DONE in the insert's answer);
- a held job that is not cancelled runs after its latency, and keeps the startTime it got when it
  became RUNNING;
- without a latency file (the session's emulators) a job is DONE in the insert's answer, as before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fidkit import client_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "envsync-demo"
REPO = Path(__file__).resolve().parents[2]


def insert(client: Any, sql: str) -> tuple[Any, float]:
    """jobs.insert of a query job: the job as the insert answered it, and how long the answer took."""
    begun = time.monotonic()
    job = client.query(sql, job_retry=None)
    return job, time.monotonic() - begun


def table_exists(client: Any, table: str) -> bool:
    from google.api_core.exceptions import NotFound

    try:
        client.get_table(table)
    except NotFound:
        return False
    return True


@pytest.fixture
def slow_stack(make_stack: Callable[..., Any], tmp_path: Path) -> tuple[Any, Path, Any]:
    """A stack of its own whose BigQuery emulator reads `latency` (empty at first: no latency)."""
    from google.cloud import bigquery

    from envsync.dev import devstack

    latency = tmp_path / "latency"
    stack = make_stack(latency_file=latency)
    devstack.up(stack, timeout=120)
    client = client_of(stack)
    dataset = bigquery.Dataset(f"{PROJECT}.slow")
    dataset.location = "US"
    client.create_dataset(dataset)
    return stack, latency, client


def test_a_job_is_running_after_insert_and_jobs_cancel_stops_it_before_it_writes(slow_stack: Any) -> None:
    stack, latency, client = slow_stack
    latency.write_text("3\n")

    job, answered_in = insert(client, f"create table `{PROJECT}.slow.cancelled` as select 1 as x")
    assert job.state == "RUNNING" and answered_in < 0.5, (job.state, answered_in)
    assert client.get_job(job.job_id).state == "RUNNING"
    time.sleep(0.3)
    assert client.get_job(job.job_id).state == "RUNNING"

    begun = time.monotonic()
    job.cancel()
    while (got := client.get_job(job.job_id)).state != "DONE" and time.monotonic() - begun < 2:
        time.sleep(0.05)
    stopped_in = time.monotonic() - begun
    assert got.state == "DONE" and stopped_in < 1.0, (got.state, stopped_in)
    assert got.error_result["reason"] == "stopped", got.error_result
    assert "cancel" in got.error_result["message"]
    assert not table_exists(client, f"{PROJECT}.slow.cancelled")
    # stopped well before its 3 s were up, and its startTime is when it became RUNNING
    assert got.started is not None and got.ended is not None
    assert (got.ended - got.started).total_seconds() < 1.5

    latency.write_text("0\n")
    job, answered_in = insert(client, f"create table `{PROJECT}.slow.fast` as select 2 as x")
    assert job.state == "DONE" and job.error_result is None and answered_in < 1.0, (job.state, answered_in)
    assert table_exists(client, f"{PROJECT}.slow.fast")


def test_a_held_job_that_is_not_cancelled_runs_after_its_latency_and_keeps_its_start_time(slow_stack: Any) -> None:
    stack, latency, client = slow_stack
    latency.write_text("1.5")

    job, answered_in = insert(client, f"create table `{PROJECT}.slow.late` as select 3 as x")
    assert job.state == "RUNNING" and answered_in < 0.5, (job.state, answered_in)
    rows = [dict(row) for row in job.result(timeout=30)]
    assert rows == [] and job.state == "DONE" and job.error_result is None
    assert [dict(r) for r in client.query(f"select x from `{PROJECT}.slow.late`", job_retry=None).result()] == [
        {"x": 3}
    ]  # the second job also waited its 1.5 s, and ran
    assert job.started is not None and job.ended is not None
    assert (job.ended - job.started).total_seconds() >= 1.4  # the wait counts as running, as on BigQuery

    latency.write_text("not a number")
    job, answered_in = insert(client, "select 1 as one")
    assert job.state == "DONE" and answered_in < 1.0  # a file that is not a number means no latency
    latency.unlink()
    job, answered_in = insert(client, "select 1 as one")
    assert job.state == "DONE" and answered_in < 1.0  # nor does a missing file


def test_serve_takes_the_latency_file_flag_and_passes_the_rest_to_local_bigquery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "emulators"))
    monkeypatch.setenv("BQFIDELITY_LATENCY_FILE", "")  # restored at teardown
    from bqfidelity.__main__ import _take_latency_file

    rest = _take_latency_file(["serve", "--port", "9050", "--latency-file", "/tmp/a", "--project", "p"])
    assert rest == ["serve", "--port", "9050", "--project", "p"]
    assert os.environ["BQFIDELITY_LATENCY_FILE"] == "/tmp/a"
    assert _take_latency_file(["serve", "--latency-file=/tmp/b"]) == ["serve"]
    assert os.environ["BQFIDELITY_LATENCY_FILE"] == "/tmp/b"


def test_without_a_latency_file_a_job_is_done_in_the_inserts_answer(bq: Any) -> None:
    job, answered_in = insert(bq, "select 1 as one")
    assert job.state == "DONE" and answered_in < 1.0, (job.state, answered_in)
