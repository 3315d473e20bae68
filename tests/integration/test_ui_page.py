"""The envsync page's figures, read from audit rows, snapshots and ledgers on the emulators."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.gcp_incompatible]

UI_PROJECT = "envsync-uipage"
BUCKET = "envsync-uipage-state"


@pytest.fixture
def ui_env(emulators: Any, config_file: Any) -> dict[str, Any]:
    """A prod dataset `sales` with one table, an empty audit dataset and a state bucket, in a project of its own."""
    import uikit
    from google.cloud import bigquery

    from envsync.core.clients import bigquery_client, storage_client
    from envsync.core.config import load_config

    config = load_config(config_file(project=UI_PROJECT, prod__datasets=["sales"], state__bucket=BUCKET))
    client = bigquery_client(UI_PROJECT, "US")
    storage = storage_client(UI_PROJECT)
    for name in ("sales", "backup_sales", config.audit.dataset):
        client.delete_dataset(f"{UI_PROJECT}.{name}", delete_contents=True, not_found_ok=True)
    ds = bigquery.Dataset(f"{UI_PROJECT}.sales")
    ds.location = "US"
    client.create_dataset(ds)
    uikit.run_query(client, f"create table `{UI_PROJECT}.sales.orders` as select 1 as id")
    bucket = storage.bucket(BUCKET)
    if not bucket.exists():
        storage.create_bucket(BUCKET)
    for blob in storage.list_blobs(BUCKET):
        blob.delete()
    return {"config": config, "client": client, "storage": storage}


def _reader(env: dict[str, Any]) -> Any:
    from envsync.core.manifest import ManifestStore
    from envsync.ui.data import DashboardReader

    return DashboardReader(env["config"], env["client"], ManifestStore(env["storage"], BUCKET))


def test_the_page_shows_nothing_recorded_yet_without_failing(ui_env: dict[str, Any]) -> None:
    board = _reader(ui_env).read()
    assert [e.state for e in board.environments] == ["grey"] * 6
    assert not board.coverage and not board.drills
    assert not board.parity.present and not board.migrations.present
    assert any("runs does not exist yet" in note for note in board.notes)


def test_figures_match_the_audit_rows_snapshots_and_ledgers(ui_env: dict[str, Any]) -> None:
    import uikit

    from envsync.ui.page import render_page

    client, config = ui_env["client"], ui_env["config"]
    now = dt.datetime.now(dt.UTC)
    uikit.create_audit(client, UI_PROJECT, config.audit.dataset)
    known = uikit.seed_known(
        client,
        ui_env["storage"],
        project=UI_PROJECT,
        audit=config.audit.dataset,
        bucket=BUCKET,
        prod_dataset="sales",
        table="orders",
        now=now,
    )
    board = _reader(ui_env).read(now)
    envs = {e.name: e for e in board.environments}

    dev = envs["dev"]
    assert (dev.state, dev.ok_run.run_id, dev.tables_ok, dev.tables_failed, dev.rows) == (
        "green",
        known.dev_run,
        7,
        0,
        123456,
    )
    assert dev.est_bytes_billed == 5 * 1024**3 and (dev.runs, dev.failed_runs) == (2, 1)
    assert abs((dev.cut - known.dev_cut).total_seconds()) < 1
    assert envs["qa"].seed_version == envs["staging"].seed_version == known.seed_version
    assert envs["qa"].state == "green"
    backup = envs["backup"]
    assert backup.state == "red" and backup.last_run.run_id == known.backup_failed_run
    assert "snapshot failed" in backup.reasons[0]
    assert envs["prodcopy"].state == "grey"

    [cov] = board.coverage
    assert cov.table == "sales.orders" and cov.jobs_today == 7
    snapshots = [p for p in cov.points if p.kind == "snapshot"]
    pinned = [p for p in cov.points if p.kind == "pinned"]
    assert [p.at for p in pinned] == [known.pinned]
    assert sorted(p.at for p in snapshots) == [t for t in known.snapshots if t != known.pinned]
    assert cov.last_run.run_id == known.backup_failed_run and cov.last_status == "failed"
    # the 168 h time-travel window covers the whole week: no gap
    assert not cov.gap

    assert [d.run.run_id for d in board.drills] == known.drill_runs
    failed = [d for d in board.drills if d.failed_tables]
    assert [d.run.run_id for d in failed] == [known.failed_drill_run]
    assert [d.rto_seconds for d in board.drills] == [12.5, 30.0, 8.0]

    html = render_page(board, ui_root="")
    assert f'href="/dags/prod_to_dev_sync/runs/{known.dev_run}"' in html
    assert html.count('class="failed"') == 2  # the failed drill on both plots


def test_time_travel_narrowed_shows_the_gap_between_snapshots(ui_env: dict[str, Any], config_file: Any) -> None:
    import uikit

    from envsync.core.config import load_config

    config = load_config(
        config_file(
            project=UI_PROJECT, prod__datasets=["sales"], state__bucket=BUCKET, backups__restore_time_travel_hours=0
        )
    )
    ui_env = {**ui_env, "config": config}
    now = dt.datetime.now(dt.UTC)
    uikit.create_audit(ui_env["client"], UI_PROJECT, config.audit.dataset)
    known = uikit.seed_known(
        ui_env["client"],
        ui_env["storage"],
        project=UI_PROJECT,
        audit=config.audit.dataset,
        bucket=BUCKET,
        prod_dataset="sales",
        table="orders",
        now=now,
    )
    [cov] = _reader(ui_env).read(now).coverage
    assert cov.gap
    # the largest stretch without a restore point: from the 3-days-old pinned backup to the 1-hour-old snapshot
    assert (cov.gap_from, cov.gap_to) == (known.pinned, known.snapshots[2])


def test_parity_and_migrations_appear_when_their_tables_exist(ui_env: dict[str, Any]) -> None:
    import uikit

    client, config = ui_env["client"], ui_env["config"]
    audit = config.audit.dataset
    now = dt.datetime.now(dt.UTC)
    uikit.create_audit(client, UI_PROJECT, audit, parity=True, migrations=True)
    uikit.seed_known(
        client,
        ui_env["storage"],
        project=UI_PROJECT,
        audit=audit,
        bucket=BUCKET,
        prod_dataset="sales",
        table="orders",
        now=now,
    )
    old = now - dt.timedelta(days=2)
    parity_row = {
        "dag_id": "parity",
        "environment": "dev",
        "dataset": "sales",
        "env_dataset": "dev_sales",
        "detail": None,
    }
    uikit.insert(
        client,
        UI_PROJECT,
        audit,
        "parity",
        [
            {
                **parity_row,
                "checked_at": old,
                "run_id": "scheduled__parity-0",
                "object_name": "orders",
                "finding": "column note missing",
                "status": "drift",
            },
            {
                **parity_row,
                "checked_at": now,
                "run_id": "scheduled__parity-1",
                "object_name": "orders",
                "finding": "column amount: NUMERIC in prod, FLOAT64 here",
                "status": "drift",
            },
            {
                **parity_row,
                "checked_at": now,
                "run_id": "scheduled__parity-1",
                "object_name": "extra",
                "finding": "table only in dev",
                "status": "drift",
            },
            {
                **parity_row,
                "checked_at": now,
                "run_id": "scheduled__parity-1",
                "object_name": "orders",
                "finding": "column flag added by migration 2",
                "status": "expected",
            },
            {
                **parity_row,
                "checked_at": now,
                "run_id": "scheduled__parity-1",
                "object_name": "customers",
                "finding": "rows as of T",
                "status": "ok",
            },
        ],
    )
    uikit.insert(
        client,
        UI_PROJECT,
        audit,
        "migrations",
        [
            {
                "applied_at": old,
                "environment": "qa",
                "version": 1,
                "name": "add_note",
                "phase": "expand",
                "checksum": "a",
                "dag_id": "promote_schema",
                "run_id": "manual__m1",
                "status": "applied",
                "error": None,
            },
            {
                "applied_at": now,
                "environment": "qa",
                "version": 2,
                "name": "add_flag",
                "phase": "expand",
                "checksum": "b",
                "dag_id": "promote_schema",
                "run_id": "manual__m2",
                "status": "failed",
                "error": "bad",
            },
        ],
    )
    board = _reader(ui_env).read(now)
    assert board.parity.present and board.migrations.present
    assert sorted((f.status, f.finding) for f in board.parity_findings) == [
        ("drift", "column amount: NUMERIC in prod, FLOAT64 here"),
        ("drift", "table only in dev"),
        ("expected", "column flag added by migration 2"),
    ]
    envs = {e.name: e for e in board.environments}
    assert envs["dev"].state == "amber"
    assert "drifted: 2 parity findings not explained by a migration" in envs["dev"].reasons
    [qa] = board.migration_status
    assert (qa.version, qa.name, qa.last_version, qa.last_status) == (1, "add_note", 2, "failed")
    assert envs["qa"].migration_version == 1


def test_a_parity_table_without_the_columns_is_named_not_read(ui_env: dict[str, Any]) -> None:
    import uikit

    client, audit = ui_env["client"], ui_env["config"].audit.dataset
    uikit.create_audit(client, UI_PROJECT, audit)
    uikit.run_query(client, f"create table `{UI_PROJECT}.{audit}.parity` (environment string, object_name string)")
    board = _reader(ui_env).read()
    assert not board.parity.present
    assert board.parity.missing_columns == ["checked_at", "dag_id", "run_id", "finding", "status", "detail"]
