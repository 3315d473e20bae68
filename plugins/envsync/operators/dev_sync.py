"""Operators of the prod -> dev sync: plan (one task), sync (mapped per dataset), report (one task)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from envsync.clients import DEFAULT_CONN_ID
from envsync.operators.common import RunReportOperator, manifest_store
from envsync.params import validate_params

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
        self.dry_run = dry_run
        self.gcp_conn_id = gcp_conn_id

    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.config import ConfigError
        from envsync.discovery import DiscoveryError
        from envsync.guard import IdentifierError
        from envsync.plan import PlanError

        try:
            return self._plan(context)
        except (ConfigError, DiscoveryError, PlanError, IdentifierError, ValueError) as error:
            # bad input or a prod that does not match the config: a retry would fail the same way
            raise AirflowFailException(str(error)) from error

    def _plan(self, context: Context) -> list[dict[str, str]]:
        from envsync.clients import bigquery_client
        from envsync.config import load_config
        from envsync.report import plan_table, quota_summary
        from envsync.sync import build_plans
        from envsync.window import anchor_from_context, new_cut, quarter_window

        config = load_config()
        datasets, tables, quarters, dry_run = validate_params(
            config, self.datasets, self.tables, self.window_quarters, self.dry_run
        )
        store = manifest_store(config, self.gcp_conn_id)
        store.ensure_bucket(config.location)
        prefix = store.run_prefix(context["dag"].dag_id, context["run_id"])
        recorded = store.read(f"{prefix}/plan.json")
        anchor = anchor_from_context(context)
        if recorded:
            cut = dt.datetime.fromisoformat(recorded["cut"])
            self.log.info("reusing the cut recorded by an earlier try of this run: T = %s", cut.isoformat())
        else:
            cut = new_cut()
        window = quarter_window(anchor, quarters)
        self.log.info(
            "anchor A = %s, cut T = %s, window of %d quarter(s) = [%s, %s)",
            anchor.isoformat(), cut.isoformat(), quarters, window.start.isoformat(), window.end.isoformat(),
        )
        client = bigquery_client(config.project, config.location, self.gcp_conn_id)
        plans = build_plans(config, client, datasets=datasets, tables=tables)
        manifest = {
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "anchor": anchor.isoformat(),
            "cut": cut.isoformat(),
            "window": window.as_dict(),
            "params": {"datasets": datasets, "tables": tables, "window_quarters": quarters, "dry_run": dry_run},
            "plans": [p.to_dict() for p in plans],
            "units": [p.dataset for p in plans] + ["views"],
            "planned": [planned_row("views" if a.action == "view" else p.dataset, a) for p in plans for a in p.actions],
        }
        uri = store.write(f"{prefix}/plan.json", manifest)
        self.log.info("plan%s:\n%s", " (dry run: nothing will be written)" if dry_run else "", plan_table(plans))
        self.log.info("%s", quota_summary(plans))
        self.log.info("manifest: %s", uri)
        if dry_run:
            return []
        return [{"dataset": p.dataset, "manifest": uri} for p in plans]


class SyncDatasetOperator(BaseOperator):
    """Execute, verify and publish one dataset's plan (mapped: one task instance per dataset)."""

    template_fields: Sequence[str] = ("dataset_ref",)
    ui_color = "#e6f4ea"

    def __init__(self, *, dataset_ref: dict[str, str], gcp_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset_ref = dataset_ref
        self.gcp_conn_id = gcp_conn_id
        self._runner: Any = None

    def execute(self, context: Context) -> dict[str, Any]:
        from envsync.clients import bigquery_client
        from envsync.config import load_config
        from envsync.guard import GuardedBigQuery, WriteGuard
        from envsync.jobs import JobRunner
        from envsync.plan import DatasetPlan
        from envsync.report import results_table
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.sync import DatasetSync, RunInfo, SyncError, failures
        from envsync.window import Window

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = store.run_prefix(context["dag"].dag_id, context["run_id"])
        manifest = store.read(f"{prefix}/plan.json")
        if manifest is None:
            raise SyncError(f"no plan recorded at {store.uri(prefix + '/plan.json')}; clear the plan task")
        dataset = self.dataset_ref["dataset"]
        plan = DatasetPlan.from_dict(next(p for p in manifest["plans"] if p["dataset"] == dataset))
        window = Window(
            start=dt.datetime.fromisoformat(manifest["window"]["start"]),
            end=dt.datetime.fromisoformat(manifest["window"]["end"]),
            quarters=manifest["window"]["quarters"],
        )
        run = RunInfo(context["dag"].dag_id, context["run_id"], self.task_id,
                      dt.datetime.fromisoformat(manifest["cut"]), window)
        client = bigquery_client(config.project, config.location, self.gcp_conn_id)
        bq = GuardedBigQuery(client, WriteGuard.from_config(config), plan.location or config.location)
        self._runner = JobRunner(bq, dag_id=run.dag_id, run_id=run.run_id, task_id=self.task_id,
                                 timeout=config.sync.job_timeout_seconds)
        results = DatasetSync(config, bq, self._runner, run).execute(plan)
        store.write(f"{prefix}/results/{dataset}.json", {"unit": dataset, "results": results})
        self.log.info("%s -> %s:\n%s", plan.dataset, plan.target_dataset, results_table(results))
        failed = failures(results)
        if failed:
            message = (
                f"{len(failed)} object(s) of {dataset} failed: "
                + "; ".join(f"{r['target']}: {r['error']}" for r in failed)
            )
            if any(r.get("retryable") for r in failed):
                raise SyncError(message)
            # verification failures and guard refusals are deterministic: retrying cannot help
            raise AirflowFailException(message)
        return {"dataset": dataset, "objects": len(results), "rows": sum(int(r.get("rows") or 0) for r in results)}

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.cancel_all()


def planned_row(unit: str, action: Any) -> dict[str, Any]:
    """The report row of an action that has not run (yet): dry runs, and units whose task failed."""
    return {
        "unit": unit, "table": action.key, "target": f"{action.target_dataset}.{action.table}",
        "action": action.action, "reason": action.reason, "rows": None,
        "est_bytes_billed": action.est_bytes_billed, "bytes_billed": 0, "jobs": 0, "seconds": 0.0,
        "status": "planned", "error": None, "warnings": [],
    }


class SyncViewsOperator(BaseOperator):
    """Re-create every prod view on the dev datasets, after all tables, in dependency order."""

    ui_color = "#e6f4ea"

    def __init__(self, *, gcp_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")  # views of datasets that did sync still get made
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id
        self._runner: Any = None

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.clients import bigquery_client
        from envsync.config import load_config
        from envsync.guard import GuardedBigQuery, WriteGuard
        from envsync.jobs import JobRunner
        from envsync.plan import DatasetPlan
        from envsync.report import results_table
        from envsync.sync import RunInfo, SyncError, failures, sync_views
        from envsync.window import Window

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = store.run_prefix(context["dag"].dag_id, context["run_id"])
        manifest = store.read(f"{prefix}/plan.json")
        if manifest is None:
            raise AirflowFailException("the plan task recorded no plan; see its log")
        if manifest["params"]["dry_run"]:
            self.log.info("dry run: no views are re-created")
            return {"views": 0}
        plans = [DatasetPlan.from_dict(p) for p in manifest["plans"]]
        window = Window(dt.datetime.fromisoformat(manifest["window"]["start"]),
                        dt.datetime.fromisoformat(manifest["window"]["end"]), manifest["window"]["quarters"])
        run = RunInfo(context["dag"].dag_id, context["run_id"], self.task_id,
                      dt.datetime.fromisoformat(manifest["cut"]), window)
        client = bigquery_client(config.project, config.location, self.gcp_conn_id)
        bq = GuardedBigQuery(client, WriteGuard.from_config(config), config.location)
        self._runner = JobRunner(bq, dag_id=run.dag_id, run_id=run.run_id, task_id=self.task_id,
                                 timeout=config.sync.job_timeout_seconds)
        results = sync_views(config, bq, self._runner, run, plans)
        store.write(f"{prefix}/results/views.json", {"unit": "views", "results": results})
        self.log.info("views:\n%s", results_table(results))
        failed = failures(results)
        if failed:
            message = f"{len(failed)} view(s) failed: " + "; ".join(f"{r['target']}: {r['error']}" for r in failed)
            if any(r.get("retryable") for r in failed):
                raise SyncError(message)
            raise AirflowFailException(message)
        return {"views": len(results)}

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.cancel_all()


class DevSyncReportOperator(RunReportOperator):
    """The sync run's report: per object action, rows, estimated bytes billed, seconds, status."""
