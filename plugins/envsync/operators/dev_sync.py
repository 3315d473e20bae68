"""Operators of the prod -> dev sync: plan (one task), sync (mapped per dataset), report (one task)."""

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
from envsync.operators.leasing import renews_taken_leases
from envsync.operators.params import validate_params

if TYPE_CHECKING:
    from airflow.sdk import Context


DAG_LABEL = "prod_to_dev_sync"


class PlanDevSyncOperator(BaseOperator):
    """Fix the run's anchor A and cut T, discover prod, plan every table, and record the manifest.

    Returns one small reference per dataset to sync (nothing in a dry run), for the mapped sync task.
    """

    template_fields: Sequence[str] = ("datasets", "tables", "window_quarters", "dry_run")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        datasets: Any = None,
        tables: Any = None,
        window_quarters: Any = None,
        dry_run: Any = False,
        gcp_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.datasets = datasets
        self.tables = tables
        self.window_quarters = window_quarters
        self.dry_run = dry_run  # type: ignore[method-assign]  # a template field; BaseOperator.dry_run() is unused
        self.gcp_conn_id = gcp_conn_id

    @renews_taken_leases
    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.bigquery.discovery import DiscoveryError
        from envsync.core.config import ConfigError
        from envsync.core.identifiers import IdentifierError
        from envsync.sync.plan import PlanError

        try:
            return self._plan(context)
        except (ConfigError, DiscoveryError, PlanError, IdentifierError, ValueError) as error:
            # bad input or a prod that does not match the config: a retry would fail the same way
            raise AirflowFailException(str(error)) from error

    def _plan(self, context: Context) -> list[dict[str, str]]:
        from envsync.core.clients import bigquery_client
        from envsync.core.config import load_config
        from envsync.core.window import anchor_from_context, new_cut, quarter_window
        from envsync.observe.report import privacy_table
        from envsync.operators.leasing import take_leases
        from envsync.sync.run import build_plans
        from envsync.sync.summary import plan_table, quota_summary

        config = load_config()
        datasets, tables, quarters, dry_run = validate_params(
            config, self.datasets, self.tables, self.window_quarters, self.dry_run
        )
        store = manifest_store(config, self.gcp_conn_id)
        store.ensure_bucket(config.location)
        prefix = run_prefix(store, context)
        if not dry_run:  # one writer of dev at a time, across every DAG (before dev is read or written)
            take_leases(config, self.gcp_conn_id, context, self.task_id, ["dev"])
        anchor = anchor_from_context(context)
        cut = recorded_cut(store, prefix)
        if cut is not None:
            self.log.info("reusing the cut recorded by an earlier try of this run: T = %s", cut.isoformat())
        else:
            cut = new_cut()
        window = quarter_window(anchor, quarters)
        self.log.info(
            "anchor A = %s, cut T = %s, window of %d quarter(s) = [%s, %s)",
            anchor.isoformat(),
            cut.isoformat(),
            quarters,
            window.start.isoformat(),
            window.end.isoformat(),
        )
        # reads prod's metadata; its queries (partition ids) run in the jobs project of dev
        from envsync.core.limits import configure

        configure(config.rate_limits.rates())
        client = bigquery_client(config.jobs_project_of("dev"), config.location, self.gcp_conn_id)
        plans = build_plans(config, client, datasets=datasets, tables=tables, window=window)
        check_plan_salt(config, plans, dry_run=dry_run, log=self.log)
        manifest = {
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "anchor": anchor.isoformat(),
            "cut": cut.isoformat(),
            "window": window.as_dict(),
            "params": {"datasets": datasets, "tables": tables, "window_quarters": quarters, "dry_run": dry_run},
            **plan_entries(config, plans),
        }
        manifest["units"].append("migrate")
        uri = store.write(f"{prefix}/plan.json", manifest)
        self.log.info("plan%s:\n%s", " (dry run: nothing will be written)" if dry_run else "", plan_table(plans))
        self.log.info("%s", quota_summary(plans, config))
        self.log.info("privacy report (dev):\n%s", privacy_table(manifest["privacy"]))
        self.log.info("manifest: %s", uri)
        if dry_run:
            return []
        return [{"dataset": p.dataset, "manifest": uri} for p in plans]


class SyncDatasetOperator(DatasetUnitOperator):
    """Execute, verify and publish one dataset's plan (mapped: one task instance per dataset)."""

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.privacy.masking import MaskError
        from envsync.sync.plan import DatasetPlan
        from envsync.sync.run import DatasetSync

        dataset = self.dataset_ref["dataset"]
        plan = DatasetPlan.from_dict(next(p for p in manifest["plans"] if p["dataset"] == dataset))
        try:
            return dataset, DatasetSync(config, runner.bq, runner, run_info(manifest, context, self.task_id)).execute(
                plan
            )
        except MaskError as error:  # a missing salt: nothing was written, a retry would fail the same way
            raise AirflowFailException(str(error)) from error


