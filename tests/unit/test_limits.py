"""envsync under BigQuery's rate limits (https://cloud.google.com/bigquery/quotas): pacing per method,
per table and per dataset; rateLimitExceeded retried with backoff and counted; quotaExceeded waiting
as Google advises (https://cloud.google.com/bigquery/docs/troubleshoot-quotas: "wait 10 minutes or
more"); a daily quota failing its object, naming the quota."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import pytest
from google.api_core.exceptions import Forbidden
from jobkit import VirtualClock, backoff_runner, fake_job

from envsync.bigquery.jobs import run_recorded
from envsync.core import limits
from envsync.core.guard import GuardedBigQuery, WriteGuard
from envsync.core.limits import (
    DailyQuotaExceeded,
    Pacer,
    Rates,
    RetryCount,
    WindowLimiter,
    counting,
    quota_kind,
    refusal_reasons,
    rest_method,
)

API = "https://bigquery.googleapis.com/bigquery/v2/projects/acme-dev"


def test_a_window_limiter_admits_count_events_per_window_then_waits_for_the_oldest_to_leave() -> None:
    clock = VirtualClock()
    limiter = WindowLimiter(5, 10.0, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire("t") for _ in range(5)] == [0.0] * 5
    clock.now = 3.0
    assert limiter.acquire("t") == pytest.approx(7.0)  # the first event leaves the window at 10 s
    assert clock.now == pytest.approx(10.0)
    assert limiter.acquire("other") == 0.0  # per key


def test_a_limiter_refuses_a_nonsense_setting_naming_it() -> None:
    with pytest.raises(ValueError, match="count >= 1 and window > 0, got 0 per 10"):
        WindowLimiter(0, 10)


def test_the_pacer_holds_table_updates_to_its_rate_per_table() -> None:
    clock = VirtualClock()
    pacer = Pacer(Rates(table_updates_per_10s=4), clock=clock, sleep=clock.sleep)
    for _ in range(12):  # 12 writes of one table: 4 per 10 s
        pacer.table_update("acme-dev", "dev_sales", "orders")
    assert clock.now == pytest.approx(20.0)
    assert pacer.waited.as_dict()["table"] == 20_000


def test_the_pacer_holds_each_method_to_its_requests_per_second() -> None:
    clock = VirtualClock()
    pacer = Pacer(Rates(api_requests_per_second=50, tables_insert_per_second=5), clock=clock, sleep=clock.sleep)
    for _ in range(100):
        pacer.request("acme-dev", "tables.get")
    assert clock.now == pytest.approx(1.0)  # 100 requests at 50 per second
    for _ in range(10):
        pacer.request("acme-dev", "tables.insert")
    assert clock.now == pytest.approx(2.0)  # tables.insert: 5 per second


@pytest.mark.parametrize(
    ("verb", "path", "method", "dataset", "table"),
    [
        ("POST", "/jobs", "jobs.insert", None, None),
        ("GET", "/jobs/envsync_x_0?location=US", "jobs.get", None, None),
        ("POST", "/jobs/envsync_x_0/cancel", "jobs.cancel", None, None),
        ("GET", "/queries/envsync_x_0?timeoutMs=10000", "jobs.getQueryResults", None, None),
        ("POST", "/queries", "jobs.query", None, None),
        ("POST", "/datasets", "datasets.insert", None, None),
        ("PATCH", "/datasets/dev_sales", "datasets.patch", "dev_sales", None),
        ("GET", "/datasets/dev_sales/tables", "tables.list", "dev_sales", None),
        ("POST", "/datasets/dev_sales/tables", "tables.insert", "dev_sales", None),
        ("GET", "/datasets/dev_sales/tables/orders", "tables.get", "dev_sales", "orders"),
        ("PATCH", "/datasets/dev_sales/tables/orders", "tables.patch", "dev_sales", "orders"),
        ("DELETE", "/datasets/dev_sales/tables/orders", "tables.delete", "dev_sales", "orders"),
        ("GET", "/datasets/dev_sales/tables/orders/data", "tabledata.list", "dev_sales", "orders"),
    ],
)
def test_requests_are_named_by_their_rest_method(
    verb: str, path: str, method: str, dataset: str | None, table: str | None
) -> None:
    call = rest_method(verb, API + path)
    assert call == limits.Request("acme-dev", method, dataset, table)


def test_uploads_are_jobs_insert_and_other_urls_are_not_bigquery_calls() -> None:
    upload = "https://bigquery.googleapis.com/upload/bigquery/v2/projects/acme-dev/jobs?uploadType=resumable"
    assert rest_method("POST", upload).method == "jobs.insert"
    assert rest_method("GET", "https://storage.googleapis.com/storage/v1/b/x/o") is None


def refusal_body(message: str) -> dict[str, Any]:
    """BigQuery's 403 answer to a request over a rate limit (https://cloud.google.com/bigquery/docs/error-messages)."""
    return {
        "error": {
            "code": 403,
            "message": message,
            "errors": [{"reason": "rateLimitExceeded", "domain": "usageLimits", "message": message}],
            "status": "PERMISSION_DENIED",
        }
    }


