"""
### prod_to_dev_sync

Copies the last N quarters (default 2) of every configured prod dataset into its `dev_`-prefixed
dataset, **overwriting dev completely**: prod is the source of truth.

**When:** every Saturday at 02:00 UTC, on demand from the trigger form, and as backfills (a backfill
for an earlier date shifts the window back).

**How:** every table is read as of one instant T (the cut, recorded in the run's manifest), so dev is a
consistent picture of prod. Per table (one `sync_dataset` task per dataset), the cheapest correct
BigQuery operation runs server-side:
partitioned tables are cloned and trimmed to the window, unpartitioned tables with a date column are
copied with a filtered `CREATE TABLE … AS SELECT`, tables without a date column are cloned whole, and
views are re-created on the dev datasets once every table is in place (`sync_views`). Each copy is
verified against prod (rows per partition, schema, partitioning) before it is published; objects that
exist only in dev are dropped. Then `migrate` applies again any schema migration promoted to dev that
prod does not have yet (a migration reaches dev with prod's schema once prod has it) and records dev's
versions in the ledger. Last, `parity` compares dev with prod (see the `parity` DAG): it records the
findings, alerts on drift, and fails the run on structural drift of a table it wrote.

**Projects:** prod is read in `prod.project`; dev's datasets live in `environments.dev.project` (with
an empty prefix there, under prod's dataset names) and its jobs run in `environments.dev.jobs_project`
(both default to the top-level `project`). Views are rewritten to read dev's datasets in dev's project;
a view reading a third project keeps that reference, and the plan and report name it.

**Personal data:** a table with masked columns (its config's `mask`, or a policy tag listed in
`privacy.policy_tags`) is copied with a `CREATE TABLE … AS SELECT` of the masked values instead of a
clone, and verified to hold no prod value in a masked column; the plan and the report list the masked
columns and warn (and alert on Slack) about policy-tagged columns copied unmasked. hash/fake masks need
the salt's environment variable (`privacy.salt_env`) on the workers.

**Params**
- `datasets`: the prod datasets to sync (default: all configured).
- `tables`: only these tables (`orders` or `sales.orders`); empty = all. A filtered run drops nothing.
- `window_quarters`: how many quarters to copy, 1-8 (default from `config/envsync.yaml`).
- `dry_run`: log the plan, estimated bytes billed and BigQuery operations; write nothing.

The window is `[first day of the quarter N-1 quarters before the quarter of A, A)`, where A is the
run's logical date, or the trigger time for a manual run.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from envsync.core.config import MAX_WINDOW_QUARTERS, MIN_WINDOW_QUARTERS, load_config
from envsync.operators.dag_defaults import alert_callbacks, datasets_param, default_args
from envsync.operators.dev_sync import (
    DevSyncReportOperator,
    PlanDevSyncOperator,
    SyncDatasetOperator,
    SyncMigrateOperator,
    SyncViewsOperator,
)
from envsync.operators.parity import RefreshParityOperator

config = load_config()

with DAG(
    dag_id="prod_to_dev_sync",
    schedule="0 2 * * 6",
    start_date=dt.datetime(2026, 1, 3, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "dev"],
    render_template_as_native_obj=True,
    default_args=default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(hours=3)),
    **alert_callbacks(config, on_success=True),
    params={
        "datasets": datasets_param(config, "Prod datasets to copy into dev (default: every configured dataset)."),
        "tables": Param(
            [],
            type="array",
            title="Tables",
            description="Only these tables, as table or dataset.table; empty means all. A filtered run drops nothing.",
            items={"type": "string", "pattern": r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z0-9_][A-Za-z0-9_-]*$(?!\n)"},
            uniqueItems=True,
        ),
        "window_quarters": Param(
            config.environments.dev.window_quarters,
            type="integer",
            title="Window (quarters)",
            description="How many quarters of history to copy, counting the current one.",
            minimum=MIN_WINDOW_QUARTERS,
            maximum=MAX_WINDOW_QUARTERS,
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Log the plan with estimated bytes billed and BigQuery operations; write nothing.",
        ),
    },
) as dag:
    plan = PlanDevSyncOperator(
        task_id="plan",
        datasets="{{ params.datasets }}",
        tables="{{ params.tables }}",
        window_quarters="{{ params.window_quarters }}",
        dry_run="{{ params.dry_run }}",
    )
    sync = SyncDatasetOperator.partial(
        task_id="sync_dataset",
        max_active_tis_per_dagrun=2,
        retry_delay=dt.timedelta(minutes=1),
    ).expand(dataset_ref=plan.output)
    views = SyncViewsOperator(task_id="sync_views")
    migrate = SyncMigrateOperator(task_id="migrate")
    report = DevSyncReportOperator(task_id="report")
    parity = RefreshParityOperator(task_id="parity")
    plan >> sync >> views >> migrate >> report >> parity
