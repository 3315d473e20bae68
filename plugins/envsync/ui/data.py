"""What the envsync page shows, read from envsync's audit tables, backup datasets and state bucket.

Every figure is aggregated in BigQuery by the queries under sql/dashboard/ (values bound as query
parameters, identifiers validated and quoted), so the page reads a few hundred rows whatever the size
of the audit tables. Reads only: every statement is checked by the write guard's parser to write
nothing before it is sent. The result is cached for CACHE_SECONDS per config.

Sources (the audit dataset is read in the audit project, the backups in the backup project):
    envsync_audit.runs             last run and last successful run per environment (90 days)
    envsync_audit.table_actions    pinned snapshots and the last backup run per prod table (7 days)
    envsync_audit.recovery_drills  RTO and RPO per drill run (90 days)
    envsync_audit.parity           the latest check's findings per environment, when the table exists
    envsync_audit.migrations       the migration version per environment, when the table exists
    backup_<ds>.INFORMATION_SCHEMA.TABLES   the snapshots that exist now
    the state bucket               seed versions (run manifests), snapshot jobs today (backup_jobs/),
                                   daily exports (the export bucket's backups/<ds>/)
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from envsync.backups.ladder import (
    SNAPSHOT_JOBS_PER_TABLE_PER_DAY,
    Backup,
    parse_snapshot_name,
    rungs_served,
    snapshot_name,
)
from envsync.backups.snapshots import BackupCatalog
from envsync.core.config import ENV_NAMES
from envsync.core.guard import statement_write_targets, to_query_parameters
from envsync.core.identifiers import quote, quote_dataset
from envsync.core.sqltemplates import render
from envsync.observe.audit import RECOVERY_DRILLS, RUNS, TABLE_ACTIONS

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.config import EnvsyncConfig
    from envsync.core.manifest import ManifestStore

log = logging.getLogger(__name__)

UTC = dt.UTC
CACHE_SECONDS = 60
STALE_SECONDS = 600  # older figures are served while a background read replaces them (DashboardCache)
HISTORY_DAYS = 90  # runs and drills shown
COVERAGE_DAYS = 7  # the backup coverage timeline
PARITY = "parity"
MIGRATIONS = "migrations"
AUDIT_TABLES = (RUNS, TABLE_ACTIONS, RECOVERY_DRILLS, PARITY, MIGRATIONS)
# columns a table must have for its section to be shown (parity and migrations are optional features)
REQUIRED_COLUMNS = {
    PARITY: ("checked_at", "dag_id", "run_id", "environment", "object_name", "finding", "status", "detail"),
    MIGRATIONS: ("applied_at", "environment", "version", "name", "status", "error", "dag_id", "run_id"),
}
# environments shown even before their first run, in this order; others (test_<name>) follow
CONFIGURED_ENVIRONMENTS = ("dev", "qa", "staging", "prodcopy", "backup", "drill")
# how often an environment is refreshed on schedule, and the slack before it is called stale; red at
# twice the period plus the slack. prod-copy and test environments are refreshed on demand: never stale.
EXPECTED_EVERY = {
    "dev": (dt.timedelta(days=7), dt.timedelta(days=1)),
    "qa": (dt.timedelta(days=7), dt.timedelta(days=1)),
    "staging": (dt.timedelta(days=7), dt.timedelta(days=1)),
    "backup": (dt.timedelta(hours=1), dt.timedelta(hours=1)),
    "drill": (dt.timedelta(days=1), dt.timedelta(days=1)),
}
# a coverage gap: longer than a day (the daily rung) plus the ladder's hourly cadence without a restore point
GAP_LIMIT = dt.timedelta(hours=25)
STATE_ORDER = {"green": 0, "grey": 1, "amber": 2, "red": 3}


class DashboardReadOnlyError(RuntimeError):
    """A dashboard statement would write: the page never writes."""


# ------------------------------------------------------------------------------------------ model


@dataclass
class RunLink:
    dag_id: str
    run_id: str


@dataclass
class EnvironmentStatus:
    name: str
    state: str  # green | amber | red | grey (no run recorded)
    reasons: list[str]
    last_run: RunLink | None = None
    last_status: str | None = None
    last_at: dt.datetime | None = None
    ok_run: RunLink | None = None
    cut: dt.datetime | None = None
    ok_at: dt.datetime | None = None
    age_seconds: float | None = None
    tables_ok: int | None = None
    tables_failed: int | None = None
    rows: int | None = None
    est_bytes_billed: int | None = None
    seed_version: str | None = None
    migration_version: int | None = None
    runs: int = 0
    failed_runs: int = 0
    project: str | None = None  # the environment's project, shown when environments live in several


@dataclass
class LeaseRow:
    """Who holds an environment's lease (envsync.core.lease): the run writing it now."""

    environment: str
    run: RunLink
    task_id: str
    deployment: str
    since: dt.datetime | None
    heartbeat: dt.datetime | None


