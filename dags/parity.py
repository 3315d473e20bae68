"""
### parity

How far every derived environment is from prod, every day. Reads only: the environments are never
written; the findings go to `envsync_audit.parity`.

**What is compared** (from metadata, per environment dataset against its prod dataset): tables and
views missing or extra; columns missing, extra, or with another type, mode or nested fields; column
descriptions and policy tags; partitioning, clustering, `require_partition_filter` and descriptions.
Differences explained by schema migrations promoted to the environment and not yet to prod are listed
as **expected**, not as drift (so are excluded tables, objects envsync does not copy, and
`require_partition_filter` on seeded environments). Each environment is read in its own project, prod
in `prod.project`; a view of an environment in another project than prod's that still reads prod's
project is drift (`prod_reference`).

**Freshness:** the cut T of each environment's last successful refresh and its age (from the audit
tables); dev older than 8 days and qa/staging older than their weekly schedule plus a day are flagged.
For dev, every table's rows are counted against prod's rows in the window as of that T (when T is past
prod's time-travel window, the finding says the count could not be taken).

**Output:** one row per environment x object x finding in `envsync_audit.parity` (the environment's
dataset named with its project when environments live in several projects), a readable table in
the task log, the summary in the run report, and a Slack alert with the top findings and the count
when there is unexpected drift. Drift does not fail the run; an unreadable environment does.

**Params**
- `environments`: dev, qa, staging, prodcopy, test (every live test environment); default all.
- `datasets`: the prod datasets (default: all configured).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from envsync.core.config import load_config
from envsync.operators.dag_defaults import alert_callbacks, datasets_param, default_args, environments_param
from envsync.operators.parity import ENVIRONMENTS, ParityOperator

config = load_config()

with DAG(
    dag_id="parity",
    schedule="0 6 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "parity"],
    render_template_as_native_obj=True,
    default_args=default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(hours=1)),
    **alert_callbacks(config, on_success=False),
    params={
        "environments": environments_param(
            list(ENVIRONMENTS), "Environments to compare with prod; test means every live test environment."
        ),
        "datasets": datasets_param(config, "Prod datasets to compare (default: every configured dataset)."),
    },
) as dag:
    ParityOperator(task_id="check", environments="{{ params.environments }}", datasets="{{ params.datasets }}")
