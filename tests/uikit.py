"""Audit rows, snapshots and ledgers for the envsync page's tests and benchmark (on the emulators).

`seed_known` writes a small, exactly known history (the tests check the page's figures against it);
`seed_scale` fills the audit tables with N prod tables and D days of runs in a few INSERT ... SELECT
statements over GENERATE_ARRAY, not row by row.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from envsync.backups.ladder import snapshot_name
from envsync.core.guard import to_query_parameters
from envsync.core.identifiers import quote
from envsync.core.sqltemplates import render
from envsync.observe.audit import RECOVERY_DRILLS, RUNS, TABLE_ACTIONS

UTC = dt.UTC
PARITY_DDL = """create table if not exists {table} (
    checked_at timestamp not null, dag_id string not null, run_id string not null, environment string not null,
    dataset string, env_dataset string, object_name string, finding string not null, status string not null,
    detail string
) partition by date(checked_at)"""
MIGRATIONS_DDL = """create table if not exists {table} (
    applied_at timestamp not null, environment string not null, version int64 not null, name string not null,
    phase string not null, checksum string not null, dag_id string, run_id string, status string not null,
    error string
) partition by date(applied_at)"""


def run_query(client: Any, sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    job = client.query(
        sql, job_config=bigquery.QueryJobConfig(query_parameters=to_query_parameters(params)), job_retry=None
    )
    return [dict(row.items()) for row in job.result()]


def create_audit(client: Any, project: str, dataset: str, *, parity: bool = False, migrations: bool = False) -> None:
    """The audit dataset and its tables as envsync creates them (sql/audit/create_*.sql)."""
    from google.cloud import bigquery

    ds = bigquery.Dataset(f"{project}.{dataset}")
    ds.location = "US"
    client.create_dataset(ds, exists_ok=True)
    for name in (RUNS, TABLE_ACTIONS, RECOVERY_DRILLS):
        run_query(client, render(f"audit/create_{name}", table=quote(project, dataset, name)))
    if parity:
        run_query(client, PARITY_DDL.format(table=quote(project, dataset, "parity")))
    if migrations:
        run_query(client, MIGRATIONS_DDL.format(table=quote(project, dataset, "migrations")))


def insert(client: Any, project: str, dataset: str, table: str, rows: list[dict[str, Any]]) -> None:
    """Append rows with one parameterised INSERT (every value bound)."""
    if not rows:
        return
    columns = list(rows[0])
    params: dict[str, Any] = {}
    values = []
    for i, row in enumerate(rows):
        names = []
        for column in columns:
            value = row[column]
            if value is None:
                names.append("null")
                continue
            params[f"r{i}_{column}"] = value
            names.append(f"@r{i}_{column}")
        values.append("(" + ", ".join(names) + ")")
    sql = f"insert into {quote(project, dataset, table)} ({', '.join(columns)}) values " + ", ".join(values)
    run_query(client, sql, **params)


@dataclass
class Known:
    """What seed_known wrote, for the assertions."""

    now: dt.datetime
    dev_run: str
    dev_cut: dt.datetime
    backup_failed_run: str
    drill_runs: list[str] = field(default_factory=list)
    failed_drill_run: str = ""
    snapshots: list[dt.datetime] = field(default_factory=list)
    pinned: dt.datetime | None = None
    seed_version: str = "seedv1abcdef0123"


def run_row(
    now: dt.datetime,
    dag_id: str,
    run_id: str,
    environment: str,
    status: str,
    hours_ago: float,
    *,
    objects: int = 5,
    failed: int = 0,
    rows: int = 1000,
    est_bytes: int = 2048,
    manifest: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    at = now - dt.timedelta(hours=hours_ago)
    return {
        "recorded_at": at,
        "dag_id": dag_id,
        "run_id": run_id,
        "run_type": "scheduled",
        "environment": environment,
        "cut": at - dt.timedelta(minutes=10),
        "status": status,
        "started_at": at,
        "duration_seconds": 60.0,
        "objects": objects,
        "failed": failed,
        "row_count": rows,
        "est_bytes_billed": est_bytes,
        "manifest": manifest,
        "error": error,
    }


def seed_known(
    client: Any,
    storage: Any,
    *,
    project: str,
    audit: str,
    bucket: str,
    prod_dataset: str,
    table: str,
    now: dt.datetime,
    dev_run: str = "scheduled__dev-sync-1",
) -> Known:
    """A small history: dev synced 2 days ago, qa/staging re-seeded (manifest with a seed version), the
    last backup run failed, three drills (one failed), four snapshots of one table (one pinned)."""
    from google.cloud import bigquery

    known = Known(
        now=now,
        dev_run=dev_run,
        dev_cut=now - dt.timedelta(hours=48, minutes=10),
        backup_failed_run="scheduled__backup-2",
    )
    manifest_path = "manifests/reseed_environments/scheduled__reseed-1/plan.json"
    storage.bucket(bucket).blob(manifest_path).upload_from_string(
        json.dumps({"seed_version": {"version": known.seed_version}}), content_type="application/json"
    )
    insert(
        client,
        project,
        audit,
        RUNS,
        [
            run_row(now, "prod_to_dev_sync", "scheduled__dev-sync-0", "dev", "failed", 30 * 24, error="boom"),
            run_row(
                now,
                "prod_to_dev_sync",
                dev_run,
                "dev",
                "success",
                48,
                objects=7,
                failed=0,
                rows=123456,
                est_bytes=5 * 1024**3,
            ),
            run_row(
                now,
                "reseed_environments",
                "scheduled__reseed-1",
                "qa,staging",
                "success",
                20,
                manifest=f"gs://{bucket}/{manifest_path}",
            ),
            run_row(now, "backup_ladder", "scheduled__backup-1", "backup", "success", 2),
            run_row(
                now,
                "backup_ladder",
                known.backup_failed_run,
                "backup",
                "failed",
                1,
                error="BackupError: sales.orders: snapshot failed",
            ),
        ],
    )
    drills = []
    for i, (days, rto, rpo_h, status) in enumerate(
        [(3, 12.5, 20.0, "ok"), (2, 30.0, 22.0, "failed"), (1, 8.0, 21.0, "ok")]
    ):
        run_id = f"scheduled__drill-{i}"
        known.drill_runs.append(run_id)
        if status == "failed":
            known.failed_drill_run = run_id
        at = now - dt.timedelta(days=days)
        drills.append(
            {
                "recorded_at": at,
                "dag_id": "recovery_drill",
                "run_id": run_id,
                "logical_date": at,
                "point_in_time": at - dt.timedelta(days=1),
                "dataset": prod_dataset,
                "table_name": table,
                "source_kind": "snapshot",
                "source": "x",
                "rpo_seconds": rpo_h * 3600,
                "rto_seconds": rto,
                "row_count": 10,
                "status": status,
                "error": "mismatch" if status == "failed" else None,
            }
        )
    insert(client, project, audit, RECOVERY_DRILLS, drills)

    backup_ds = f"backup_{prod_dataset}"
    ds = bigquery.Dataset(f"{project}.{backup_ds}")
    ds.location = "US"
    client.create_dataset(ds, exists_ok=True)
    hour = now.replace(minute=0, second=0, microsecond=0)
    known.snapshots = [hour - dt.timedelta(days=5), hour - dt.timedelta(days=3), hour - dt.timedelta(hours=1), hour]
    known.pinned = hour - dt.timedelta(days=3)
    for taken_at in known.snapshots:
        name = snapshot_name(table, taken_at)
        run_query(
            client,
            f"create snapshot table {quote(project, backup_ds, name)} clone {quote(project, prod_dataset, table)}",
        )
    actions = [
        {
            "recorded_at": now - dt.timedelta(hours=1),
            "dag_id": "backup_ladder",
            "run_id": known.backup_failed_run,
            "environment": "backup",
            "table_name": f"{prod_dataset}.{table}",
            "target": f"{backup_ds}.{snapshot_name(table, hour)}",
            "action": "snapshot",
            "status": "failed",
        },
        {
            "recorded_at": known.pinned,
            "dag_id": "backup_ladder",
            "run_id": "manual__pin-1",
            "environment": "backup",
            "table_name": f"{prod_dataset}.{table}",
            "target": f"{backup_ds}.{snapshot_name(table, known.pinned)}",
            "action": "pin",
            "status": "ok",
        },
    ]
    insert(client, project, audit, TABLE_ACTIONS, actions)
    storage.bucket(bucket).blob(f"backup_jobs/{prod_dataset}/{now.date().isoformat()}.json").upload_from_string(
        json.dumps({table: 7}), content_type="application/json"
    )
    return known


def seed_scale(client: Any, project: str, audit: str, *, tables: int, days: int, now: dt.datetime) -> dict[str, int]:
    """`days` of history for `tables` prod tables: hourly backup runs (one snapshot action per table
    each), a daily drill (one row per table), a weekly dev sync and qa/staging reseed; each table built
    by one INSERT ... SELECT over GENERATE_ARRAY. Returns the rows written per table."""
    hours = days * 24
    runs = quote(project, audit, RUNS)
    actions = quote(project, audit, TABLE_ACTIONS)
    drills = quote(project, audit, RECOVERY_DRILLS)
    run_query(
        client,
        f"""
        insert into {runs} (recorded_at, dag_id, run_id, run_type, environment, cut, status, started_at,
                            duration_seconds, objects, failed, row_count, est_bytes_billed, jobs)
        select
            timestamp_sub(@now, interval h hour), 'backup_ladder', concat('scheduled__backup-', cast(h as string)),
            'scheduled', 'backup', timestamp_sub(@now, interval h hour), if(mod(h, 97) = 5, 'failed', 'success'),
            timestamp_sub(@now, interval h hour), 30.0, @tables, 0, 0, 0, @tables
        from unnest(generate_array(0, @hours - 1)) as h
        union all
        select
            timestamp_sub(@now, interval d day), dag, concat('scheduled__', dag, '-', cast(d as string)),
            'scheduled', env, timestamp_sub(@now, interval d day), 'success', timestamp_sub(@now, interval d day),
            600.0, @tables, 0, @tables * 1000, @tables * 1048576, @tables * 2
        from unnest(generate_array(0, @days - 1, 7)) as d
        cross join unnest([struct('prod_to_dev_sync' as dag, 'dev' as env),
                           struct('reseed_environments' as dag, 'qa,staging' as env)])
        union all
        select
            timestamp_sub(@now, interval d day), 'recovery_drill', concat('scheduled__drill-', cast(d as string)),
            'scheduled', 'drill', timestamp_sub(@now, interval d day), 'success', timestamp_sub(@now, interval d day),
            900.0, @tables, 0, @tables * 10, 0, @tables
        from unnest(generate_array(0, @days - 1)) as d
    """,
        now=now,
        tables=tables,
        hours=hours,
        days=days,
    )
    run_query(
        client,
        f"""
        insert into {actions} (recorded_at, dag_id, run_id, environment, table_name, target, action, status,
                               row_count, seconds, jobs)
        select
            timestamp_sub(@now, interval h hour), 'backup_ladder', concat('scheduled__backup-', cast(h as string)),
            'backup', concat('sales.t', format('%05d', t)),
            concat('backup_sales.t', format('%05d', t), '__', format_timestamp('%Y%m%dT%H00Z',
                   timestamp_sub(@now, interval h hour))),
            'snapshot', 'ok', 100, 1.0, 1
        from unnest(generate_array(0, @hours - 1)) as h
        cross join unnest(generate_array(0, @tables - 1)) as t
    """,
        now=now,
        tables=tables,
        hours=hours,
    )
    run_query(
        client,
        f"""
        insert into {drills} (recorded_at, dag_id, run_id, logical_date, point_in_time, dataset, table_name,
                              source_kind, source, rpo_seconds, rto_seconds, row_count, status)
        select
            timestamp_sub(@now, interval d day), 'recovery_drill', concat('scheduled__drill-', cast(d as string)),
            timestamp_sub(@now, interval d day), timestamp_sub(@now, interval d + 1 day), 'sales',
            concat('t', format('%05d', t)), 'snapshot', 'backup_sales', 3600.0 * (20 + mod(t, 4)),
            5.0 + mod(t * 7 + d, 40), 100, if(mod(d, 30) = 7 and t = 3, 'failed', 'ok')
        from unnest(generate_array(0, @days - 1)) as d
        cross join unnest(generate_array(0, @tables - 1)) as t
    """,
        now=now,
        tables=tables,
        days=days,
    )
    return {
        "runs": hours + 2 * len(range(0, days, 7)) + days,
        "table_actions": hours * tables,
        "recovery_drills": days * tables,
    }


def seed_drills(
    client: Any,
    project: str,
    audit: str,
    *,
    now: dt.datetime,
    days: int,
    failed: tuple[int, ...],
    dataset: str = "sales",
    table: str = "orders",
) -> list[dict[str, Any]]:
    """One drill row a day for `days` days (RTO 20-69 s, RPO 20-24 h); the days in `failed` failed."""
    rows = []
    for d in range(days, 0, -1):
        at = now - dt.timedelta(days=d, hours=1)
        status = "failed" if d in failed else "ok"
        rows.append(
            {
                "recorded_at": at,
                "dag_id": "recovery_drill",
                "run_id": f"scheduled__daily-drill-{d:02d}",
                "logical_date": at,
                "point_in_time": at - dt.timedelta(days=1),
                "dataset": dataset,
                "table_name": table,
                "source_kind": "snapshot",
                "source": f"backup_{dataset}",
                "rpo_seconds": 3600.0 * (20 + d % 5),
                "rto_seconds": float(20 + (d * 37) % 50),
                "row_count": 10,
                "status": status,
                "error": "checksum mismatch" if status == "failed" else None,
            }
        )
    insert(client, project, audit, RECOVERY_DRILLS, rows)
    return rows