@dataclass
class RestorePoint:
    at: dt.datetime
    kind: str  # snapshot | pinned | export
    label: str  # snapshot name and the rungs it serves, or the export's day


@dataclass
class TableCoverage:
    table: str  # <prod dataset>.<table>
    points: list[RestorePoint]
    time_travel_from: dt.datetime  # the time-travel window: any instant since then is a restore point
    largest_gap_seconds: float
    gap_from: dt.datetime
    gap_to: dt.datetime
    jobs_today: int
    last_run: RunLink | None = None
    last_status: str | None = None

    @property
    def gap(self) -> bool:
        return self.largest_gap_seconds > GAP_LIMIT.total_seconds()


@dataclass
class DrillRun:
    run: RunLink
    at: dt.datetime
    point_in_time: dt.datetime | None
    tables: int
    failed_tables: int
    rto_seconds: float | None
    rpo_seconds: float | None
    failed_names: str | None


@dataclass
class ParityFinding:
    environment: str
    run: RunLink
    at: dt.datetime
    object: str
    finding: str
    status: str  # drift | expected | unknown
    detail: str | None = None


@dataclass
class MigrationStatus:
    environment: str
    version: int | None
    name: str | None
    applied_at: dt.datetime | None
    run: RunLink | None
    last_version: int | None
    last_status: str | None
    last_error: str | None
    last_run: RunLink | None


@dataclass
class OptionalSection:
    """parity / migrations: shown when the audit table exists with the columns the page reads."""

    table: str
    present: bool = False
    missing_columns: list[str] = field(default_factory=list)


@dataclass
class Dashboard:
    project: str
    audit_dataset: str
    generated_at: dt.datetime
    seconds: float
    environments: list[EnvironmentStatus]
    coverage: list[TableCoverage]
    coverage_from: dt.datetime
    snapshot_job_limit: int
    drills: list[DrillRun]
    parity: OptionalSection
    parity_findings: list[ParityFinding]
    migrations: OptionalSection
    migration_status: list[MigrationStatus]
    notes: list[str]
    leases: list[LeaseRow] = field(default_factory=list)
    # prod's and each environment's project when environments live in several (empty: all in `project`)
    projects: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, dt.datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        data = plain(asdict(self))
        for item, cov in zip(data["coverage"], self.coverage, strict=False):
            item["gap"] = cov.gap
        return data


