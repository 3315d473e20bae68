"""The demo and the envsync page on the split-projects example (config/examples/split-projects.yaml).

The demo's entry point (what `DEMO_CONFIG=config/examples/split-projects.yaml make demo` runs, through
ENVSYNC_CONFIG) creates the demo prod in the example's prod project; prod_to_dev_sync then writes dev
in its project; the page reads the audit dataset in the audit project and names every project.
Marked gcp_incompatible: needs several sandbox projects (acme-prod, acme-nonprod, acme-backup are
namespaces of the local emulator).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.gcp_incompatible]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config" / "examples" / "split-projects.yaml"
A = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.UTC)
ROWS = 1000


def _datasets(config: Any) -> dict[str, set[str]]:
    from envsync.core.clients import bigquery_client

    return {
        project: {d.dataset_id for d in bigquery_client(project, "US").list_datasets(project)}
        for project in config.projects()
    }


def _clear(config: Any) -> None:
    """Drop every dataset of the example's projects and empty its state bucket (they hold only this test's)."""
    from envsync.core.clients import bigquery_client, storage_client

    for project in config.projects():
        client = bigquery_client(project, "US")
        for dataset in client.list_datasets(project):
            client.delete_dataset(f"{project}.{dataset.dataset_id}", delete_contents=True, not_found_ok=True)
    storage = storage_client(config.state_project)
    bucket = storage.bucket(config.state.bucket)
    if bucket.exists():
        for blob in storage.list_blobs(config.state.bucket):
            blob.delete()


@pytest.fixture
def example(emulators: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from envsync.core.config import load_config

    config = load_config(EXAMPLE)
    _clear(config)
    monkeypatch.setenv("ENVSYNC_CONFIG", str(EXAMPLE))
    yield config
    _clear(config)


def test_demo_config_names_a_file_that_exists() -> None:
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "demo.sh")],
        env={**os.environ, "DEMO_CONFIG": "config/examples/no-such.yaml"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "DEMO_CONFIG=config/examples/no-such.yaml: no such file" in done.stderr


def test_the_demo_on_the_example_puts_prod_dev_and_the_audit_where_it_says(
    example: Any, run_dag: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from envsync.dev import demo
    from envsync.ui.app import read_dashboard

    assert demo.main(["--rows", str(ROWS), "--ref-date", "2026-11-21"]) == 0
    printed = capsys.readouterr().out
    assert "demo prod in project acme-prod (US)" in printed
    assert "dev in acme-nonprod" in printed and "backup in acme-backup" in printed
    assert _datasets(example) == {"acme-prod": {"sales", "marketing"}, "acme-nonprod": set(), "acme-backup": set()}

    dag_run = run_dag("prod_to_dev_sync", A, config_path=EXAMPLE)
    states = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", states
    found = _datasets(example)
    assert found["acme-prod"] == {"sales", "marketing"}  # prod holds nothing envsync made
    assert found["acme-nonprod"] == {"dev_sales", "dev_marketing", "envsync_audit"}
    assert found["acme-backup"] == set()

    from envsync.core.clients import bigquery_client

    client = bigquery_client("acme-nonprod", "US")
    orders = client.get_table("acme-nonprod.dev_sales.orders")
    assert 0 < (orders.num_rows or 0) < ROWS  # the dev window of the demo's 730 days
    view = client.get_table("acme-nonprod.dev_marketing.campaign_revenue")
    assert "acme-prod" not in (view.view_query or "")

    board = read_dashboard()
    assert board.audit_dataset == "acme-nonprod.envsync_audit"
    assert board.projects["prod"] == "acme-prod" and board.projects["dev"] == "acme-nonprod"
    assert board.projects["backup"] == board.projects["drill"] == "acme-backup"
    dev = next(e for e in board.environments if e.name == "dev")
    assert (dev.state, dev.project, dev.last_status) == ("green", "acme-nonprod", "success")
    assert dev.rows and dev.rows > 0
