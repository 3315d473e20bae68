"""The envsync page in a real browser: a real api-server serves it, figures match the audit rows the
test wrote, its runs link into the Airflow UI, and the page is captured for the README.

Chromium is Debian's (`apt-get install -y chromium fonts-dejavu-core`), driven by Playwright; without
it the tests are skipped with the reason. ENVSYNC_SCREENSHOT_DIR=docs writes the pictures to docs/
(`make screenshots`); by default they go to the test's temporary directory.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from cluster import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.gcp_incompatible]

PROJECT = "envsync-uipage-e2e"
BUCKET = "envsync-uipage-e2e-state"
FAILED_DAYS = (6, 13)


def _config(tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO_ROOT / "config" / "envsync.yaml").read_text())
    data["project"] = PROJECT
    data["prod"]["datasets"] = ["sales"]
    data["state"]["bucket"] = BUCKET
    path = tmp_path / "envsync.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _screenshot_dir(tmp_path: Path) -> Path:
    folder = os.environ.get("ENVSYNC_SCREENSHOT_DIR")
    return (REPO_ROOT / folder if folder and not os.path.isabs(folder) else Path(folder)) if folder else tmp_path


def test_the_envsync_page_in_the_airflow_ui(make_cluster: Any, browser: Any, tmp_path: Path) -> None:
    import uikit
    from browser import capture_trigger_form, param_titles, signed_in_context
    from google.cloud import bigquery
    from playwright.sync_api import expect

    from envsync.core.clients import bigquery_client, storage_client

    client, storage = bigquery_client(PROJECT, "US"), storage_client(PROJECT)
    for name in ("sales", "backup_sales", "envsync_audit"):
        client.delete_dataset(f"{PROJECT}.{name}", delete_contents=True, not_found_ok=True)
    ds = bigquery.Dataset(f"{PROJECT}.sales")
    ds.location = "US"
    client.create_dataset(ds)
    uikit.run_query(client, f"create table `{PROJECT}.sales.orders` as select 1 as id")
    if not storage.bucket(BUCKET).exists():
        storage.create_bucket(BUCKET)
    uikit.create_audit(client, PROJECT, "envsync_audit")

    cluster = make_cluster(extra_env={"ENVSYNC_CONFIG": str(_config(tmp_path))})
    details = cluster.wait_for_dag("prod_to_dev_sync", timeout=180)
    run_id = cluster.trigger("prod_to_dev_sync", conf={"dry_run": True})["dag_run_id"]  # paused: stays queued
    now = dt.datetime.now(dt.UTC)
    known = uikit.seed_known(
        client,
        storage,
        project=PROJECT,
        audit="envsync_audit",
        bucket=BUCKET,
        prod_dataset="sales",
        table="orders",
        now=now,
        dev_run=run_id,
    )
    drills = uikit.seed_drills(client, PROJECT, "envsync_audit", now=now, days=20, failed=FAILED_DAYS)

    # without a signed-in user the page is refused
    assert httpx.get(f"{cluster.base_url}/envsync/", timeout=30).status_code in (401, 403)

    context = signed_in_context(browser, cluster.base_url, cluster.token(), height=1100)
    page = context.new_page()
    started = time.monotonic()
    page.goto("/envsync/")
    print(f"\n[ui] first load (queries included) {time.monotonic() - started:.2f}s")
    started = time.monotonic()
    page.reload()
    print(f"[ui] cached load {time.monotonic() - started:.2f}s")

    dev = page.locator('tr.env[data-env="dev"]')
    expect(dev).to_have_attribute("data-state", "green")
    expect(dev.locator("td.rows")).to_have_text("123,456")
    expect(dev.locator("td.tables-ok")).to_have_text("7")
    expect(dev.locator("td.bytes")).to_have_text("5.0 GB")
    expect(page.locator('tr.env[data-env="backup"]')).to_have_attribute("data-state", "red")
    expect(page.locator('tr.env[data-env="backup"]')).to_contain_text("snapshot failed")
    expect(page.locator('tr.env[data-env="qa"] td.version')).to_contain_text(f"seed {known.seed_version[:12]}")
    orders = page.locator('tr.cov[data-table="sales.orders"]')
    expect(orders.locator("td.snapshots")).to_have_text("3")
    expect(orders.locator("td.pinned")).to_have_text("1")
    expect(orders.locator("td.jobs")).to_contain_text("7/50")
    expect(orders.locator("svg.timeline rect.snapshot")).to_have_count(3)
    failed_runs = 1 + len(FAILED_DAYS)  # seed_known's failed drill and the failed daily drills
    expect(page.locator("svg.rto .failed")).to_have_count(failed_runs)
    expect(page.locator("svg.rpo .failed")).to_have_count(failed_runs)
    expect(page.locator("svg.rto circle.ok")).to_have_count(len(known.drill_runs) + len(drills) - failed_runs)
    expect(page.locator("#parity")).to_have_count(0)  # no parity table: the section says so
    expect(page.get_by_text("shown once envsync_audit.parity exists")).to_be_visible()

    shots = _screenshot_dir(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "envsync-page.png"), full_page=True, animations="disabled")

    # from the Airflow UI's navigation (Browse > envsync: the plugin's external view), then through to the run
    page.goto("/")
    page.get_by_role("button", name=re.compile(r"^\s*Browse\s*$")).first.click(timeout=60_000)
    page.get_by_role("menuitem", name=re.compile(r"^\s*envsync\s*$")).first.click(timeout=60_000)
    expect(page).to_have_url(re.compile(r"/plugin/envsync(/.*)?$"), timeout=60_000)
    frame = page.frame_locator("iframe").first
    expect(frame.locator("h1")).to_contain_text("every environment at a glance", timeout=60_000)
    encoded = quote(run_id, safe="")
    frame.locator(f'tr.env[data-env="dev"] a.run-link[href$="/runs/{encoded}"]').first.click()
    expect(page).to_have_url(re.compile(rf"/dags/prod_to_dev_sync/runs/{re.escape(encoded)}$"), timeout=60_000)
    expect(page.get_by_text(run_id).first).to_be_visible(timeout=60_000)

    # the trigger form of the same cluster, captured for the README as well
    png = capture_trigger_form(context.new_page(), "prod_to_dev_sync", param_titles(details))
    (shots / "trigger-form.png").write_bytes(png)
    assert (shots / "envsync-page.png").stat().st_size > 20_000 and len(png) > 20_000