# ----------------------------------------------------------------------------------- pure logic


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def human_age(seconds: float) -> str:
    """`45 s`, `12 min`, `5 h`, `3 d 4 h`: how long ago, for people."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    days, rest = divmod(seconds, 86400)
    hours = rest / 3600
    return f"{days:.0f} d {hours:.0f} h" if hours >= 1 else f"{days:.0f} d"


def assess(
    env: str,
    *,
    last_status: str | None,
    last_error: str | None,
    last_at: dt.datetime | None,
    ok_at: dt.datetime | None,
    drift_findings: int,
    now: dt.datetime,
) -> tuple[str, list[str]]:
    """The red/amber/green state of an environment and the reasons, worst first (pure).

    red: its last run failed, it never succeeded, or it is more than twice its schedule late;
    amber: stale (older than its schedule plus the slack in EXPECTED_EVERY) or drifted (parity findings);
    grey: no run recorded in HISTORY_DAYS; green otherwise.
    """
    found: list[tuple[str, str]] = []
    kind = "test" if env.startswith("test") else env
    if last_at is None:
        return "grey", [f"no run recorded in the last {HISTORY_DAYS} days"]
    if last_status != "success":
        detail = f": {last_error.splitlines()[0][:200]}" if last_error else ""
        found.append(
            (
                "red",
                f"failed: the last run ({human_age((now - last_at).total_seconds())} ago) ended {last_status}{detail}",
            )
        )
    if ok_at is None:
        found.append(("red", f"no successful run in the last {HISTORY_DAYS} days"))
    else:
        age = now - ok_at
        if kind in EXPECTED_EVERY:
            every, slack = EXPECTED_EVERY[kind]
            if age > 2 * every + slack:
                found.append(
                    (
                        "red",
                        f"stale: last success {human_age(age.total_seconds())} ago, "
                        f"expected every {human_age(every.total_seconds())}",
                    )
                )
            elif age > every + slack:
                found.append(
                    (
                        "amber",
                        f"stale: last success {human_age(age.total_seconds())} ago, "
                        f"expected every {human_age(every.total_seconds())}",
                    )
                )
    if drift_findings:
        found.append(
            (
                "amber",
                f"drifted: {drift_findings} parity finding{'s' if drift_findings != 1 else ''} "
                "not explained by a migration",
            )
        )
    if not found:
        age_text = human_age((now - ok_at).total_seconds()) if ok_at else "?"
        return "green", [f"fresh: last success {age_text} ago"]
    found.sort(key=lambda item: -STATE_ORDER[item[0]])
    return found[0][0], [reason for _, reason in found]


def largest_gap(
    points: Sequence[dt.datetime], start: dt.datetime, time_travel_from: dt.datetime, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The longest stretch (from, to) of [start, now] without a restore point.

    Every instant since `time_travel_from` is a restore point itself (time travel); before it, the
    restore points are `points` (snapshots, pinned backups, exports). An instant before the first point
    counts from `start` (the timeline shows nothing older)."""
    covered_from = max(start, min(time_travel_from, now))
    marks = sorted(p for p in points if start <= p < covered_from)
    edges = [start, *marks, covered_from]
    return max(zip(edges, edges[1:], strict=False), key=lambda pair: pair[1] - pair[0])


def table_coverage(
    table: str,
    snapshots: Sequence[Backup],
    exports: Sequence[dt.date],
    *,
    ladder: Any,
    time_travel_hours: int,
    jobs_today: int,
    now: dt.datetime,
    start: dt.datetime,
    last_run: RunLink | None = None,
    last_status: str | None = None,
) -> TableCoverage:
    """The restore points of one prod table that exist now, with the rung each snapshot serves (pure)."""
    served = rungs_served(ladder, snapshots, now)
    points = []
    for snap in snapshots:
        if snap.pinned:
            points.append(RestorePoint(snap.taken_at, "pinned", f"{snap.name} (pinned)"))
        else:
            rungs = ", ".join(served.get(snap.name, [])) or ("newest" if snap is snapshots[-1] else "not on a rung")
            points.append(RestorePoint(snap.taken_at, "snapshot", f"{snap.name} ({rungs})"))
    for day in exports:
        at = dt.datetime.combine(day, dt.time(0), tzinfo=UTC)
        points.append(RestorePoint(at, "export", f"export of {day.isoformat()}"))
    points.sort(key=lambda p: p.at)
    tt_from = now - dt.timedelta(hours=time_travel_hours)
    gap_from, gap_to = largest_gap([p.at for p in points], start, tt_from, now)
    return TableCoverage(
        table, points, tt_from, (gap_to - gap_from).total_seconds(), gap_from, gap_to, jobs_today, last_run, last_status
    )


# ------------------------------------------------------------------------------------------ reading


