"""
### prod_copy

Makes `prodcopy_<ds>`: a **full copy of prod as of a chosen instant T** (every table cloned whole
`FOR SYSTEM_TIME AS OF T`, views re-created on the prod-copy datasets, objects that exist only in
prod-copy dropped), verified table by table.

**Projects:** prod is read in `prod.project`; prod-copy's datasets live in
`environments.prodcopy.project` and its jobs run in `environments.prodcopy.jobs_project` (both default
to the top-level `project`); views are rewritten to read prod-copy's datasets there.

**When:** on demand; optionally on the schedule set in `environments.prodcopy.schedule`.

**Personal data:** the copy is exact unless `privacy.environments` lists `prodcopy`; then tables with
masked columns are copied with their masks (a `CREATE TABLE … AS SELECT`, verified) instead of cloned.

**Parity:** the last task, `parity`, compares prod-copy with prod now (see the `parity` DAG) and
alerts on drift; it never fails the run (prod may have changed since T).

**Reset:** `mode = reset` re-creates prod-copy from the T recorded by the last copy: the one-click undo
of everything done in prod-copy since.

**Params**
- `mode`: `copy` (a new copy as of `as_of`) or `reset` (back to the recorded T).
- `as_of`: the instant to copy, ISO-8601 with a time zone (default: now). It must lie inside the
  time-travel window of every selected prod dataset (its own `max_time_travel_hours`, up to 7 days,
  narrowed by `prod.time_travel_hours` when set); older states are restored from backups instead.
  Tables created after T are skipped with that reason; the others are verified against prod's schema
  as of T.
- `datasets`: the prod datasets (default: all configured).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from envsync.core.config import load_config
from envsync.operators.dag_defaults import alert_callbacks, datasets_param, default_args
from envsync.operators.dev_sync import DevSyncReportOperator, SyncDatasetOperator, SyncViewsOperator
from envsync.operators.parity import RefreshParityOperator
from envsync.operators.prod_copy import MODES, PlanProdCopyOperator

config = load_config()

with DAG(
    dag_id="prod_copy",
    schedule=config.environments.prodcopy.schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "prodcopy"],
    render_template_as_native_obj=True,
    default_args=default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(hours=3)),
    **alert_callbacks(config, on_success=False),
    params={
        "mode": Param(
            "copy",
            type="string",
            enum=list(MODES),
            title="Mode",
            description="copy: a new copy as of as_of; reset: re-create prod-copy from the recorded T.",
        ),
        "as_of": Param(
            "",
            type="string",
            title="As of",
            description="ISO-8601 instant with a time zone (e.g. 2026-11-20T08:00:00+00:00); "
            "empty = now. Must be inside prod's time-travel window. Ignored by reset.",
        ),
        "datasets": datasets_param(config, "Prod datasets to copy (default: every configured dataset)."),
    },
) as dag:
    plan = PlanProdCopyOperator(
        task_id="plan", mode="{{ params.mode }}", as_of="{{ params.as_of }}", datasets="{{ params.datasets }}"
    )
    copy = SyncDatasetOperator.partial(task_id="sync_dataset", max_active_tis_per_dagrun=2).expand(
        dataset_ref=plan.output
    )
    views = SyncViewsOperator(task_id="sync_views")
    report = DevSyncReportOperator(task_id="report")
    parity = RefreshParityOperator(task_id="parity")
    plan >> copy >> views >> report >> parity