def run_info(manifest: dict[str, Any], context: Context, task_id: str) -> Any:
    """The run's recorded cut T and window, as the executing tasks need them."""
    from envsync.core.window import Window
    from envsync.sync.run import RunInfo

    window = manifest.get("window")
    return RunInfo(
        context["dag"].dag_id,
        context["run_id"],
        task_id,
        dt.datetime.fromisoformat(manifest["cut"]),
        Window(dt.datetime.fromisoformat(window["start"]), dt.datetime.fromisoformat(window["end"]), window["quarters"])
        if window
        else None,
        manifest.get("env", "dev"),
    )


def check_plan_salt(config: Any, plans: list[Any], *, dry_run: bool, log: Any) -> None:
    """A run whose hash/fake masks have no salt fails in its plan task, before anything is written;
    a dry run (which writes nothing) says so in its log."""
    from envsync.privacy.masking import MaskError
    from envsync.sync.run import check_salt

    try:
        check_salt(config, plans)
    except MaskError as error:
        if not dry_run:
            raise
        log.warning("the run would fail: %s", error)


def plan_entries(config: Any, plans: list[Any]) -> dict[str, Any]:
    """The manifest entries that sync_dataset, sync_views and report read: plans, units, planned rows,
    and the privacy report (masked columns, policy-tagged columns copied unmasked)."""
    from envsync.sync.summary import privacy_entries, source_name, target_name

    return {
        "privacy": privacy_entries(plans, config),
        "plans": [p.to_dict() for p in plans],
        "units": [p.dataset for p in plans] + ["views"],
        "planned": [
            planned_row(
                "views" if a.action == "view" else p.dataset,
                a,
                table=source_name(config, a),
                target=target_name(config, p.env, a),
            )
            for p in plans
            for a in p.actions
        ],
    }


def planned_row(unit: str, action: Any, *, table: str | None = None, target: str | None = None) -> dict[str, Any]:
    """The report row of an action that has not run (yet): dry runs, and units whose task failed.

    `table` and `target` name its source and target (default: `dataset.table` of each)."""
    from envsync.observe.report import result_row

    return {
        **result_row(
            table or action.key,
            target or f"{action.target_dataset}.{action.table}",
            action.action,
            action.reason,
            est_bytes_billed=action.est_bytes_billed,
        ),
        "unit": unit,
        "status": "planned",
    }


class SyncViewsOperator(UnitOperator):
    """Re-create every prod view on the dev datasets, after all tables, in dependency order."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")  # views of datasets that did sync still get made
        super().__init__(**kwargs)

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from envsync.sync.plan import DatasetPlan
        from envsync.sync.run import sync_views

        if manifest["params"]["dry_run"]:
            self.log.info("dry run: no views are re-created")
            return None
        plans = [DatasetPlan.from_dict(p) for p in manifest["plans"]]
        return "views", sync_views(config, runner.bq, runner, run_info(manifest, context, self.task_id), plans)


class SyncMigrateOperator(UnitOperator):
    """After a full sync, apply again the schema migrations promoted to dev that prod does not have
    (dev was rebuilt from prod), and note in the ledger the versions dev now holds through prod."""

    fingerprints_environment = True  # migrations change tables they do not name

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.migrations.ledger import MigrationError, load_migrations, pending, read_ledger, reapply

        params = manifest["params"]
        if params["dry_run"]:
            self.log.info("dry run: no schema migrations are applied")
            return None
        env = manifest.get("env", "dev")
        try:
            migrations = load_migrations(config)
            ledger = read_ledger(config, runner.bq.client)
            todo = pending(migrations, ledger, env)
            if params.get("tables") or sorted(params.get("datasets") or []) != sorted(config.prod.datasets):
                if todo:
                    self.log.warning(
                        "a partial sync (datasets or tables chosen) rebuilt only part of %s: its pending "
                        "migrations %s are not applied again; run a full sync",
                        env,
                        [m.version for m in todo],
                    )
                return "migrate", []
            self.log.info(
                "%s holds prod's migrations through the sync; %d pending migration(s) to apply again%s",
                env,
                len(todo),
                f": {[m.version for m in todo]}" if todo else "",
            )
            done = reapply(config, runner, env, migrations, ledger, [m.version for m in todo])
        except MigrationError as error:
            raise AirflowFailException(str(error)) from error
        if done.synced:
            self.log.info("%s: prod's migrations %s recorded as synced", env, done.synced)
        return "migrate", done.results  # a migration not applied again is a failed row: the task fails


class DevSyncReportOperator(RunReportOperator):
    """The sync run's report: per object action, rows, estimated bytes billed, seconds, status."""