class DashboardReader:
    """Reads the dashboard through the client factory's clients; one `read()` is a few parallel queries."""

    def __init__(
        self,
        config: EnvsyncConfig,
        client: bigquery.Client,
        store: ManifestStore,
        exports: ManifestStore | None = None,
        *,
        workers: int = 8,
    ):
        self.config = config
        self.client = client
        self.store = store
        self.catalog = BackupCatalog(config, client, store, exports)
        self.workers = workers
        self.timings: dict[str, float] = {}  # seconds per query (summed over datasets), of the last read

    # ---------------------------------------------------------------------------- BigQuery

    def query(self, name: str, params: dict[str, Any] | None = None, **identifiers: str) -> list[dict[str, Any]]:
        """Rows of sql/dashboard/<name>.sql; refused before it is sent if it would write anything."""
        from google.cloud import bigquery

        sql = render(f"dashboard/{name}", **identifiers)
        targets = statement_write_targets(sql, self.config.audit_project)
        if targets:
            raise DashboardReadOnlyError(f"dashboard/{name}.sql would write {', '.join(map(str, targets))}")
        job_config = bigquery.QueryJobConfig(
            query_parameters=to_query_parameters(params or {}), labels={"envsync-dag": "ui", "envsync-task": name}
        )
        started = time.monotonic()
        job = self.client.query(sql, job_config=job_config, location=self.config.location)
        rows = [dict(row.items()) for row in job.result()]
        seconds = time.monotonic() - started
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        log.debug("dashboard/%s: %d rows in %.2fs", name, len(rows), seconds)
        return rows

    def _audit_ref(self, table: str) -> str:
        return quote(self.config.audit_project, self.config.audit.dataset, table)

    def _audit_name(self, table: str) -> str:
        """An audit table as the page names it (with its project when environments live in several)."""
        return self.config.qualified(self.config.audit_project, self.config.audit.dataset, table)

    def project_of(self, environment: str) -> str | None:
        """The project of an environment the page lists (test_<name>: the test project), when the layout
        is split; None in the one-project layout or for a name that is not one environment."""
        if not self.config.split:
            return None
        name = "test" if environment.startswith("test_") else environment
        return self.config.project_of(name) if name in ("prod", *ENV_NAMES) else None

    def audit_columns(self) -> dict[str, list[str]]:
        from google.api_core.exceptions import NotFound

        try:
            rows = self.query(
                "audit_columns",
                {"tables": list(AUDIT_TABLES)},
                dataset=quote_dataset(self.config.audit_project, self.config.audit.dataset),
            )
        except NotFound:
            return {}
        return {row["table_name"]: list(row["columns"]) for row in rows}

    def _leases(self) -> list[LeaseRow]:
        """Every lease in the state bucket now (leases/<environment>.json): who writes what, since when."""
        import json

        from envsync.core.lease import PREFIX, Holder

        rows = []
        for blob in self.store.client.list_blobs(self.store.bucket_name, prefix=f"{PREFIX}/"):
            name = blob.name.removeprefix(f"{PREFIX}/")
            if not name.endswith(".json") or name.endswith(".last.json"):
                continue
            try:
                holder = Holder.from_dict(json.loads(blob.download_as_text()))
            except Exception:  # released between the listing and the read
                continue
            rows.append(
                LeaseRow(
                    name.removesuffix(".json"),
                    RunLink(holder.dag_id, holder.run_id),
                    holder.task_id,
                    holder.deployment,
                    _utc(holder.since or None),
                    _utc(blob.updated),
                )
            )
        return sorted(rows, key=lambda r: r.environment)

    # ---------------------------------------------------------------------------- the page

    def read(self, now: dt.datetime | None = None) -> Dashboard:
        started = time.monotonic()
        self.timings = {}
        now = (now or dt.datetime.now(UTC)).astimezone(UTC)
        since = now - dt.timedelta(days=HISTORY_DAYS)
        coverage_from = now - dt.timedelta(days=COVERAGE_DAYS)
        notes: list[str] = []
        columns = self.audit_columns()
        parity = OptionalSection(self._audit_name(PARITY))
        migrations = OptionalSection(self._audit_name(MIGRATIONS))
        for section, name in ((parity, PARITY), (migrations, MIGRATIONS)):
            if name in columns:
                section.missing_columns = [c for c in REQUIRED_COLUMNS[name] if c not in columns[name]]
                section.present = not section.missing_columns
        datasets = list(self.config.prod.datasets)
        today = now.date()

        with ThreadPoolExecutor(max_workers=self.workers) as pool:

            def submit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
                return pool.submit(fn, *args, **kwargs)

            empty: Callable[[], list[Any]] = list
            env_rows = (
                submit(self.query, "environments", {"since": since}, runs=self._audit_ref(RUNS))
                if RUNS in columns
                else submit(empty)
            )
            drill_rows = (
                submit(self.query, "drills", {"since": since}, drills=self._audit_ref(RECOVERY_DRILLS))
                if RECOVERY_DRILLS in columns
                else submit(empty)
            )
            action_rows = (
                submit(
                    self.query,
                    "backup_actions",
                    {"since": since, "recent": coverage_from},
                    actions=self._audit_ref(TABLE_ACTIONS),
                )
                if TABLE_ACTIONS in columns
                else submit(empty)
            )
            parity_rows = (
                submit(self.query, "parity", {"since": since}, parity=self._audit_ref(PARITY))
                if parity.present
                else submit(empty)
            )
            migration_rows = (
                submit(self.query, "migrations", migrations=self._audit_ref(MIGRATIONS))
                if migrations.present
                else submit(empty)
            )
            snapshots = {ds: submit(self._snapshots, ds) for ds in datasets}
            windows = {ds: submit(self._time_travel_hours, ds) for ds in datasets}
            jobs = {ds: submit(self.catalog.jobs_today, ds, today) for ds in datasets}
            exports = (
                {ds: submit(self.catalog.exports, ds) for ds in datasets} if self.config.backups.export.enabled else {}
            )
            lease_rows = submit(self._leases)
            envs = env_rows.result()
            versions = {
                row["environment"]: submit(self._seed_version, row["ok_manifest"])
                for row in envs
                if row.get("ok_manifest") and _is_seeded(row["environment"])
            }

            findings = [
                ParityFinding(
                    r["environment"],
                    RunLink(r["dag_id"], r["run_id"]),
                    _utc(r["checked_at"]),  # type: ignore[arg-type]  # checked_at is never null (partitioning)
                    r["object_name"] or "",
                    r["finding"],
                    r["status"],
                    r["detail"],
                )
                for r in parity_rows.result()
            ]
            migration_status = [_migration(r) for r in migration_rows.result()]
            environments = self._environments(
                envs, {k: v.result() for k, v in versions.items()}, findings, migration_status, now
            )
            coverage = self._coverage(
                {ds: f.result() for ds, f in snapshots.items()},
                {ds: f.result() for ds, f in windows.items()},
                {ds: f.result() for ds, f in jobs.items()},
                {ds: f.result() for ds, f in exports.items()},
                action_rows.result(),
                now,
                coverage_from,
            )
            drills = [
                DrillRun(
                    RunLink(r["dag_id"], r["run_id"]),
                    _utc(r["recorded_at"]),  # type: ignore[arg-type]  # recorded_at is never null (partitioning)
                    _utc(r["point_in_time"]),
                    int(r["tables"]),
                    int(r["failed_tables"]),
                    r["rto_seconds"],
                    r["rpo_seconds"],
                    r["failed_names"],
                )
                for r in drill_rows.result()
            ]

        try:
            leases = lease_rows.result()
        except Exception as error:  # the page still shows everything else
            leases = []
            notes.append(f"could not read the environment leases in gs://{self.store.bucket_name}/leases/: {error}")
        for name in (RUNS, TABLE_ACTIONS, RECOVERY_DRILLS):
            if name not in columns:
                notes.append(f"{self._audit_name(name)} does not exist yet: no run has recorded to it")
        seconds = time.monotonic() - started
        log.info(
            "envsync page data read in %.2fs: %d environments, %d tables, %d drill runs",
            seconds,
            len(environments),
            len(coverage),
            len(drills),
        )
        projects = (
            {name: self.config.project_of(name) for name in ("prod", *CONFIGURED_ENVIRONMENTS, "test")}
            if self.config.split
            else {}
        )
        return Dashboard(
            self.config.project,
            self.config.qualified(self.config.audit_project, self.config.audit.dataset),
            now,
            seconds,
            environments,
            coverage,
            coverage_from,
            SNAPSHOT_JOBS_PER_TABLE_PER_DAY,
            drills,
            parity,
            findings,
            migrations,
            migration_status,
            notes,
            leases,
            projects,
        )

    def _snapshots(self, dataset: str) -> dict[str, list[dt.datetime]]:
        """{table: [taken_at, ...]} of the snapshots that exist now in backup_<dataset> (backup project)."""
        from google.api_core.exceptions import NotFound

        backup_ds = self.catalog.backup_dataset(dataset)
        try:
            rows = self.query("snapshots", dataset=quote_dataset(self.config.project_of("backup"), backup_ds))
        except NotFound:
            return {}
        found: dict[str, list[dt.datetime]] = {}
        for row in rows:
            for stamp in row["stamps"]:
                parsed = parse_snapshot_name(f"{row['table_name']}__{stamp}")
                if parsed:
                    found.setdefault(parsed[0], []).append(parsed[1])
        return found

    def _time_travel_hours(self, dataset: str) -> int:
        from google.api_core.exceptions import NotFound

        from envsync.bigquery.timetravel import restore_window_hours

        try:
            return restore_window_hours(self.config, self.client, dataset)
        except NotFound:
            return 0

    def _seed_version(self, uri: str) -> str | None:
        prefix = f"gs://{self.store.bucket_name}/"
        if not uri.startswith(prefix):
            return None
        try:
            manifest = self.store.read(uri.removeprefix(prefix)) or {}
        except Exception as error:  # a manifest that cannot be read only hides the version
            log.warning("could not read the manifest %s: %s", uri, error)
            return None
        version = manifest.get("seed_version")
        if isinstance(version, dict):
            version = version.get("version")
        return str(version) if version else None

    def _environments(
        self,
        rows: list[dict[str, Any]],
        seed_versions: dict[str, str | None],
        findings: list[ParityFinding],
        migrations: list[MigrationStatus],
        now: dt.datetime,
    ) -> list[EnvironmentStatus]:
        drift: dict[str, int] = {}
        for finding in findings:
            if finding.status == "drift":
                drift[finding.environment] = drift.get(finding.environment, 0) + 1
        migration_version = {m.environment: m.version for m in migrations}
        by_name = {row["environment"]: row for row in rows}
        names = [e for e in CONFIGURED_ENVIRONMENTS] + sorted(n for n in by_name if n not in CONFIGURED_ENVIRONMENTS)
        out = []
        for name in names:
            row = by_name.get(name, {})
            last_at, ok_at = _utc(row.get("last_recorded_at")), _utc(row.get("ok_recorded_at"))
            state, reasons = assess(
                name,
                last_status=row.get("last_status"),
                last_error=row.get("last_error"),
                last_at=last_at,
                ok_at=ok_at,
                drift_findings=drift.get(name, 0),
                now=now,
            )
            objects, failed = row.get("ok_objects"), row.get("ok_failed")
            out.append(
                EnvironmentStatus(
                    name=name,
                    state=state,
                    reasons=reasons,
                    last_run=RunLink(row["last_dag_id"], row["last_run_id"]) if row else None,
                    last_status=row.get("last_status"),
                    last_at=last_at,
                    ok_run=RunLink(row["ok_dag_id"], row["ok_run_id"]) if row.get("ok_run_id") else None,
                    cut=_utc(row.get("ok_cut")),
                    ok_at=ok_at,
                    age_seconds=(now - (_utc(row.get("ok_cut")) or ok_at)).total_seconds() if ok_at else None,
                    tables_ok=None if objects is None else int(objects) - int(failed or 0),
                    tables_failed=None if failed is None else int(failed),
                    rows=row.get("ok_row_count"),
                    est_bytes_billed=row.get("ok_est_bytes_billed"),
                    seed_version=seed_versions.get(name),
                    migration_version=migration_version.get(name),
                    runs=int(row.get("runs") or 0),
                    failed_runs=int(row.get("failed_runs") or 0),
                    project=self.project_of(name),
                )
            )
        return out

    def _coverage(
        self,
        snapshots: dict[str, dict[str, list[dt.datetime]]],
        windows: dict[str, int],
        jobs: dict[str, dict[str, int]],
        exports: dict[str, dict[str, list[Any]]],
        actions: list[dict[str, Any]],
        now: dt.datetime,
        start: dt.datetime,
    ) -> list[TableCoverage]:
        pinned = {name for row in actions for name in (row.get("pinned") or [])}
        last = {row["table_name"]: dict(row["last_action"]) for row in actions}
        tables: set[str] = set(last)
        for ds in snapshots:
            tables.update(f"{ds}.{t}" for t in snapshots[ds])
            tables.update(f"{ds}.{t}" for t in exports.get(ds, {}))
        out = []
        for full in sorted(tables):
            ds, _, table = full.partition(".")
            if ds not in windows:
                continue
            backup_ds = self.catalog.backup_dataset(ds)
            snaps = []
            for taken_at in sorted(snapshots.get(ds, {}).get(table, [])):
                name = snapshot_name(table, taken_at)
                snaps.append(Backup(taken_at, name, f"{backup_ds}.{name}" in pinned))
            days = [e.day for e in exports.get(ds, {}).get(table, []) if e.day >= start.date() - dt.timedelta(days=1)]
            row = last.get(full) or {}
            out.append(
                table_coverage(
                    full,
                    snaps,
                    days,
                    ladder=self.config.backups.ladder(),
                    time_travel_hours=windows[ds],
                    jobs_today=int(jobs.get(ds, {}).get(table, 0)),
                    now=now,
                    start=start,
                    last_run=RunLink(row["dag_id"], row["run_id"]) if row else None,
                    last_status=row.get("status"),
                )
            )
        out.sort(key=lambda c: (-c.largest_gap_seconds, c.table))
        return out


