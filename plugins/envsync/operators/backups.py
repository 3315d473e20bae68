"""Operators of backup_ladder: plan (one task), back up (mapped per dataset), report (one task).

Sources are read in their own projects (prod's, staging's); snapshots are written into the backup
environment's project by jobs run in its jobs project (`config.jobs_project_of("backup")`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from envsync.core.clients import DEFAULT_CONN_ID
from envsync.operators.common import DatasetUnitOperator, manifest_store, recorded_cut, run_prefix
from envsync.operators.leasing import renews_taken_leases

if TYPE_CHECKING:
    from airflow.sdk import Context

UTC = dt.UTC


class PlanBackupOperator(BaseOperator):
    """Fix T, list prod's tables, decide per table whether this run snapshots it (ladder + quota; a
    table created after T is skipped with that reason: it cannot be read as of T).

    A scheduled run snapshots each table as of its logical date (the hour); a manual run with a
    `reason` takes a pinned snapshot of every selected table now. Time-travel rungs are recorded as
    restore points. Returns one reference per dataset for the mapped backup task.
    """

    template_fields: Sequence[str] = ("datasets", "reason", "expiry_days", "environments")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        datasets: Any = None,
        reason: Any = "",
        expiry_days: Any = None,
        environments: Any = None,
        gcp_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.datasets = datasets
        self.environments = environments
        self.reason = reason
        self.expiry_days = expiry_days
        self.gcp_conn_id = gcp_conn_id

    @renews_taken_leases
    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.backups.snapshots import BackupError
        from envsync.bigquery.discovery import DiscoveryError
        from envsync.core.config import ConfigError
        from envsync.sync.prodcopy import AsOfError

        try:
            return self._plan(context)
        except (BackupError, ConfigError, DiscoveryError, AsOfError, ValueError) as error:
            raise AirflowFailException(str(error)) from error

    def _plan(self, context: Context) -> list[dict[str, str]]:
        from envsync.backups.ladder import plan_snapshot, restore_points, snapshot_expiry, snapshot_name
        from envsync.backups.snapshots import BackupCatalog, source_project
        from envsync.bigquery.discovery import base_tables
        from envsync.bigquery.timetravel import dataset_hours, effective_window
        from envsync.core.clients import bigquery_client
        from envsync.core.config import load_config
        from envsync.core.window import anchor_from_context
        from envsync.observe.report import render_table, result_row
        from envsync.operators.leasing import backup_lease, take_leases
        from envsync.operators.params import check_backup_environments, validate_backup_params
        from envsync.sync.prodcopy import check_as_of

        config = load_config()
        datasets, reason, expiry_days = validate_backup_params(config, self.datasets, self.reason, self.expiry_days)
        environments = check_backup_environments(config, self.environments)
        pinned = bool(reason)
        store = manifest_store(config, self.gcp_conn_id)
        store.ensure_bucket(config.location)
        prefix = run_prefix(store, context)
        now = dt.datetime.now(UTC)
        cut = recorded_cut(store, prefix)
        if cut is None:
            # the state at the run's hour (its logical date); a manual pin: now
            cut = now if pinned else min(anchor_from_context(context), now)
            cut = cut.replace(microsecond=0)
        ladder = config.backups.ladder()
        client = bigquery_client(config.jobs_project_of("backup"), config.location, self.gcp_conn_id)
        skipped = busy_sources(config, self.gcp_conn_id, context, environments, cut)
        for env, why in skipped.items():
            self.log.warning("not backing up %s this run: %s", env, why)
        environments = [env for env in environments if env not in skipped]
        if environments:
            take_leases(config, self.gcp_conn_id, context, self.task_id, [backup_lease(e) for e in environments])
        units = backup_units(config, client, environments, datasets)
        catalog = BackupCatalog(config, client, store)
        for unit in units:
            catalog.source_dataset(unit)  # a backup dataset in another location fails here, before any job
            # the dataset's own window (max_time_travel_hours, in its project), narrowed by prod.time_travel_hours
            hours = dataset_hours(client, source_project(config, unit), unit)
            window = effective_window(unit, hours, config.prod.time_travel_hours)
            self.log.info("time travel on %s: %d h (%s)", unit, window.hours, window.source)
            check_as_of(cut, now, window)
        if config.backups.export.enabled:
            manifest_store(config, self.gcp_conn_id, config.export_bucket).ensure_bucket(config.location)
        expires = (cut + dt.timedelta(days=expiry_days)) if pinned else snapshot_expiry(ladder, cut)
        planned: list[dict[str, Any]] = []
        decisions: dict[str, Any] = {}
        for dataset in units:
            project = source_project(config, dataset)
            tables = base_tables(client, project, dataset)
            existing = catalog.snapshots(dataset)
            used = catalog.jobs_today(dataset, now.date())
            backup_ds = config.env_dataset("backup", dataset)
            decisions[dataset] = {}
            for table in sorted(tables):
                newest = max((s.taken_at for s in existing.get(table, []) if not s.pinned), default=None)
                decision = plan_snapshot(
                    ladder,
                    used.get(table, 0),
                    cut,
                    table=config.qualified(project, dataset, table),
                    newest=newest,
                    pinned=pinned,
                    created=tables[table],
                )
                name = snapshot_name(table, cut)
                decisions[dataset][table] = {"take": decision.take, "reason": decision.reason, "name": name}
                planned.append(
                    {
                        **result_row(
                            config.qualified(project, dataset, table),
                            config.qualified(catalog.backup_project, backup_ds, name),
                            ("pin" if pinned else "snapshot") if decision.take else "skip",
                            decision.reason,
                        ),
                        "unit": dataset,
                        "status": "planned",
                    }
                )
        points = [p.isoformat() for p in restore_points(ladder, cut)]
        manifest = {
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "cut": cut.isoformat(),
            "env": "backup",
            "window": None,
            "pinned": pinned,
            "reason": reason,
            "expires": expires.isoformat(),
            "restore_points": points,
            "decisions": decisions,
            "skipped_environments": skipped,
            "units": units,
            "planned": planned,
            "params": {
                "datasets": units,
                "environments": environments,
                "reason": reason,
                "expiry_days": expiry_days,
                "dry_run": False,
            },
        }
        uri = store.write(f"{prefix}/plan.json", manifest)
        self.log.info(
            "backup %s as of T = %s (expires %s):\n%s",
            "pinned: " + reason if pinned else "ladder run",
            cut.isoformat(),
            expires.isoformat(),
            render_table(["table", "action", "why"], [[r["table"], r["action"], r["reason"]] for r in planned]),
        )
        self.log.info("time-travel restore points (no snapshot taken): %s", ", ".join(points) or "none")
        self.log.info("manifest: %s", uri)
        return [{"dataset": d, "manifest": uri} for d in units]


def busy_sources(config: Any, conn_id: str, context: Context, environments: list[str], cut: Any) -> dict[str, str]:
    """The environments (prod, staging) whose state at T is not a completed one: another run holds their
    lease now, or held it at T. The ladder skips them and says why; the next run backs them up."""
    from envsync.operators.leasing import leases_for

    leases = leases_for(config, conn_id)
    busy: dict[str, str] = {}
    for env in environments:
        state = leases.read(env)
        if state is not None and state.holder.run_id != context["run_id"]:
            busy[env] = f"{env} is being written by {state.holder.describe()} (since {state.holder.since})"
            continue
        last = leases.last_release(env) or {}
        since, released = last.get("since"), last.get("released")
        if since and released and since <= cut.isoformat() < released:
            busy[env] = (
                f"{env} was being written at T = {cut.isoformat()} by run {last.get('run_id')} of DAG "
                f"{last.get('dag_id')} ({since} to {released}): its state at T is not a completed one"
            )
    return busy


def backup_units(config: Any, client: Any, environments: list[str], datasets: list[str]) -> list[str]:
    """The datasets a ladder run backs up: prod's `<ds>` and, for staging, `staging_<ds>` (its snapshots go
    to `backup_staging_<ds>`). A staging dataset that does not exist (never seeded) is skipped, logged."""
    from envsync.bigquery.discovery import list_existing

    log = logging.getLogger(__name__)
    units = []
    for env in environments:
        for dataset in datasets:
            source = config.source_dataset(env, dataset)
            if env != "prod" and list_existing(client, config.source_project(env), source) is None:
                shown = config.qualified(config.source_project(env), source)
                log.warning("%s dataset %s does not exist (not seeded yet): nothing to back up", env, shown)
                continue
            units.append(source)
    return units


class BackupDatasetOperator(DatasetUnitOperator):
    """Take the planned snapshots of one dataset, record their manifests, export the daily rung, thin.

    Its jobs run in the backup environment's jobs project."""

    def writes_env(self, manifest: dict[str, Any], context: Context) -> str:
        return "backup"

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from envsync.backups.snapshots import BackupCatalog, BackupEngine, source_env
        from envsync.bigquery.jobs import run_recorded
        from envsync.core.guard import ProdWriteRefused
        from envsync.observe.report import result_row

        dataset = self.dataset_ref["dataset"]
        store = manifest_store(config, self.gcp_conn_id)
        exports = manifest_store(config, self.gcp_conn_id, config.export_bucket)
        catalog = BackupCatalog(config, runner.bq.client, store, exports)
        engine = BackupEngine(config, runner.bq, runner, catalog)
        cut = dt.datetime.fromisoformat(manifest["cut"])
        pinned = manifest["pinned"]
        expires = dt.datetime.fromisoformat(manifest["expires"])
        # in the source dataset's location, checked before any job
        backup_ds = engine.ensure_backup_dataset(dataset)
        before = catalog.snapshots(dataset)  # listed once: the daily-rung check needs only earlier snapshots
        results = []
        source = source_env(config, dataset)
        busy = busy_sources(config, self.gcp_conn_id, context, [source], cut).get(source)
        if busy:  # a writer took the source's lease after the plan: skip rather than snapshot a half state
            self.log.warning("not backing up %s: %s", dataset, busy)
        for table, decision in sorted(manifest["decisions"][dataset].items()):
            row = result_row(
                config.qualified(config.source_project(source), dataset, table),
                config.qualified(catalog.backup_project, backup_ds, decision["name"]),
                "pin" if pinned else "snapshot",
                decision["reason"],
                checksum=None,
                exported=None,
            )
            if not decision["take"] or busy:
                results.append({**row, "action": "skip", "status": "skipped", **({"reason": busy} if busy else {})})
                continue

            def work(stats: Any, table: str = table) -> dict[str, Any]:
                taken = engine.snapshot(
                    dataset,
                    table,
                    taken_at=cut,
                    as_of=cut,
                    pinned=pinned,
                    reason=manifest["reason"],
                    expires=expires,
                    stats=stats,
                )
                out = {"rows": taken["rows"], "checksum": taken["checksum"]}
                if config.backups.export.enabled and not pinned and self._first_of_day(before.get(table, []), cut):
                    out["exported"] = engine.export(taken, stats)["files"][0].rsplit("/", 1)[0] + "/"
                return out

            results.append(run_recorded(row, work, deterministic=(ProdWriteRefused,)))
        for snap in engine.thin(dataset, cut):
            results.append(
                {
                    **result_row(
                        config.qualified(config.source_project(source), dataset, snap.table),
                        str(snap),
                        "drop",
                        f"thinned by the ladder (taken {snap.taken_at.isoformat()})",
                    ),
                    "status": "dropped",
                }
            )
        return dataset, results

    @staticmethod
    def _first_of_day(snapshots: list[Any], cut: dt.datetime) -> bool:
        """Is the snapshot at `cut` the table's daily rung: its first ladder snapshot of that UTC day?"""
        return not any(s.taken_at.date() == cut.date() and s.taken_at < cut and not s.pinned for s in snapshots)
