"""envsync's audit tables in BigQuery (dataset `audit.dataset`, default `envsync_audit`).

    recovery_drills   one row per table per recovery drill: source, RTO, RPO, checksums, verdict

Tables are created on first use (CREATE TABLE IF NOT EXISTS); rows are appended with INSERT
statements whose every value is a query parameter.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from envsync.datasets import ensure_env_dataset
from envsync.guard import TableRef, Typed, quote_column
from envsync.sqltemplates import render

if TYPE_CHECKING:
    from envsync.config import EnvsyncConfig
    from envsync.jobs import JobRunner

log = logging.getLogger(__name__)

RECOVERY_DRILLS = "recovery_drills"
# column -> BigQuery type, in table order (see sql/audit/create_recovery_drills.sql)
RECOVERY_DRILL_COLUMNS = {
    "recorded_at": "TIMESTAMP", "dag_id": "STRING", "run_id": "STRING", "logical_date": "TIMESTAMP",
    "point_in_time": "TIMESTAMP", "dataset": "STRING", "table_name": "STRING", "target": "STRING",
    "source_kind": "STRING", "source": "STRING", "backup_taken_at": "TIMESTAMP", "rpo_seconds": "FLOAT64",
    "rto_seconds": "FLOAT64", "row_count": "INT64", "expected_checksum": "STRING", "checksum": "STRING",
    "status": "STRING", "error": "STRING",
}


def audit_table(config: EnvsyncConfig, name: str) -> TableRef:
    return TableRef(config.project, config.audit.dataset, name)


def ensure_audit_table(config: EnvsyncConfig, runner: JobRunner, name: str) -> TableRef:
    """Create the audit dataset and table `name` when missing (sql/audit/create_<name>.sql)."""
    ensure_env_dataset(
        runner.bq, f"{config.project}.{config.audit.dataset}", location=config.location,
        description="envsync audit: run summaries, table actions and recovery drills",
        labels={"envsync-managed": "true", "envsync-env": "audit"},
    )
    ref = audit_table(config, name)
    runner.run(render(f"audit/create_{name}", table=ref.sql), key=("audit", name, "create"))
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


def insert_rows(runner: JobRunner, table: TableRef, columns: dict[str, str], rows: Sequence[dict[str, Any]],
                key: tuple[str, ...]) -> int:
    """Append `rows` (dicts keyed by column; missing keys are NULL) with one parameterised INSERT."""
    if not rows:
        return 0
    unknown = sorted({k for row in rows for k in row} - set(columns))
    if unknown:
        raise ValueError(f"audit table {table}: unknown columns {unknown}; columns are {list(columns)}")
    params: dict[str, Any] = {}
    values = []
    for i, row in enumerate(rows):
        names = []
        for column, kind in columns.items():
            name = f"r{i}_{column}"
            params[name] = _coerce(kind, row.get(column))
            names.append(f"@{name}")
        values.append("(" + ", ".join(names) + ")")
    sql = render("audit/insert_rows", table=table.sql, columns=", ".join(quote_column(c) for c in columns),
                 rows=",\n".join(values))
    runner.run(sql, key=key, params=params)
    log.info("appended %d rows to %s", len(rows), table)
    return len(rows)
