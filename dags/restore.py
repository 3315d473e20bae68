"""
### restore

Restores the tables of one prod dataset, or of its staging dataset (`source: staging`), to their
**state at a point in time T**, schema and data.

**When:** on demand.

**Where from** (chosen per table; the log says which and why):
1. **time travel** when T is inside the restore window (the prod dataset's `max_time_travel_hours`,
   narrowed by `prod.time_travel_hours` and `backups.restore_time_travel_hours` when set) and the table
   still exists in prod;
2. else the **newest snapshot** in `backup_<ds>` taken at or before T;
3. else the **newest GCS export** taken at or before T.

**Where to:** a scratch `drill_<ds>` by default (tables expire after `environments.drill.table_expiration_days`
when made by drills), or any environment dataset. Restoring **into prod** is allowed only with `confirm` set
to exactly `restore prod dataset <ds> to <T in ISO-8601 UTC>` (the refusal message shows the phrase) and an
explicit `point_in_time`; before any prod table is overwritten, a **pinned backup** of its current state is taken.

**Projects:** time travel reads the source in its own project, snapshots come from the backup project,
and the target is written in its environment's project (drills in `environments.drill.project`, staging
in staging's, prod in prod's), by jobs run in that environment's `jobs_project`; the target must be in
the source's location.

Every table is built under `<table>__restore`, verified (row count and checksum computed in BigQuery against
the backup's manifest, or against prod as of T; schema against the manifest) and only then swapped in.

**Staging** (`source: staging`) is restored from its own backups (`backup_staging_<ds>`, see
`backups.environments`) and staging's time travel, into `drill_staging_<ds>` by default or into
`staging_<ds>` itself: that needs no confirmation phrase (staging is where rollbacks are rehearsed), but
its current state is pinned first and the run is audited like any restore.

**Params**
- `source`: prod (default) or staging.
- `dataset`: the prod dataset to restore (for staging: the prod dataset whose `staging_<ds>` is restored).
- `tables`: table names (default: every table of the dataset and every backed-up one).
- `point_in_time`: T, ISO-8601 with a time zone (e.g. `2026-11-20T08:00:00+00:00`; empty = now).
- `target`: the dataset to restore into (default `drill_<dataset>`; the prod dataset itself needs `confirm`).
- `confirm`: the exact confirmation phrase, only for a restore into prod.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from envsync.core.config import load_config
from envsync.operators.dag_defaults import alert_callbacks, default_args
from envsync.operators.restore import PlanRestoreOperator, RestoreDatasetOperator, RestoreReportOperator

config = load_config()

with DAG(
    dag_id="restore",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "backup", "restore"],
    render_template_as_native_obj=True,
    default_args=default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(hours=3)),
    **alert_callbacks(config, on_success=False),
    params={
        "dataset": Param(
            config.prod.datasets[0],
            type="string",
            enum=list(config.prod.datasets),
            title="Dataset",
            description="The prod dataset whose tables are restored.",
        ),
        "tables": Param(
            [],
            type="array",
            items={"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"},
            uniqueItems=True,
            title="Tables",
            description="Table names to restore (default: every table of the dataset and every backed-up one).",
        ),
        "point_in_time": Param(
            "",
            type="string",
            title="Point in time (T)",
            description="ISO-8601 instant with a time zone, e.g. 2026-11-20T08:00:00+00:00; empty = now.",
        ),
        "target": Param(
            "",
            type="string",
            pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$",
            title="Target dataset",
            description="Dataset to restore into; default drill_<dataset>. The prod dataset itself "
            "needs the confirmation phrase.",
        ),
        "source": Param(
            "prod",
            type="string",
            enum=["prod", "staging"],
            title="Source environment",
            description="prod: restore prod dataset <dataset>; staging: restore staging_<dataset> "
            "from its own backups (backup_staging_<dataset>), by default into "
            "drill_staging_<dataset>. staging_<dataset> itself needs no confirmation (its current "
            "state is pinned first).",
        ),
        "confirm": Param(
            "",
            type="string",
            title="Confirmation (prod only)",
            description="Only to overwrite prod: exactly 'restore prod dataset <dataset> to "
            "<T as ISO-8601 UTC>', e.g. 'restore prod dataset sales to 2026-11-20T08:00:00+00:00'.",
        ),
    },
) as dag:
    plan = PlanRestoreOperator(
        task_id="plan",
        mode="restore",
        datasets="{{ params.dataset }}",
        tables="{{ params.tables }}",
        point_in_time="{{ params.point_in_time }}",
        target="{{ params.target }}",
        confirm="{{ params.confirm }}",
        source="{{ params.source }}",
    )
    restore = RestoreDatasetOperator.partial(task_id="restore", confirm="{{ params.confirm }}").expand(
        dataset_ref=plan.output
    )
    report = RestoreReportOperator(task_id="report")
    plan >> restore >> report
