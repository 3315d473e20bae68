"""envsync's audit tables in BigQuery (dataset `audit.dataset`, default `envsync_audit`, in the audit
project `audit.project`, default the top-level project).

    runs              one row per DAG run: DAG, environment, datasets, T, window, status, duration
    table_actions     one row per table action of a run: action, status, rows, seconds, bytes, error
    recovery_drills   one row per table per recovery drill: environment (prod or staging), source, RTO,
                      RPO, checksums, verdict
    masked_columns    one row per masked column per run: table, column, mask, why (config or policy
                      tag), and the count of rows that still held prod's value (must be 0)
    staging_cuts      one row per QA -> staging cut: T, seed version, migration version, pinned backups
    parity            one row per environment x object x finding of a parity check (envsync.environments.parity)

Tables are created on first use (CREATE TABLE IF NOT EXISTS); rows are appended with INSERT
statements whose every value is a query parameter.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from envsync.bigquery.datasets import ensure_env_dataset
from envsync.core.guard import TableRef, Typed
from envsync.core.identifiers import quote_column
from envsync.core.sqltemplates import render
from envsync.observe.report import BOOKKEEPING_ACTIONS

if TYPE_CHECKING:
    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import EnvsyncConfig

log = logging.getLogger(__name__)

RUNS = "runs"
TABLE_ACTIONS = "table_actions"
RECOVERY_DRILLS = "recovery_drills"
MASKED_COLUMNS = "masked_columns"
MASKED_COLUMN_COLUMNS = {
    "recorded_at": "TIMESTAMP",
    "dag_id": "STRING",
    "run_id": "STRING",
    "environment": "STRING",
    "table_name": "STRING",
    "target": "STRING",
    "column_name": "STRING",
    "mask": "STRING",
    "origin": "STRING",
    "policy_tags": "STRING",
    "unmasked_rows": "INT64",
    "status": "STRING",
}
RUN_COLUMNS = {
    "recorded_at": "TIMESTAMP",
    "dag_id": "STRING",
    "run_id": "STRING",
    "run_type": "STRING",
    "environment": "STRING",
    "datasets": "STRING",
    "logical_date": "TIMESTAMP",
    "cut": "TIMESTAMP",
    "window_start": "TIMESTAMP",
    "window_end": "TIMESTAMP",
    "status": "STRING",
    "started_at": "TIMESTAMP",
    "duration_seconds": "FLOAT64",
    "objects": "INT64",
    "failed": "INT64",
    "row_count": "INT64",
    "est_bytes_billed": "INT64",
    "bytes_billed": "INT64",
    "jobs": "INT64",
    "error": "STRING",
    "manifest": "STRING",
}
ACTION_COLUMNS = {
    "recorded_at": "TIMESTAMP",
    "dag_id": "STRING",
    "run_id": "STRING",
    "environment": "STRING",
    "table_name": "STRING",
    "target": "STRING",
    "action": "STRING",
    "reason": "STRING",
    "status": "STRING",
    "row_count": "INT64",
    "seconds": "FLOAT64",
    "est_bytes_billed": "INT64",
    "bytes_billed": "INT64",
    "jobs": "INT64",
    "error": "STRING",
}
# the environment a DAG writes, when its manifest does not say
DAG_ENVIRONMENTS = {
    "prod_to_dev_sync": "dev",
    "prod_copy": "prodcopy",
    "backup_ladder": "backup",
    "restore": "drill",
    "recovery_drill": "drill",
    "cleanup_test_environments": "test",
    "staging_cut": "staging",
}
# column -> BigQuery type, in table order (see sql/audit/create_recovery_drills.sql)
RECOVERY_DRILL_COLUMNS = {
    "recorded_at": "TIMESTAMP",
    "dag_id": "STRING",
    "run_id": "STRING",
    "logical_date": "TIMESTAMP",
    "point_in_time": "TIMESTAMP",
    "dataset": "STRING",
    "table_name": "STRING",
    "target": "STRING",
    "source_kind": "STRING",
    "source": "STRING",
    "backup_taken_at": "TIMESTAMP",
    "rpo_seconds": "FLOAT64",
    "rto_seconds": "FLOAT64",
    "row_count": "INT64",
    "expected_checksum": "STRING",
    "checksum": "STRING",
    "status": "STRING",
    "error": "STRING",
    "environment": "STRING",
}


# audit tables that gained columns since they were first shipped: sql/audit/add_columns_<name>.sql
AUDIT_COLUMNS_ADDED = ("recovery_drills",)


STAGING_CUTS = "staging_cuts"
# one row per QA -> staging cut (sql/audit/create_staging_cuts.sql)
STAGING_CUT_COLUMNS = {
    "recorded_at": "TIMESTAMP",
    "run_id": "STRING",
    "cut": "TIMESTAMP",
    "source": "STRING",
    "seed_version": "STRING",
    "migration_version": "STRING",
    "datasets": "STRING",
    "pinned_backups": "STRING",
    "status": "STRING",
    "error": "STRING",
}


def audit_table(config: EnvsyncConfig, name: str) -> TableRef:
    """Audit table `name` in the audit dataset of the audit project."""
    return TableRef(config.audit_project, config.audit.dataset, name)


def _exists(runner: JobRunner, ref: TableRef) -> bool:
    from google.api_core.exceptions import NotFound

    try:
        runner.bq.client.get_table(ref.api)
    except NotFound:
        return False
    return True


def ensure_audit_table(config: EnvsyncConfig, runner: JobRunner, name: str) -> TableRef:
    """Create the audit dataset (in the audit project) and table `name` when missing
    (sql/audit/create_<name>.sql)."""
    ensure_env_dataset(
        runner.bq,
        f"{config.audit_project}.{config.audit.dataset}",
        location=config.location,
        description="envsync audit: run summaries, table actions and recovery drills",
        labels={"envsync-managed": "true", "envsync-env": "audit"},
    )
    ref = audit_table(config, name)
    if not _exists(runner, ref):
        # DDL only when the table is missing: BigQuery counts DDL against the table's 5 metadata
        # updates per 10 s (envsync.core.limits), and audit tables are written by every run
        runner.run(render(f"audit/create_{name}", table=ref.sql), key=("audit", name, "create"))
    if name in AUDIT_COLUMNS_ADDED:  # tables made by an earlier version lack the newer columns
        runner.run(render(f"audit/add_columns_{name}", table=ref.sql), key=("audit", name, "add_columns"))
    return ref


def _coerce(kind: str, value: Any) -> Any:
    if value is None:
        return Typed(kind, None)
    if kind == "TIMESTAMP" and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if kind == "FLOAT64":
        return float(value)
    if kind == "INT64":
        return int(value)
    if kind == "STRING":
        return str(value)
    return value


# BigQuery binds at most 10,000 parameters in one query (https://cloud.google.com/bigquery/quotas#query_jobs).
MAX_QUERY_PARAMETERS = 10_000


def insert_rows(
    runner: JobRunner, table: TableRef, columns: dict[str, str], rows: Sequence[dict[str, Any]], key: tuple[str, ...]
) -> int:
    """Append `rows` (dicts keyed by column; missing keys are NULL) with parameterised INSERTs.

    One INSERT per batch of rows, each batch binding at most MAX_QUERY_PARAMETERS values.
    """
    if not rows:
        return 0
    unknown = sorted({k for row in rows for k in row} - set(columns))
    if unknown:
        raise ValueError(f"audit table {table}: unknown columns {unknown}; columns are {list(columns)}")
    per_batch = max(1, MAX_QUERY_PARAMETERS // len(columns))
    batches = [rows[start : start + per_batch] for start in range(0, len(rows), per_batch)]
    for number, batch in enumerate(batches):
        params: dict[str, Any] = {}
        values = []
        for i, row in enumerate(batch):
            names = []
            for column, kind in columns.items():
                name = f"r{i}_{column}"
                params[name] = _coerce(kind, row.get(column))
                names.append(f"@{name}")
            values.append("(" + ", ".join(names) + ")")
        sql = render(
            "audit/insert_rows",
            table=table.sql,
            columns=", ".join(quote_column(c) for c in columns),
            rows=",\n".join(values),
        )
        runner.run(sql, key=key if len(batches) == 1 else (*key, f"batch{number}"), params=params)
    log.info("appended %d rows to %s in %d insert(s)", len(rows), table, len(batches))
    return len(rows)


def environment_of(dag_id: str, manifest: dict[str, Any] | None) -> str:
    manifest = manifest or {}
    params = manifest.get("params") or {}
    if manifest.get("env"):
        return str(manifest["env"])
    if params.get("test_env"):
        return f"test_{params['test_env']}"
    if params.get("environments"):
        return ",".join(params["environments"])
    return DAG_ENVIRONMENTS.get(dag_id, "")


def run_rows(
    *,
    dag_id: str,
    run_id: str,
    run_type: str | None,
    logical_date: Any,
    started_at: Any,
    manifest: dict[str, Any] | None,
    results: Sequence[dict[str, Any]],
    status: str,
    error: str | None,
    now: dt.datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The `runs` row and the `table_actions` rows of one DAG run (pure)."""
    manifest = manifest or {}
    env = environment_of(dag_id, manifest)
    window = manifest.get("window") or {}
    counted = [r for r in results if r.get("action") not in BOOKKEEPING_ACTIONS]
    failed = [r for r in results if r.get("status") == "failed"]
    started = started_at if isinstance(started_at, dt.datetime) else None
    run = {
        "recorded_at": now,
        "dag_id": dag_id,
        "run_id": run_id,
        "run_type": run_type,
        "environment": env,
        "datasets": ",".join((manifest.get("params") or {}).get("datasets") or []) or None,
        "logical_date": logical_date,
        "cut": manifest.get("cut"),
        "window_start": window.get("start"),
        "window_end": window.get("end"),
        "status": status,
        "started_at": started,
        "duration_seconds": (now - started).total_seconds() if started else None,
        "objects": len(counted),
        "failed": len(failed),
        "row_count": sum(int(r.get("rows") or 0) for r in counted),
        "est_bytes_billed": sum(int(r.get("est_bytes_billed") or 0) for r in counted),
        "bytes_billed": sum(int(r.get("bytes_billed") or 0) for r in counted),
        "jobs": sum(int(r.get("jobs") or 0) for r in results),
        "error": error,
        "manifest": manifest.get("manifest_uri"),
    }
    actions = [
        {
            "recorded_at": now,
            "dag_id": dag_id,
            "run_id": run_id,
            "environment": r.get("env") or env,
            "table_name": r.get("table"),
            "target": r.get("target"),
            "action": r.get("action"),
            "reason": r.get("reason"),
            "status": r.get("status"),
            "row_count": r.get("rows"),
            "seconds": r.get("seconds"),
            "est_bytes_billed": r.get("est_bytes_billed"),
            "bytes_billed": r.get("bytes_billed"),
            "jobs": r.get("jobs"),
            "error": r.get("error"),
        }
        for r in results
    ]
    return run, actions