def test_refusals_are_read_from_bigquerys_error_body() -> None:
    body = refusal_body("Exceeded rate limits: too many table update operations for this table")
    assert refusal_reasons(403, json.dumps(body)) == ["rateLimitExceeded"]
    assert refusal_reasons(404, json.dumps(body)) == []
    assert refusal_reasons(403, b"not json") == []


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Quota exceeded: Your project exceeded quota for free query bytes scanned.", "quota"),
        ("Quota exceeded: Your table exceeded quota for Number of partition modifications per day", "daily"),
        ("Quota exceeded: Your project exceeded quota for copy jobs per project per day.", "daily"),
    ],
)
def test_quota_errors_are_told_apart_daily_or_not(message: str, kind: str) -> None:
    assert quota_kind(Forbidden(message, errors=[{"reason": "quotaExceeded", "message": message}])) == kind
    assert quota_kind(Forbidden("x", errors=[{"reason": "rateLimitExceeded", "message": "x"}])) is None


# ------------------------------------------------------------------------- the job runner's recovery

RATE = Forbidden(
    "Exceeded rate limits: too many table update operations for this table",
    errors=[{"reason": "rateLimitExceeded", "message": "Exceeded rate limits: too many table update operations"}],
)
QUOTA = Forbidden(
    "Quota exceeded: Your project exceeded quota for concurrent queries",
    errors=[
        {"reason": "quotaExceeded", "message": "Quota exceeded: Your project exceeded quota for concurrent queries"}
    ],
)
DAILY = Forbidden(
    "Quota exceeded: Your project exceeded quota for copy jobs per project per day",
    errors=[
        {
            "reason": "quotaExceeded",
            "message": "Quota exceeded: Your project exceeded quota for copy jobs per project per day",
        }
    ],
)
SQL = "delete from `envsync-demo.dev_sales.orders` where true"


def test_a_rate_limited_job_is_retried_with_growing_backoff_and_the_retries_are_in_the_objects_result() -> None:
    client = mock.Mock()
    failed = [mock.Mock(result=mock.Mock(side_effect=RATE)) for _ in range(3)]
    client.query.side_effect = [*failed, fake_job()]
    run, sleeps = backoff_runner(client)

    result = run_recorded(
        {"target": "dev_sales.orders"}, lambda stats: run.run(SQL, key=("o",), stats=stats) and None, deterministic=()
    )

    assert result["status"] == "ok"
    assert result["retries"] == 3 and result["retry_reasons"] == {"rateLimitExceeded job": 3}
    assert len(sleeps) == 3 and sleeps[0] < 1.01 and sleeps[2] > 1.99  # 1 s doubling, jitter in [d/2, d]


def test_quota_exceeded_waits_at_least_ten_minutes_before_its_retry() -> None:
    client = mock.Mock()
    client.query.side_effect = [QUOTA, fake_job()]
    run, sleeps = backoff_runner(client)
    retries = RetryCount()
    with counting(retries):
        run.run(SQL, key=("o",))
    assert len(sleeps) == 1 and 600 <= sleeps[0] <= 660
    assert retries.as_dict() == {"quotaExceeded jobs.insert": 1}
    ids = [c.kwargs["job_id"] for c in client.query.call_args_list]
    assert ids[0].endswith("_0") and ids[1].endswith("_1")


def test_quota_exceeded_gives_up_after_its_waits() -> None:
    client = mock.Mock()
    client.query.side_effect = [QUOTA, QUOTA, QUOTA]
    run, sleeps = backoff_runner(client, quota_retries=2)
    with pytest.raises(Forbidden, match="concurrent queries"):
        run.run(SQL, key=("o",))
    assert len(sleeps) == 2 and all(s >= 600 for s in sleeps)


def test_a_used_up_daily_quota_fails_the_object_at_once_naming_the_quota_and_not_retryable() -> None:
    client = mock.Mock()
    client.query.side_effect = [DAILY]
    run, sleeps = backoff_runner(client)
    result = run_recorded(
        {"target": "dev_sales.orders"}, lambda stats: run.run(SQL, key=("o",)) and None, deterministic=()
    )
    assert result["status"] == "failed" and result["retryable"] is False
    assert "DailyQuotaExceeded" in result["error"] and "copy jobs per project per day" in result["error"]
    assert "resets" in result["error"]
    assert sleeps == [] and client.query.call_count == 1
    assert isinstance(DailyQuotaExceeded("x"), RuntimeError)


# ------------------------------------------------------------------------- the guard paces its writes