def _is_seeded(environment: str) -> bool:
    return environment in ("qa", "staging") or environment.startswith("test_")


def _migration(row: dict[str, Any]) -> MigrationStatus:
    return MigrationStatus(
        environment=row["environment"],
        version=row.get("version"),
        name=row.get("name"),
        applied_at=_utc(row.get("applied_at")),
        run=RunLink(row["dag_id"], row["run_id"]) if row.get("run_id") else None,
        last_version=row.get("last_version"),
        last_status=row.get("last_status"),
        last_error=row.get("last_error"),
        last_run=RunLink(row["last_dag_id"], row["last_run_id"]) if row.get("last_run_id") else None,
    )


# ------------------------------------------------------------------------------------------ cache


class DashboardCache:
    """The last Dashboard per key: fresh for `ttl` seconds; then, up to `stale` seconds old, it is still
    served at once while one background read replaces it (so a page load does not wait for BigQuery);
    older, or when nothing was read yet, the request waits for a read. Concurrent requests share one read."""

    def __init__(
        self,
        ttl: float = CACHE_SECONDS,
        stale: float = STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        background: Callable[[Callable[[], None]], Any] | None = None,
    ):
        self.ttl = ttl
        self.stale = stale
        self.clock = clock
        self.background = background or (
            lambda fn: threading.Thread(target=fn, daemon=True, name="envsync-ui-refresh").start()
        )
        self._lock = threading.Lock()
        self._entries: dict[Any, tuple[float, Dashboard]] = {}
        self._key_locks: dict[Any, threading.Lock] = {}
        self._refreshing: set[Any] = set()

    def _store(self, key: Any, value: Dashboard) -> None:
        with self._lock:
            self._entries[key] = (self.clock(), value)

    def get(self, key: Any, load: Callable[[], Dashboard]) -> Dashboard:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
            entry = self._entries.get(key)
        if entry:
            age = self.clock() - entry[0]
            if age < self.ttl:
                return entry[1]
            if age < self.stale:
                self._refresh(key, load)
                return entry[1]
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
            if entry and self.clock() - entry[0] < self.ttl:
                return entry[1]  # read by another request meanwhile
            value = load()
            self._store(key, value)
            return value

    def _refresh(self, key: Any, load: Callable[[], Dashboard]) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def run() -> None:
            try:
                self._store(key, load())
            except Exception:  # the stale figures stay; the next request after `stale` reads again
                log.exception("could not refresh the envsync page's figures")
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        self.background(run)
