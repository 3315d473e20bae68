"""The audit of a run with thousands of table actions lands completely on the faithful emulator.

BigQuery binds at most 10,000 parameters in one query (https://cloud.google.com/bigquery/quotas#query_jobs),
which the local test bed enforces (emulators/bqfidelity/rules.py): the audit batches its inserts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.gcp_incompatible]

AUDIT_PROJECT = "envsync-auditscale"
# 15 columns a row: 5,000 actions bind 75,000 values, eight inserts under the 10,000-parameter limit
# (the unit test in tests/unit/test_audit.py checks the batches themselves).
ACTIONS = 5000


@pytest.mark.slow
def test_a_run_with_thousands_of_table_actions_is_audited_completely(emulators: Any, config_file: Any) -> None:
    from envsync.bigquery.jobs import JobRunner
    from envsync.core.clients import bigquery_client
    from envsync.core.config import load_config
    from envsync.core.guard import GuardedBigQuery, WriteGuard
    from envsync.observe.audit import record_run, run_rows

    config = load_config(config_file(project=AUDIT_PROJECT))
    client = bigquery_client(AUDIT_PROJECT, "US")
    client.delete_dataset(f"{AUDIT_PROJECT}.{config.audit.dataset}", delete_contents=True, not_found_ok=True)
    runner = JobRunner(
        GuardedBigQuery(client, WriteGuard.from_config(config), "US"),
        dag_id="prod_to_dev_sync",
        run_id="manual__audit-scale",
        task_id="report",
        timeout=300,
    )
    results = [
        {
            "table": f"sales.t{i:04d}",
            "target": f"dev_sales.t{i:04d}",
            "action": "full_clone",
            "status": "ok",
            "rows": i,
            "jobs": 2,
        }
        for i in range(ACTIONS)
    ]
    now = dt.datetime.now(dt.UTC)
    run, actions = run_rows(
        dag_id="prod_to_dev_sync",
        run_id="manual__audit-scale",
        run_type="manual",
        logical_date=now,
        started_at=now,
        manifest={"env": "dev"},
        results=results,
        status="success",
        error=None,
        now=now,
    )
    record_run(config, runner, run, actions)

    audit = f"`{AUDIT_PROJECT}.{config.audit.dataset}`"
    got = list(
        client.query(
            f"select count(*) as n, count(distinct table_name) as tables, sum(row_count) as row_sum "
            f"from {audit}.table_actions where run_id = 'manual__audit-scale'",
            job_retry=None,
        ).result()
    )[0]
    assert (got["n"], got["tables"], got["row_sum"]) == (ACTIONS, ACTIONS, sum(range(ACTIONS)))
    summary = list(
        client.query(
            f"select objects, row_count from {audit}.runs where run_id = 'manual__audit-scale'", job_retry=None
        ).result()
    )
    assert [(r["objects"], r["row_count"]) for r in summary] == [(ACTIONS, sum(range(ACTIONS)))]