def test_every_guarded_write_waits_for_its_tables_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    monkeypatch.setattr(limits, "_pacer", Pacer(Rates(table_updates_per_10s=2), clock=clock, sleep=clock.sleep))
    client = mock.Mock()
    client.query.return_value = fake_job()
    bq = GuardedBigQuery(client, WriteGuard("envsync-demo", ["sales"], ["dev_"]), "US")
    for n in range(5):
        bq.start_query(
            "create or replace table `envsync-demo.dev_sales.orders` as select 1 as id", job_id=f"j{n}", labels={}
        )
    bq.start_query("select 1", job_id="read", labels={})  # reads are not paced
    assert clock.now == pytest.approx(20.0)  # 5 writes of one table at 2 per 10 s
    assert client.query.call_count == 6


# ------------------------------------------------------------------- the client counts refused requests


class _Refusing(BaseHTTPRequestHandler):
    refusals = 2

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if type(self).refusals > 0:
            type(self).refusals -= 1
            body = refusal_body("Exceeded rate limits: too many api requests per user per method for this user_method")
            status = 403
        else:
            body = {
                "kind": "bigquery#dataset",
                "id": "acme-dev:dev_sales",
                "location": "US",
                "datasetReference": {"projectId": "acme-dev", "datasetId": "dev_sales"},
            }
            status = 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_client_of_envsync_counts_the_requests_bigquery_refused_and_the_client_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from envsync.core.clients import bigquery_client

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"127.0.0.1:{server.server_address[1]}")
        client = bigquery_client("acme-dev", "US")
        count = RetryCount()
        with counting(count):
            dataset = client.get_dataset("acme-dev.dev_sales")  # DEFAULT_RETRY backs off and retries
        assert dataset.dataset_id == "dev_sales"
        assert count.as_dict() == {"rateLimitExceeded datasets.get": 2}
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------- the plan states the peak rates


def test_the_plan_states_what_the_run_asks_of_each_limit_and_its_peak_rates() -> None:
    from envsync.bigquery.actions import Action
    from envsync.core.config import RateLimitSettings
    from envsync.sync.plan import DatasetPlan
    from envsync.sync.summary import quota_summary

    def plan(ds: str) -> DatasetPlan:
        actions = [Action(ds, f"t{n}", f"dev_{ds}", "clone_window", "r", est_jobs=4) for n in range(3)]
        actions.append(Action(ds, "v", f"dev_{ds}", "view", "r", est_jobs=2))
        return DatasetPlan(ds, f"dev_{ds}", "US", None, {}, actions, [], {})

    config = mock.Mock(rate_limits=RateLimitSettings(api_requests_per_second=30), sync=mock.Mock(max_concurrent_jobs=4))
    text = quota_summary([plan("sales"), plan("marketing")], config)
    assert "jobs: 28 query jobs, at most 8 in flight (2 dataset task(s) x 4)" in text
    assert "peak at most 30/s per method per task, 60/s for the run (BigQuery: 100/s per user per method)" in text
    assert "at most 4 per table, at most 4 per 10 s (BigQuery: 5 per 10 s, 1,500 per day)" in text
    assert "dataset metadata updates: 4, at most 4 per 10 s per dataset" in text
    assert "REACHABLE" not in text
    loud = mock.Mock(rate_limits=RateLimitSettings(api_requests_per_second=80), sync=mock.Mock(max_concurrent_jobs=4))
    assert "REACHABLE: lower rate_limits.api_requests_per_second" in quota_summary([plan("a"), plan("b")], loud)


def test_rate_limits_above_bigquerys_figures_are_refused_naming_the_key() -> None:
    from pydantic import ValidationError

    from envsync.core.config import RateLimitSettings

    with pytest.raises(ValidationError, match="table_updates_per_10s"):
        RateLimitSettings(table_updates_per_10s=6)
    assert RateLimitSettings().rates() == Rates()


def test_dml_is_paced_at_the_dml_rate_and_ddl_at_the_metadata_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    pacer = Pacer(Rates(table_updates_per_10s=2, dml_per_table_per_10s=10), clock=clock, sleep=clock.sleep)
    monkeypatch.setattr(limits, "_pacer", pacer)
    client = mock.Mock()
    client.query.return_value = fake_job()
    bq = GuardedBigQuery(client, WriteGuard("envsync-demo", ["sales"], ["dev_"]), "US")
    for n in range(10):  # ten DML statements of one table: under 10 per 10 s, no wait
        bq.start_query("insert into `envsync-demo.dev_sales.orders` (id) values (1)", job_id=f"d{n}", labels={})
    assert clock.now == 0.0
    clock.now = 100.0  # the DML leave the metadata window
    for n in range(3):  # three DDL of one table at 2 per 10 s: the third waits
        bq.start_query(
            "create or replace table `envsync-demo.dev_sales.orders` as select 1 as id", job_id=f"c{n}", labels={}
        )
    assert clock.now == pytest.approx(110.0)
    # DML counts toward the metadata updates ("not subject to it"): a DDL right after DML waits for them
    bq.start_query("delete from `envsync-demo.dev_sales.orders` where true", job_id="d-last", labels={})
    before = clock.now
    bq.start_query(
        "create or replace table `envsync-demo.dev_sales.orders` as select 1 as id", job_id="c-last", labels={}
    )
    assert clock.now > before
