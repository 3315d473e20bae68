"""Operators of staging_cut: plan, pin (one task), stage (mapped per dataset), publish (one task), report.

See envsync.environments.cut for the steps and why a failed cut leaves staging as it was. The jobs
of a task run in the jobs project of what it writes: staging's (plan, stage, publish), the backup
environment's (pin), the audit dataset's (the staging_cuts row).
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
    UnitOperator,
    manifest_store,
    recorded_cut,
    run_prefix,
)
from envsync.operators.dev_sync import planned_row, run_info
from envsync.operators.leasing import renews_taken_leases

if TYPE_CHECKING:
    from airflow.sdk import Context

UTC = dt.UTC
PIN_UNIT = "pin"
PUBLISH_UNIT = "publish"


def _plans(manifest: dict[str, Any]) -> list[Any]:
    from envsync.sync.plan import DatasetPlan

    return [DatasetPlan.from_dict(p) for p in manifest["plans"]]


def _staging(config: Any, dataset: str, table: str | None = None) -> str:
    """How results name a staging dataset or table."""
    return str(config.qualified(config.project_of("staging"), dataset, table))


def _source(manifest: dict[str, Any]) -> Any:
    from envsync.environments.cut import CutSource

    record = manifest["staging_cut"]
    return CutSource(dt.datetime.fromisoformat(record["cut"]), record["seed_version"], record["migration_version"])


class PlanStagingCutOperator(BaseOperator):
    """Fix T, check every qa dataset exists and T is inside its time-travel window, plan the cut, and
    record T, QA's seed version, the migration version and what staging holds now."""

    template_fields: Sequence[str] = ("datasets",)
    ui_color = "#e8f0fe"

    def __init__(self, *, datasets: Any = None, gcp_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.datasets = datasets
        self.gcp_conn_id = gcp_conn_id

    @renews_taken_leases
    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.bigquery.discovery import DiscoveryError
        from envsync.core.config import ConfigError
        from envsync.environments.cut import CutError
        from envsync.sync.prodcopy import AsOfError

        try:
            return self._plan(context)
        except (ConfigError, CutError, DiscoveryError, AsOfError, ValueError) as error:
            raise AirflowFailException(str(error)) from error

    def _plan(self, context: Context) -> list[dict[str, str]]:
        from envsync.bigquery.timetravel import dataset_hours, effective_window
        from envsync.core.clients import bigquery_client
        from envsync.core.config import load_config
        from envsync.core.window import new_cut
        from envsync.environments.cut import migration_version, plan_cut, seed_version
        from envsync.observe.report import result_row
        from envsync.operators.leasing import take_leases
        from envsync.operators.params import check_datasets
        from envsync.sync.prodcopy import check_as_of
        from envsync.sync.summary import plan_table

        config = load_config()
        datasets = check_datasets(config, self.datasets)
        store = manifest_store(config, self.gcp_conn_id)
        store.ensure_bucket(config.location)
        prefix = run_prefix(store, context)
        # staging is written; qa is read as of T and must not be dropped and re-created meanwhile
        take_leases(config, self.gcp_conn_id, context, self.task_id, ["qa", "staging"])
        cut = recorded_cut(store, prefix) or new_cut()
        now = dt.datetime.now(UTC)
        client = bigquery_client(config.jobs_project_of("staging"), config.location, self.gcp_conn_id)
        plans, before = plan_cut(config, client, datasets, cut)
        qa = [p.dataset for p in plans]
        qa_project = config.project_of("qa")
        for name in qa:  # clones read qa FOR SYSTEM_TIME AS OF T: inside each qa dataset's own window
            window = effective_window(name, dataset_hours(client, qa_project, name), config.prod.time_travel_hours)
            check_as_of(cut, now, window)
        record = {
            "cut": cut.isoformat(),
            "source": "qa",
            "seed_version": seed_version(config, client, qa),
            "migration_version": migration_version(config, client, "qa", as_of=cut),
        }
        planned = [
            {
                **result_row(
                    _staging(config, d, t), _staging(config, d, t), "pre_cut_pin", "pinned backup before the cut"
                ),
                "unit": PIN_UNIT,
                "status": "planned",
            }
            for d, state in before.items()
            for t in state["tables"]
        ]
        for plan in plans:
            for action in plan.actions:
                unit = plan.dataset if action.action in ("full_clone", "skip") else PUBLISH_UNIT
                planned.append(planned_row(unit, action))
        manifest = {
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "cut": cut.isoformat(),
            "env": "staging",
            "window": None,
            "params": {"datasets": datasets, "dry_run": False},
            "staging_cut": record,
            "before": before,
            "plans": [p.to_dict() for p in plans],
            "units": [PIN_UNIT, *qa, PUBLISH_UNIT],
            "planned": planned,
        }
        uri = store.write(f"{prefix}/plan.json", manifest)
        self.log.info(
            "QA -> staging cut as of T = %s (seed version %s, migration version %s):\n%s\nmanifest: %s",
            cut.isoformat(),
            record["seed_version"],
            record["migration_version"],
            plan_table(plans),
            uri,
        )
        return [{"dataset": name, "manifest": uri} for name in qa]


class PinStagingOperator(UnitOperator):
    """Pinned backups of every staging table before anything of the cut is written (a retry reuses them)."""

    def writes_env(self, manifest: dict[str, Any], context: Context) -> str | None:
        return "backup"  # the pins are snapshots in the backup environment's project

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from envsync.backups.snapshots import BackupCatalog, BackupEngine
        from envsync.environments.cut import pin_staging
        from envsync.observe.report import result_row

        store = manifest_store(config, self.gcp_conn_id)
        path = f"{run_prefix(store, context)}/pins.json"
        recorded = store.read(path)
        if recorded is None:
            engine = BackupEngine(config, runner.bq, runner, BackupCatalog(config, runner.bq.client, store))
            reason = f"automatic, before the QA -> staging cut of run {manifest['run_id']}"
            expires = dt.datetime.now(UTC) + dt.timedelta(days=config.backups.pinned_expiry_days)
            recorded = {"pins": pin_staging(config, engine, manifest["before"], reason=reason, expires=expires)}
            store.write(path, recorded)
        else:
            self.log.info("reusing the pins an earlier try of this run took (%s)", store.uri(path))
        rows = [
            {
                **result_row(
                    _staging(config, p["dataset"], p["table"]),
                    p["snapshot"],
                    "pre_cut_pin",
                    p["reason"],
                    rows=p["rows"],
                    checksum=p["checksum"],
                ),
                "status": "ok",
            }
            for p in recorded["pins"]
        ]
        self.log.info("pinned %d staging tables before the cut", len(rows))
        return PIN_UNIT, rows


class StageCutOperator(DatasetUnitOperator):
    """Clone one qa dataset's tables as of T into stages in staging and verify them (staging untouched)."""

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from envsync.environments.cut import CutSync

        dataset = self.dataset_ref["dataset"]
        plan = next(p for p in _plans(manifest) if p.dataset == dataset)
        sync = CutSync(config, runner.bq, runner, run_info(manifest, context, self.task_id))
        return dataset, sync.stage(plan)


class PublishCutOperator(UnitOperator):
    """Publish every verified stage into staging, or - when any stage failed - drop them all and leave
    staging as it was. A failure while publishing rolls staging back from its pins. After a successful
    publish only, staging's rows of the migration ledger are made qa's as of T."""

    fingerprints_environment = True  # publishing rewrites staging's tables and ledger

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")  # it cleans up after failed stages too
        super().__init__(**kwargs)

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from envsync.environments.cut import CutSync, carry_migrations
        from envsync.observe.report import result_row

        store = manifest_store(config, self.gcp_conn_id)
        prefix = run_prefix(store, context)
        plans = _plans(manifest)
        sync = CutSync(config, runner.bq, runner, run_info(manifest, context, self.task_id), store)
        pins = (store.read(f"{prefix}/pins.json") or {}).get("pins")
        not_ready = []
        for plan in plans:
            staged = store.read(f"{prefix}/results/{plan.dataset}.json")
            if staged is None:
                not_ready.append(f"{plan.dataset} was not staged")
            else:
                not_ready += [f"{r['target']}: {r['error']}" for r in staged["results"] if r["status"] == "failed"]
        if pins is None:
            not_ready.insert(0, "staging was not pinned")

        def failed(table: str, error: str) -> dict[str, Any]:
            return {
                **result_row(table, table, "publish", "the cut"),
                "status": "failed",
                "error": error,
                "retryable": False,
            }

        if not_ready:
            sync.discard_stages(plans)
            sync.remove_new_datasets(plans, manifest["before"])
            self.log.error("the cut is not published (staging is as it was): %s", "; ".join(not_ready))
            return PUBLISH_UNIT, [
                failed(
                    _staging(config, p.target_dataset), "not published, staging left as it was: " + "; ".join(not_ready)
                )
                for p in plans
            ]
        try:
            results = sync.publish(plans, _source(manifest))
        except Exception as error:  # any failure while publishing: back to the pins
            self.log.error("publishing the cut failed (%s): rolling staging back to its pinned backups", error)
            assert pins is not None  # not_ready names a missing pin
            rollback = sync.rollback(plans, manifest["before"], pins)
            broken = [r for r in rollback if r["status"] == "failed"]
            state = (
                "staging was rolled back to the pinned backups taken before the cut"
                if not broken
                else f"the rollback of {[r['target'] for r in broken]} failed too: restore them from their pins"
            )
            for row in rollback:
                row["retryable"] = False
            staging = ", ".join(_staging(config, p.target_dataset) for p in plans)
            return PUBLISH_UNIT, [failed(staging, f"{error}; {state}"), *rollback]
        self.log.info("published the cut into %s", ", ".join(_staging(config, p.target_dataset) for p in plans))
        # only now, with staging holding qa's tables: staging's migrations become qa's (a failure here
        # fails the task; its retry finds the publish done and records the ledger rows)
        results.append(carry_migrations(config, runner, _source(manifest)))
        return PUBLISH_UNIT, results


class StagingCutReportOperator(RunReportOperator):
    """The cut's report; on success the cut is recorded as staging's current state (T, seed version,
    migration version); every cut, failed or not, gets a row in the audit table staging_cuts."""

    def report(self, context: Context) -> dict[str, Any]:
        from envsync.core.config import load_config
        from envsync.environments.cut import CURRENT

        brief = super().report(context)
        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = run_prefix(store, context)
        manifest = store.read(f"{prefix}/plan.json") or {}
        pins = (store.read(f"{prefix}/pins.json") or {}).get("pins") or []
        current = {
            **manifest["staging_cut"],
            "run_id": context["run_id"],
            "datasets": manifest["params"]["datasets"],
            "pinned_backups": [p["snapshot"] for p in pins],
            "recorded_at": dt.datetime.now(UTC).isoformat(),
        }
        uri = store.write(CURRENT, current)
        self.log.info(
            "staging now holds QA as of T = %s (seed version %s, migration version %s): %s",
            current["cut"],
            current["seed_version"],
            current["migration_version"],
            uri,
        )
        return brief

    def audit(self, context: Context, error: BaseException | None) -> None:
        super().audit(context, error)
        try:
            self._audit_cut(context, error)
        except Exception as failure:  # the audit never fails the data work
            self.log.warning("could not record the cut in staging_cuts: %s", failure)

    def _audit_cut(self, context: Context, error: BaseException | None) -> None:
        from envsync.core.config import load_config
        from envsync.observe.audit import STAGING_CUT_COLUMNS, STAGING_CUTS, ensure_audit_table, insert_rows
        from envsync.operators.common import guarded_runner

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = run_prefix(store, context)
        manifest = store.read(f"{prefix}/plan.json")
        if manifest is None:
            return
        pins = (store.read(f"{prefix}/pins.json") or {}).get("pins") or []
        record = manifest["staging_cut"]
        runner = guarded_runner(config, self.gcp_conn_id, context, self.task_id, env="audit")
        table = ensure_audit_table(config, runner, STAGING_CUTS)
        insert_rows(
            runner,
            table,
            STAGING_CUT_COLUMNS,
            [
                {
                    "recorded_at": dt.datetime.now(UTC),
                    "run_id": context["run_id"],
                    "cut": record["cut"],
                    "source": record["source"],
                    "seed_version": record["seed_version"],
                    "migration_version": record["migration_version"],
                    "datasets": ",".join(manifest["params"]["datasets"]),
                    "pinned_backups": ",".join(p["snapshot"] for p in pins),
                    "status": "failed" if error else "success",
                    "error": None if error is None else f"{type(error).__name__}: {error}"[:2000],
                }
            ],
            key=("audit", STAGING_CUTS, "insert"),
        )
        self.log.info("recorded the cut in %s", table)
