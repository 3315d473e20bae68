"""A dev sync that runs into BigQuery's rate limits completes, every object verified, and its report
counts the retries the limits cost.

The emulator of this test enforces BigQuery's table and dataset metadata update limits
(https://cloud.google.com/bigquery/quotas: 5 updates per 10 s per table, 5 per 10 s per dataset;
bqfidelity/ratelimits.py) scaled down to 1 per 5 s, under envsync's own pace (4 per 10 s, the
`rate_limits` defaults), so the sync's writes of a table (clone, trim, patch, rename) are refused with
403 rateLimitExceeded: refused API calls are retried by the google client, refused jobs by envsync's
job runner with exponential backoff and jitter (https://cloud.google.com/bigquery/docs/troubleshoot-quotas).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.gcp_incompatible]

PROJECT = "envsync-demo"
BUCKET = "envsync-ratelimit-state"
LIMITS = {"table_updates": 1, "dataset_updates": 1, "metadata_window_seconds": 5}


def bq() -> Any:
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


@pytest.fixture
def limited(emulators: Any, make_stack: Any, monkeypatch: pytest.MonkeyPatch, config_file: Any) -> tuple[Any, Path]:
    """Emulators of this test's own with scaled-down metadata update limits, the demo prod, a config
    (after the session's emulators, whose variables these replace for the test)."""
    from envsync.dev import devstack
    from envsync.dev.demo import create_demo_prod

    stack = make_stack(rate_limits=json.dumps(LIMITS))
    devstack.up(stack, timeout=120)
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ENVSYNC_MASKING_SALT", "rate-limit-salt-not-a-secret")
    create_demo_prod(bq(), PROJECT, "US", 200, (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date())
    requests.delete(f"{stack.bq_url}/bqfidelity/rate-limits", timeout=10)  # building prod counts for nothing
    path = config_file(state__bucket=BUCKET, alerts__enabled=False)
    monkeypatch.setenv("ENVSYNC_CONFIG", str(path))
    return stack, path


def test_a_sync_that_hits_the_metadata_update_limits_completes_verified_and_counts_its_retries(
    limited: tuple[Any, Path], run_dag: Any
) -> None:
    from envsync.core.clients import storage_client
    from envsync.core.config import load_config
    from envsync.core.manifest import ManifestStore

    stack, path = limited
    dag_run = run_dag("prod_to_dev_sync", None, {}, config_path=path)
    states = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", states

    refused = requests.get(f"{stack.bq_url}/bqfidelity/rate-limits", timeout=10).json()["refused"]
    assert refused.get("table_updates", 0) > 0, requests.get(
        f"{stack.bq_url}/bqfidelity/rate-limits", timeout=10
    ).json()

    report = ManifestStore(storage_client(PROJECT), BUCKET).latest_report("prod_to_dev_sync")
    assert report is not None
    objects = [r for r in report["results"] if r["action"] not in ("drop", "skip", "exclude")]
    assert objects and all(r["status"] == "ok" for r in objects), [(r["target"], r.get("error")) for r in objects]
    summary = report["summary"]
    assert summary["retries"] > 0 and summary["retries"] == sum(int(r.get("retries") or 0) for r in objects)
    assert any(key.startswith("rateLimitExceeded") for key in summary["retry_reasons"]), summary["retry_reasons"]

    # every prod table arrived in dev, with the rows of the window the verification checked
    config = load_config(path)
    client = bq()
    for dataset in config.prod.datasets:
        prod = {t.table_id for t in client.list_tables(f"{PROJECT}.{dataset}")}
        dev = {t.table_id for t in client.list_tables(f"{PROJECT}.{config.env_dataset('dev', dataset)}")}
        excluded = {
            name.split(".", 1)[1] for name, o in config.tables.items() if o.exclude and name.startswith(f"{dataset}.")
        }
        assert prod - excluded <= dev, (dataset, sorted(prod - excluded - dev))
        assert not any(name.endswith("__envsync_stage") for name in dev)
