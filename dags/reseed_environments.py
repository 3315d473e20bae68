"""
### reseed_environments

Destroys the **qa** and **staging** environments (`qa_<ds>`, `staging_<ds>`) and re-creates them from
prod's *current* table definitions, filled with **versioned, deterministic seed data**; or creates or
refreshes an on-demand **test environment** (`test_<name>_<ds>`) with a time-to-live. Each environment
lives in its own project when the config gives it one (`environments.<env>.project`; its jobs run in
`environments.<env>.jobs_project`); prod's schemas and samples are read in prod's project, and the
views re-created on an environment read that environment's project only.

**When:** every Sunday at 03:00 UTC, and on demand from the trigger form.

**How:**
1. `plan` checks every seed (`sql/seeds/<dataset>/<table>.sql`) against prod's current schema, or
   the environment's migrated schema when schema migrations were promoted to it (columns, types,
   repeated fields, non-null REQUIRED and partitioning columns) *before anything is dropped*. A
   mismatch fails the run naming dataset, table and column; every environment stays as it was.
2. `reseed` (one task per environment and dataset) drops the dataset, re-creates it with prod's
   metadata, creates every table with prod's definition (columns and modes, partitioning, clustering,
   description, labels) and fills it from its seed, or from a masked, deterministic prod sample
   (`source: prod_sample` in the config). Tables with no seed are created empty. A checksum per table
   is computed in BigQuery.
3. `views` re-creates the views on the same environment, once every table is in place.
4. `migrate` applies again the schema migrations promoted to the environment that prod does not have
   yet (`sql/migrations/`, ledger `envsync_audit.migrations`), so a reseed keeps a promotion; then the
   seeded tables are filled on the migrated schema. The plan validated those migrations against
   prod's schema and checked the seeds against the migrated schema before anything was dropped.
5. `report` logs the run report with the seed version (content hash and git revision).
6. `parity` compares the re-seeded environment(s) with prod (see the `parity` DAG), records the
   findings, alerts on drift, and fails the run on structural drift of a table it just wrote.

Backup datasets are never touched.

**Params**
- `environments`: which of qa and staging to re-seed (default both). Ignored when `test_env` is set.
- `datasets`: the prod datasets (default: all configured).
- `test_env`: a name (1-20 lowercase letters/digits): create or refresh `test_<name>_<ds>` instead.
- `ttl_days`: the test environment's time-to-live in days (default from config); the daily
  `cleanup_test_environments` DAG deletes it after that.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from envsync.core.config import load_config
from envsync.operators.dag_defaults import alert_callbacks, datasets_param, default_args, environments_param
from envsync.operators.params import RESEED_ENVIRONMENTS
from envsync.operators.parity import RefreshParityOperator
from envsync.operators.reseed import (
    PlanReseedOperator,
    ReseedDatasetOperator,
    ReseedMigrateOperator,
    ReseedReportOperator,
    ReseedViewsOperator,
)

config = load_config()
test_env = config.environments.test

with DAG(
    dag_id="reseed_environments",
    schedule="0 3 * * 0",
    start_date=dt.datetime(2026, 1, 4, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "qa", "staging"],
    render_template_as_native_obj=True,
    default_args=default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(hours=2)),
    **alert_callbacks(config, on_success=True),
    params={
        "environments": environments_param(
            list(RESEED_ENVIRONMENTS),
            "Environments to destroy and re-seed (ignored when a test environment is named).",
        ),
        "datasets": datasets_param(
            config, "Prod datasets whose environment copies are re-seeded (default: every configured dataset)."
        ),
        "test_env": Param(
            "",
            type="string",
            title="Test environment",
            description="Create or refresh test_<name>_<dataset> instead of qa/staging: 1-20 lowercase "
            "letters or digits, starting with a letter. Empty: re-seed qa/staging.",
            pattern=r"^([a-z][a-z0-9]{0,19})?$(?!\n)",
        ),
        "ttl_days": Param(
            test_env.default_ttl_days,
            type="integer",
            title="Time-to-live (days)",
            description="Days until the test environment expires and the daily cleanup deletes it.",
            minimum=1,
            maximum=test_env.max_ttl_days,
        ),
    },
) as dag:
    plan = PlanReseedOperator(
        task_id="plan",
        environments="{{ params.environments }}",
        datasets="{{ params.datasets }}",
        test_env="{{ params.test_env }}",
        ttl_days="{{ params.ttl_days }}",
    )
    reseed = ReseedDatasetOperator.partial(task_id="reseed", max_active_tis_per_dagrun=2).expand(unit_ref=plan.output)
    views = ReseedViewsOperator(task_id="views")
    migrate = ReseedMigrateOperator(task_id="migrate")
    report = ReseedReportOperator(task_id="report")
    parity = RefreshParityOperator(task_id="parity")
    plan >> reseed >> views >> migrate >> report >> parity