def masked_column_rows(
    *, dag_id: str, run_id: str, privacy: dict[str, Any] | None, now: dt.datetime
) -> list[dict[str, Any]]:
    """The `masked_columns` rows of one run, from its report's privacy section (pure)."""
    return [
        {
            "recorded_at": now,
            "dag_id": dag_id,
            "run_id": run_id,
            "environment": m.get("env"),
            "table_name": m["table"],
            "target": m.get("target"),
            "column_name": m["column"],
            "mask": m["mask"],
            "origin": m["origin"],
            "policy_tags": ",".join(m.get("policy_tags") or []) or None,
            "unmasked_rows": m.get("unmasked_rows"),
            "status": m.get("status"),
        }
        for m in (privacy or {}).get("masked") or []
    ]


def record_run(
    config: EnvsyncConfig,
    runner: JobRunner,
    run: dict[str, Any],
    actions: Sequence[dict[str, Any]],
    masked: Sequence[dict[str, Any]] = (),
) -> None:
    """Append a run's summary, table actions and masked columns to the audit tables."""
    runs = ensure_audit_table(config, runner, RUNS)
    insert_rows(runner, runs, RUN_COLUMNS, [run], key=("audit", RUNS, "insert"))
    if actions:
        table = ensure_audit_table(config, runner, TABLE_ACTIONS)
        insert_rows(runner, table, ACTION_COLUMNS, actions, key=("audit", TABLE_ACTIONS, "insert"))
    if masked:
        table = ensure_audit_table(config, runner, MASKED_COLUMNS)
        insert_rows(runner, table, MASKED_COLUMN_COLUMNS, masked, key=("audit", MASKED_COLUMNS, "insert"))
