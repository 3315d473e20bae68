"""
### recovery_drill

Proves that the backups restore: each run restores **every table of every prod dataset to its state at
the run's logical date minus one day**, from backups only (snapshots, else GCS exports; never time
travel), into the scratch datasets `drill_<ds>` (re-created by each run; their tables expire after
`environments.drill.table_expiration_days`).

The drill datasets live in `environments.drill.project` (default: the top-level project) and the
backups are read from `environments.backup.project`; in a layout of several projects the audit rows
name tables with their project.

Each table is verified against its backup's manifest (row count and checksum computed in BigQuery, and
schema). The `report` task appends one row per table to `envsync_audit.recovery_drills` (source, RTO =
restore duration, RPO = T minus the time of the backup used, checksums, verdict) and **fails the run
when any table failed** verification or had no backup at or before T.

**When:** daily at 00:00 UTC (`catchup` is off). Drill past dates as a backfill, one run per date:

    airflow backfill create --dag-id recovery_drill --from-date 2026-11-19 --to-date 2026-11-21

Runs execute one at a time (they share the drill datasets).

**Staging:** with `source: staging` a run drills staging's own backups (`backup_staging_<ds>`, kept when
`backups.environments` lists staging) into `drill_staging_<ds>`; its audit rows carry `environment`
staging, so RTO and RPO are reported per environment.

**Params**
- `datasets`: the prod datasets to drill (default: all configured).
- `source`: prod (default) or staging.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from envsync.core.config import load_config
from envsync.operators.dag_defaults import alert_callbacks, datasets_param, default_args
from envsync.operators.restore import PlanRestoreOperator, RestoreDatasetOperator, RestoreReportOperator

config = load_config()

with DAG(
    dag_id="recovery_drill",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "backup", "drill"],
    render_template_as_native_obj=True,
    default_args=default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(hours=3)),
    **alert_callbacks(config, on_success=True),
    params={
        "datasets": datasets_param(config, "Prod datasets to drill (default: every configured dataset)."),
        "source": Param(
            "prod",
            type="string",
            enum=["prod", "staging"],
            title="Source environment",
            description="prod: drill prod's backups into drill_<ds>; staging: drill staging's "
            "backups (backup_staging_<ds>) into drill_staging_<ds>.",
        ),
    },
) as dag:
    plan = PlanRestoreOperator(
        task_id="plan", mode="drill", datasets="{{ params.datasets }}", source="{{ params.source }}"
    )
    restore = RestoreDatasetOperator.partial(task_id="restore", max_active_tis_per_dagrun=1).expand(
        dataset_ref=plan.output
    )
    report = RestoreReportOperator(task_id="report")
    plan >> restore >> report
