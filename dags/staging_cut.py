"""
### staging_cut

At a sprint's end **QA's state becomes staging's**: every `qa_<ds>` is copied into `staging_<ds>` as of
one instant T, all or nothing. qa is read in its project and staging written in its own
(`environments.qa.project`, `environments.staging.project`); the pins go to the backup environment's project.

**When:** on demand; optionally on the schedule set in `environments.staging.cut_schedule`.

**How:**
1. `plan` fixes T (a retry keeps it), checks that every qa dataset exists and that T is inside its
   time-travel window, plans each object (tables cloned as of T, views re-created on staging, objects
   only in staging dropped) and records T, QA's seed version and the migration version (null while no
   migration ledger exists) with what staging holds now.
2. `pin` takes a **pinned backup** of every staging table (the backup ladder's pinned snapshots, in
   `backup_staging_<ds>`), after checking BigQuery's 50 snapshot jobs per table per day.
3. `stage` (one task per dataset) clones qa's tables `FOR SYSTEM_TIME AS OF T` under stage names in
   staging and verifies each against qa as of T (rows per partition, schema, partitioning, row checksum).
4. `publish` copies every verified stage over its staging table, drops staging-only objects and
   re-creates the views, only when **every** stage verified; otherwise it drops the stages and staging
   stays as it was. A failure while publishing restores staging from the pins taken in step 2.
5. `report` logs the result, records the cut (T, seed version, migration version, pins) in
   `gs://<state bucket>/staging_cut/current.json` and `envsync_audit.staging_cuts`; Slack says how it went.

**Params**
- `datasets`: the prod datasets whose qa dataset is cut over to staging (default: all configured).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from envsync.core.config import load_config
from envsync.operators.dag_defaults import alert_callbacks, datasets_param, default_args
from envsync.operators.staging_cut import (
    PinStagingOperator,
    PlanStagingCutOperator,
    PublishCutOperator,
    StageCutOperator,
    StagingCutReportOperator,
)

config = load_config()

with DAG(
    dag_id="staging_cut",
    schedule=config.environments.staging.cut_schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "staging"],
    render_template_as_native_obj=True,
    default_args=default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(hours=3)),
    **alert_callbacks(config, on_success=True),
    params={"datasets": datasets_param(config, "Prod datasets whose qa_<ds> replaces staging_<ds> (default: all).")},
) as dag:
    plan = PlanStagingCutOperator(task_id="plan", datasets="{{ params.datasets }}")
    pin = PinStagingOperator(task_id="pin")
    stage = StageCutOperator.partial(task_id="stage", max_active_tis_per_dagrun=2).expand(dataset_ref=plan.output)
    publish = PublishCutOperator(task_id="publish")
    report = StagingCutReportOperator(task_id="report")
    plan >> pin >> stage >> publish >> report
