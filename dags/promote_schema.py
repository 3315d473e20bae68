"""
### promote_schema

Promotes versioned **schema migrations** (`sql/migrations/<version>_<name>.sql`) to one environment:
**qa → staging → prod**, with gates, a hotfix lane and, on prod, a pinned backup and automatic rollback.

**When:** on demand.

**Gates** (checked by `plan` before anything is written; a refusal fails the run and says why):
- staging takes a migration only after it succeeded on qa; prod only after it succeeded on staging;
- lane `hotfix` may skip qa (never staging); the report and the alert name the versions that did;
- prod: staging's views still resolve and the seeds still fit staging's schema;
- prod: a `contract` migration goes only when no view (prod, qa, staging) and no seed still reads what it removes;
- an edited applied migration (checksum) or a version out of order is refused;
- every statement is validated against the target's schema (BigQuery dry runs in a scratch rehearsal).

**Projects:** each environment's statements run in its own project (qa and staging in theirs, prod in
`prod.project`), their jobs in that environment's `jobs_project`; the ledger is in the audit dataset's
project, the rehearsals in the drill project, the pinned backups in the backup project.

**Prod:** only with `confirm` set to exactly `apply schema migrations <versions> to prod` (e.g.
`apply schema migrations 3, 4 to prod`; the refusal shows the phrase). Before the first statement a
**pinned backup** of every table the migrations write is taken (`backup_<ds>`); after each migration its
tables' schemas are compared with what its DDL declares. On a failure the written tables are
**restored from that backup** (views get their definitions back, created objects are dropped), the run
fails naming the migration and the statement, and nothing is recorded as applied.

**Dry run:** logs the plan (per environment: what it holds and what would run; per migration the tables
it touches and its SQL rewritten for the target) and writes nothing.

**Parity** (last task, `parity`): the parity of the target with prod over the datasets the migrations
touch, recorded in `envsync_audit.parity`, added to the run report and alerted on drift; the migrations
promoted to qa or staging and not yet to prod are `expected`. A promotion to prod checks qa and staging
(prod is the reference). A dry run skips it (nothing was promoted; no audit rows).

**Params**
- `target`: qa, staging or prod.
- `through`: the last version to promote (empty: every pending one).
- `lane`: `normal`, or `hotfix` to skip qa.
- `dry_run`: only print the plan.
- `confirm`: prod only, the exact phrase naming the versions.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from envsync.core.config import load_config
from envsync.operators.dag_defaults import alert_callbacks, default_args
from envsync.operators.parity import RefreshParityOperator
from envsync.operators.promote import PlanPromotionOperator, PromoteOperator, PromoteReportOperator

config = load_config()

with DAG(
    dag_id="promote_schema",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "schema", "migrations"],
    render_template_as_native_obj=True,
    default_args=default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(hours=2)),
    **alert_callbacks(config, on_success=True),
    params={
        "target": Param(
            "qa",
            type="string",
            enum=["qa", "staging", "prod"],
            title="Target environment",
            description="Where the migrations go: qa, then staging, then prod.",
        ),
        "through": Param(
            "",
            type="string",
            pattern=r"^([0-9]{1,9})?$",
            title="Through version",
            description="The last migration version to promote, e.g. 3; empty: every pending one.",
        ),
        "lane": Param(
            "normal",
            type="string",
            enum=["normal", "hotfix"],
            title="Lane",
            description="normal: qa, then staging, then prod. hotfix: may skip qa (never staging); "
            "the report and the alert say so.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Only log the plan (migrations, tables, rewritten SQL); write nothing.",
        ),
        "confirm": Param(
            "",
            type="string",
            title="Confirmation (prod only)",
            description="Only for prod: exactly 'apply schema migrations <versions> to prod', e.g. "
            "'apply schema migrations 3, 4 to prod' (a dry run shows the versions).",
        ),
    },
) as dag:
    plan = PlanPromotionOperator(
        task_id="plan",
        target="{{ params.target }}",
        through="{{ params.through }}",
        lane="{{ params.lane }}",
        dry_run="{{ params.dry_run }}",
        confirm="{{ params.confirm }}",
    )
    promote = PromoteOperator(task_id="promote", confirm="{{ params.confirm }}")
    report = PromoteReportOperator(task_id="report")
    parity = RefreshParityOperator(task_id="parity")
    plan >> promote >> report >> parity
