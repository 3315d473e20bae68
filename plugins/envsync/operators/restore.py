"""Operators of the restore and recovery_drill DAGs: plan, restore (mapped per dataset), report.

Both read the backups of one `source` environment: prod (`<ds>`, backups in `backup_<ds>`) or staging
(`staging_<ds>`, backups in `backup_staging_<ds>`, drills into `drill_staging_<ds>`).

restore: one prod dataset to a point in time T, into a scratch `drill_<ds>` (default), another
environment dataset, or - with the exact confirmation phrase - prod itself, after a pinned backup
of prod's current state. recovery_drill: every dataset to its state at the run's logical date minus
one day, from backups only, into `drill_<ds>`; RTO and RPO per table go to the audit table.

A target dataset is written in its environment's project (drills in the drill project, `staging_<ds>` in
staging's, prod's datasets in prod's), by jobs run in that environment's jobs project.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from envsync.core.clients import DEFAULT_CONN_ID
from envsync.operators.common import (
    DatasetUnitOperator,
    RunReportOperator,
    manifest_store,
    recorded_cut,
    run_prefix,
)
from envsync.operators.leasing import renews_taken_leases

if TYPE_CHECKING:
    from airflow.sdk import Context

UTC = dt.UTC
MODES = ("restore", "drill")
DRILL_LAG = dt.timedelta(days=1)


def target_env(config: Any, target: str) -> str:
    """The environment target dataset `target` belongs to: prod for a prod dataset's name (a confirmed
    restore), else drill, staging, ... (`drill_staging_<ds>` is the drill environment's,
    `test_<name>_<ds>` the test environment's). ValueError for any other dataset."""
    from envsync.operators.leasing import lease_env, target_lease

    return "prod" if target in config.prod.datasets else lease_env(target_lease(config, target))


def target_project(config: Any, target: str) -> str:
    """The project holding target dataset `target` (its environment's)."""
    return config.project_of(target_env(config, target))


def restore_guard(config: Any, target: str, dataset: str, point_in_time: dt.datetime, confirm: Any) -> Any:
    """The write guard of a restore into `target`: the config's, or - for a prod target - the one a
    confirmed restore of that dataset allows. Raises ProdWriteRefused before any write otherwise."""
    from envsync.core.guard import ProdWriteRefused, WriteGuard, WriteTarget

    guard = WriteGuard.from_config(config)
    if target in config.prod.datasets:
        if target != dataset:
            raise ProdWriteRefused(
                f"refused to restore {dataset!r} into prod dataset {target!r}: a prod "
                "dataset can only be restored into itself"
            )
        return guard.for_prod_restore(dataset, point_in_time, confirm)
    try:
        project = target_project(config, target)
    except ValueError as error:
        raise ProdWriteRefused(f"refused to restore into {target!r}: {error}") from None
    guard.check(WriteTarget(project, target, "table"), "restore into")
    return guard


def check_target_location(config: Any, client: Any, dataset: str, target: str) -> None:
    """A target dataset that exists must be in its source dataset's location: BigQuery clones and copies
    a table into another project's dataset only within its region. ValueError naming both otherwise."""
    from google.api_core.exceptions import NotFound

    from envsync.backups.snapshots import source_project

    source = client.get_dataset(f"{source_project(config, dataset)}.{dataset}")
    try:
        existing = client.get_dataset(f"{target_project(config, target)}.{target}")
    except NotFound:
        return
    if (existing.location or "").upper() != (source.location or "").upper():
        raise ValueError(
            f"cannot restore {config.qualified(source.project, dataset)} ({source.location}) into "
            f"{config.qualified(existing.project, target)} ({existing.location}): a restore reads and writes "
            "within one location; drop the target dataset or choose another (nothing was written)"
        )


class PlanRestoreOperator(BaseOperator):
    """Fix T, check the target (and the confirmation for prod), choose each table's source, record the plan."""

    template_fields: Sequence[str] = ("datasets", "tables", "point_in_time", "target", "confirm", "source")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        mode: str,
        datasets: Any = None,
        tables: Any = None,
        point_in_time: Any = None,
        target: Any = None,
        confirm: Any = None,
        source: Any = None,
        gcp_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        self.mode = mode
        self.datasets = datasets
        self.tables = tables
        self.point_in_time = point_in_time
        self.target = target
        self.confirm = confirm
        self.source = source
        self.gcp_conn_id = gcp_conn_id

    @renews_taken_leases
    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.backups.restore import RestoreError
        from envsync.backups.snapshots import BackupError
        from envsync.bigquery.discovery import DiscoveryError
        from envsync.core.config import ConfigError
        from envsync.core.guard import ProdWriteRefused
        from envsync.core.identifiers import IdentifierError

        try:
            return self._plan(context)
        except (
            BackupError,
            ConfigError,
            DiscoveryError,
            IdentifierError,
            ProdWriteRefused,
            RestoreError,
            ValueError,
        ) as error:
            raise AirflowFailException(str(error)) from error

    def _inputs(
        self, config: Any, context: Context, now: dt.datetime, source: str
    ) -> tuple[list[str], list[str], dt.datetime, dict[str, str]]:
        """The datasets restored (prod's `<ds>`, or `staging_<ds>` for source staging), their tables, T
        and the target of each (default: its own drill dataset, `drill_<ds>` or `drill_staging_<ds>`)."""
        from envsync.backups.restore import parse_point_in_time
        from envsync.core.identifiers import validate_identifier
        from envsync.core.window import anchor_from_context
        from envsync.operators.params import check_datasets

        if self.mode == "drill":
            datasets = [config.source_dataset(source, d) for d in check_datasets(config, self.datasets)]
            point = anchor_from_context(context) - DRILL_LAG
            return datasets, [], point, {d: config.env_dataset("drill", d) for d in datasets}
        dataset = self.datasets[0] if isinstance(self.datasets, list) and len(self.datasets) == 1 else self.datasets
        if not isinstance(dataset, str) or dataset not in config.prod.datasets:
            raise ValueError(f"param dataset must be one of {config.prod.datasets}, got {self.datasets!r}")
        tables = self.tables or []
        if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
            raise ValueError(f"param tables must be a list of table names of {dataset!r}, got {self.tables!r}")
        point = parse_point_in_time(self.point_in_time, now)
        dataset = config.source_dataset(source, dataset)
        target = (self.target or "").strip() or config.env_dataset("drill", dataset)
        validate_identifier("dataset", target)
        return [dataset], tables, point, {dataset: target}

    def _plan(self, context: Context) -> list[dict[str, str]]:
        from envsync.backups.restore import BACKUP_SOURCES, SOURCES, RestoreEngine, Source
        from envsync.backups.snapshots import BackupCatalog
        from envsync.bigquery.jobs import JobRunner
        from envsync.core.clients import bigquery_client
        from envsync.core.config import load_config
        from envsync.core.guard import GuardedBigQuery
        from envsync.observe.report import render_table, result_row
        from envsync.operators.leasing import take_leases, target_lease
        from envsync.operators.params import check_environment

        config = load_config()
        now = dt.datetime.now(UTC)
        source_env = check_environment("source", self.source)
        datasets, tables, point, targets = self._inputs(config, context, now, source_env)
        store = manifest_store(config, self.gcp_conn_id)
        store.ensure_bucket(config.location)
        prefix = run_prefix(store, context)
        recorded = recorded_cut(store, prefix)
        if recorded is not None:  # a retry of this run keeps the T its first try recorded
            if self.mode == "restore" and self.point_in_time not in (None, "") and recorded != point:
                raise ValueError(f"this run already restores to {recorded.isoformat()}, not {point.isoformat()}")
            point = recorded
        if any(t in config.prod.datasets for t in targets.values()) and self.point_in_time in (None, ""):
            raise ValueError(
                "a restore into prod needs an explicit point_in_time (and the confirm phrase "
                "naming it); nothing was written"
            )
        for dataset in datasets:  # before anything is written: a prod target needs the exact confirmation
            restore_guard(config, targets[dataset], dataset, point, self.confirm)
        # one writer per environment: the target's (drill, staging, or prod for a confirmed restore)
        leases = {target_lease(config, t, target_project(config, t)) for t in targets.values()}
        take_leases(config, self.gcp_conn_id, context, self.task_id, sorted(leases))
        # the target's environment runs (and pays for) the restore's jobs
        jobs_project = config.jobs_project_of(target_env(config, targets[datasets[0]]))
        client = bigquery_client(jobs_project, config.location, self.gcp_conn_id)
        for dataset in datasets:
            check_target_location(config, client, dataset, targets[dataset])
        exports = manifest_store(config, self.gcp_conn_id, config.export_bucket)
        catalog = BackupCatalog(config, client, store, exports)
        bq = GuardedBigQuery(
            client, restore_guard(config, targets[datasets[0]], datasets[0], point, self.confirm), config.location
        )
        engine = RestoreEngine(
            config,
            bq,
            JobRunner(bq, dag_id=context["dag"].dag_id, run_id=context["run_id"], task_id=self.task_id, timeout=60),
            catalog,
        )
        allowed = BACKUP_SOURCES if self.mode == "drill" else SOURCES
        sources: dict[str, dict[str, Any]] = {}
        planned = []
        shown = {d: config.qualified(target_project(config, t), t) for d, t in targets.items()}
        for dataset in datasets:
            chosen, skipped = engine.plan(dataset, tables, point, now, allowed)
            if not chosen and not skipped:
                raise ValueError(
                    f"{source_env} dataset {engine.qualified(dataset)!r} has no tables and no backups to restore"
                )
            sources[dataset] = {t: (s.to_dict() if isinstance(s, Source) else {"error": s}) for t, s in chosen.items()}
            sources[dataset].update({t: {"skipped": why} for t, why in skipped.items()})
            for table, why in sorted(skipped.items()):
                self.log.info("%s.%s: skipped (%s)", dataset, table, why)
            for table, source in sorted(chosen.items()):
                kind, why = (source.kind, source.reason) if isinstance(source, Source) else ("none", source)
                planned.append(
                    {
                        **result_row(engine.qualified(dataset, table), f"{shown[dataset]}.{table}", kind, why),
                        "unit": dataset,
                        "status": "planned",
                    }
                )
                self.log.info("%s.%s: %s (%s)", dataset, table, kind, why)
        unrestorable = [r["table"] for r in planned if r["action"] == "none"]
        if unrestorable and any(targets[d] in config.prod.datasets for d in datasets):
            raise ValueError(
                f"refused to restore prod: no source for {unrestorable} at {point.isoformat()} (nothing was written)"
            )
        manifest = {
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "mode": self.mode,
            # prod's restores and drills are audited as the drill environment; staging's as staging
            "env": "drill" if source_env == "prod" else source_env,
            "source": source_env,
            "cut": point.isoformat(),
            "point_in_time": point.isoformat(),
            "planned_at": now.isoformat(),
            "anchor": logical_date.isoformat() if (logical_date := context.get("logical_date")) else None,
            "window": None,
            "targets": targets,
            "sources": sources,
            "units": datasets,
            "planned": planned,
            "params": {
                "datasets": datasets,
                "tables": tables,
                "point_in_time": point.isoformat(),
                "targets": shown,
                "dry_run": False,
            },
        }
        uri = store.write(f"{prefix}/plan.json", manifest)
        self.log.info(
            "%s to T = %s:\n%s\nmanifest: %s",
            self.mode,
            point.isoformat(),
            render_table(
                ["table", "target", "source", "why"],
                [[r["table"], r["target"], r["action"], r["reason"]] for r in planned],
            ),
            uri,
        )
        return [{"dataset": d, "manifest": uri} for d in datasets]


class RestoreDatasetOperator(DatasetUnitOperator):
    """Restore the planned tables of one dataset into its target, verified; prod targets are pinned first."""

    template_fields: Sequence[str] = ("dataset_ref", "confirm")

    def __init__(self, *, confirm: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.confirm = confirm

    def writes_env(self, manifest: dict[str, Any], context: Context) -> str:
        """The target's environment (drill, staging, or prod for a confirmed restore): its jobs project
        runs the restore."""
        from envsync.core.config import load_config

        return target_env(load_config(), manifest["targets"][self.dataset_ref["dataset"]])

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from envsync.backups.restore import RestoreEngine, Source
        from envsync.backups.snapshots import BackupCatalog, BackupEngine, source_project
        from envsync.bigquery.datasets import default_kms_key, ensure_env_dataset, env_labels, recreate_env_dataset
        from envsync.bigquery.jobs import JobRunner
        from envsync.core.guard import GuardedBigQuery
        from envsync.observe.report import result_row

        dataset = self.dataset_ref["dataset"]
        target = manifest["targets"][dataset]
        project = target_project(config, target)
        point = dt.datetime.fromisoformat(manifest["point_in_time"])
        # the guard is built again here: the confirmation is checked by the task that writes
        bq = GuardedBigQuery(
            runner.bq.client, restore_guard(config, target, dataset, point, self.confirm), runner.bq.location
        )
        bq.fence = runner.bq.fence  # the lease's fence, as on the runner this task was given
        runner = self._runner = JobRunner(
            bq, dag_id=runner.dag_id, run_id=runner.run_id, task_id=runner.task_id, timeout=runner.timeout
        )
        store = manifest_store(config, self.gcp_conn_id)
        exports = manifest_store(config, self.gcp_conn_id, config.export_bucket)
        catalog = BackupCatalog(config, bq.client, store, exports)
        engine = RestoreEngine(config, bq, runner, catalog)
        planned = manifest["sources"][dataset]
        restorable = {t: Source.from_dict(s) for t, s in planned.items() if "kind" in s}
        ref = f"{project}.{target}"
        source = f"{source_project(config, dataset)}.{dataset}"
        location = bq.client.get_dataset(source).location
        description = (
            f"envsync restore of {engine.qualified(dataset)} to {point.isoformat()} (run {manifest['run_id']})"
        )
        if target in config.prod.datasets:
            reason = f"automatic, before restoring {dataset} to {point.isoformat()} (run {manifest['run_id']})"
            expires = dt.datetime.now(UTC) + dt.timedelta(days=config.backups.pinned_expiry_days)
            pins = engine.pin_current(
                dataset, sorted(restorable), reason, expires, BackupEngine(config, bq, runner, catalog)
            )
            self.log.info(
                "pinned the current state of prod before overwriting it: %s",
                ", ".join(p["snapshot"] for p in pins) or "no existing tables",
            )
        elif target == dataset:
            # staging restored into itself (a rollback rehearsal): no confirmation, but its current
            # state is pinned first, as for prod, so the rehearsal itself can be undone
            reason = f"automatic, before restoring {dataset} to {point.isoformat()} (run {manifest['run_id']})"
            expires = dt.datetime.now(UTC) + dt.timedelta(days=config.backups.pinned_expiry_days)
            pins = engine.pin_current(
                dataset, sorted(restorable), reason, expires, BackupEngine(config, bq, runner, catalog)
            )
            self.log.info(
                "pinned the current state of %s before overwriting it: %s",
                dataset,
                ", ".join(p["snapshot"] for p in pins) or "no existing tables",
            )
        elif manifest["mode"] == "drill":
            recreate_env_dataset(
                bq,
                ref,
                location=location,
                description=description,
                labels=env_labels({}, "drill", dataset),
                table_expiration_ms=config.environments.drill.table_expiration_days * 86_400_000,
                kms_key_name=default_kms_key(bq.client, source),
            )
        else:
            ensure_env_dataset(
                bq,
                ref,
                location=location,
                description=description,
                labels=env_labels({}, "drill", dataset),
                kms_key_name=default_kms_key(bq.client, source),
            )
        results = []
        for table, entry in sorted(planned.items()):
            name, target_name = engine.qualified(dataset, table), config.qualified(project, target, table)
            if table in restorable:
                chosen = restorable[table]
                self.log.info("restoring %s from %s: %s", name, chosen.kind, chosen.reason)
                results.append(engine.restore_table(dataset, chosen, target, point, target_project=project))
            elif "skipped" in entry:
                results.append(
                    {
                        **result_row(name, target_name, "skip", entry["skipped"]),
                        "status": "skipped",
                    }
                )
            else:
                results.append(
                    {
                        **result_row(name, target_name, "none", entry["error"]),
                        "status": "failed",
                        "error": entry["error"],
                        "retryable": False,
                    }
                )
        return dataset, results


class RestoreReportOperator(RunReportOperator):
    """The restore's report (per table: source, rows, checksum, RPO, RTO); drills also append audit rows."""

    def audit(self, context: Context, error: BaseException | None) -> None:
        super().audit(context, error)
        try:
            self._audit_drill(context)
        except Exception as failure:  # the audit never fails the data work
            self.log.warning("could not record the drill in %s: %s", "recovery_drills", failure)

    def _audit_drill(self, context: Context) -> None:
        from envsync.core.config import load_config
        from envsync.observe.audit import RECOVERY_DRILL_COLUMNS, RECOVERY_DRILLS, ensure_audit_table, insert_rows
        from envsync.operators.common import guarded_runner

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        report = store.read(f"{run_prefix(store, context)}/report.json")
        if report is None or report.get("mode") != "drill":
            return
        runner = guarded_runner(config, self.gcp_conn_id, context, self.task_id, env="audit")
        table = ensure_audit_table(config, runner, RECOVERY_DRILLS)
        now = dt.datetime.now(UTC)
        rows = []
        for r in report["results"]:
            # "[project.]dataset.table": the dataset column keeps the project when names carry it
            dataset, _, name = r["table"].rpartition(".")
            rows.append(
                {
                    "recorded_at": now,
                    "dag_id": report["dag_id"],
                    "run_id": report["run_id"],
                    "logical_date": report.get("anchor"),
                    "point_in_time": report["point_in_time"],
                    "dataset": dataset,
                    "table_name": name,
                    "target": r["target"],
                    "source_kind": r["action"],
                    "source": r.get("source"),
                    "backup_taken_at": r.get("backup_taken_at"),
                    "rpo_seconds": r.get("rpo_seconds"),
                    "rto_seconds": r.get("rto_seconds"),
                    "row_count": r.get("rows"),
                    "expected_checksum": r.get("expected_checksum"),
                    "checksum": r.get("checksum"),
                    "status": r["status"],
                    "error": r.get("error"),
                    "environment": report.get("source") or "prod",
                }
            )
        insert_rows(runner, table, RECOVERY_DRILL_COLUMNS, rows, key=("audit", RECOVERY_DRILLS, "insert"))
        self.log.info("recorded %d recovery drill rows (RTO/RPO per table) in %s", len(rows), table)
