"""
### backup_ladder

Keeps **point-in-time backups of every prod table** on an exponential ladder, in `backup_<ds>`; with
`backups.environments: [prod, staging]` also of every staging table, in `backup_staging_<ds>` (the same
rungs, its own pinned backups and its own ledger of snapshot jobs), so rollbacks can be tried on staging.
A staging table re-created by a reseed is a new base: it is snapshotted at the next run, and the
snapshots of its earlier life stay restorable.

**Projects:** prod's tables are read in prod's project (staging's in staging's); the `backup_` datasets
live in `environments.backup.project` (default: the top-level project), in the same location as their
source dataset (BigQuery snapshots only within one region: a backup dataset elsewhere fails the run
before any job), and the snapshot jobs run in the backup environment's `jobs_project`.

**When:** hourly (each run backs up the state at its logical date, the top of the hour), and on demand.

**How:**
1. `plan` fixes T (the run's hour; for a manual pin, now), checks it is inside prod's time-travel
   window, and decides per table whether to take a snapshot: at most one ladder snapshot per hour, and
   never more than BigQuery's 50 snapshot jobs per table per day (the log says how many are used).
   The rungs under an hour (default 1m, 2m, 5m, 10m) are served by time travel: they are recorded as
   restore points and cost nothing.
2. `backup` (one task per dataset) takes each snapshot `backup_<ds>.<table>__<YYYYMMDDTHHMMZ>` as of T,
   sets its expiration, computes its row count and checksum in BigQuery and records a manifest (rows,
   checksum, schema, partitioning) in the state bucket. With `backups.export.enabled`, the day's first
   snapshot (the daily rung) is also exported to `gs://<bucket>/backups/<ds>/<table>/<date>/` (Parquet
   or Avro) for retention beyond time travel. Then it **thins** the snapshots the ladder no longer
   keeps (default rungs 60m, 3h, 6h, 1d, then one per day for 7 days, from `backups.rungs` /
   `backups.daily_days`). Pinned backups are never thinned.
3. `report` logs what was taken, exported and thinned.

**Manual backup:** trigger with a `reason`: every selected table gets a **pinned** snapshot of its
current state, kept until its own expiry (`expiry_days`) whatever the ladder does.

**Params**
- `reason`: empty for a ladder run; any text makes a pinned manual backup and is recorded with it.
- `expiry_days`: how long a pinned backup is kept (default `backups.pinned_expiry_days`).
- `datasets`: the prod datasets (default: all configured).
- `environments`: prod and/or staging (default: `backups.environments`).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from envsync.core.config import load_config
from envsync.operators.backups import BackupDatasetOperator, PlanBackupOperator
from envsync.operators.common import RunReportOperator
from envsync.operators.dag_defaults import alert_callbacks, datasets_param, default_args

config = load_config()

with DAG(
    dag_id="backup_ladder",
    schedule="0 * * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "backup"],
    render_template_as_native_obj=True,
    default_args=default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(minutes=50)),
    **alert_callbacks(config, on_success=False),
    params={
        "reason": Param(
            "",
            type="string",
            maxLength=500,
            title="Reason (manual pinned backup)",
            description="Leave empty for a ladder run. Any text takes a pinned snapshot of every "
            "selected table now, never thinned, kept for expiry_days; the text is recorded with it.",
        ),
        "expiry_days": Param(
            config.backups.pinned_expiry_days,
            type="integer",
            minimum=1,
            maximum=3650,
            title="Pinned backup expiry (days)",
            description="How long a pinned manual backup is kept. Ignored by ladder runs.",
        ),
        "datasets": datasets_param(config, "Prod datasets to back up (default: every configured dataset)."),
        "environments": Param(
            list(config.backups.environments),
            type="array",
            minItems=1,
            uniqueItems=True,
            items={"type": "string", "enum": ["prod", "staging"]},
            examples=["prod", "staging"],
            title="Environments",
            description="Whose tables are backed up: prod (into backup_<ds>) and/or staging "
            "(staging_<ds> into backup_staging_<ds>). Default: backups.environments.",
        ),
    },
) as dag:
    plan = PlanBackupOperator(
        task_id="plan",
        datasets="{{ params.datasets }}",
        reason="{{ params.reason }}",
        expiry_days="{{ params.expiry_days }}",
        environments="{{ params.environments }}",
    )
    backup = BackupDatasetOperator.partial(task_id="backup", max_active_tis_per_dagrun=2).expand(
        dataset_ref=plan.output
    )
    report = RunReportOperator(task_id="report")
    plan >> backup >> report
