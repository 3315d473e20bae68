"""
### cleanup_test_environments

Deletes the on-demand **test environments** (`test_<name>_<ds>`, created by `reseed_environments`
with a `test_env` name) whose time-to-live has passed, and nothing else: qa, staging, dev, prod-copy
and backup datasets are never touched, and the write guard refuses anything that is not an
environment dataset. Test environments are listed in the test environment's project
(`environments.test.project`).

**When:** daily at 04:00 UTC. An environment expires at the time in its `envsync-expires` label; a run
deletes those expired at its logical date (for a manual run, the trigger time).

**Params:** none.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from envsync.core.config import load_config
from envsync.operators.dag_defaults import alert_callbacks, default_args
from envsync.operators.reseed import CleanupTestEnvironmentsOperator

config = load_config()

with DAG(
    dag_id="cleanup_test_environments",
    schedule="0 4 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["envsync", "test"],
    default_args=default_args(retry_delay=dt.timedelta(minutes=5), execution_timeout=dt.timedelta(minutes=30)),
    **alert_callbacks(config, on_success=False),
) as dag:
    CleanupTestEnvironmentsOperator(task_id="delete_expired")
