"""Pieces every envsync DAG shares: the manifest store of a run, and the run report task.

A run's plan task writes `plan.json` with at least `units` (names of the mapped work units), `planned`
(one result row per object, status "planned"), `params` (with `dry_run`) and `cut`; each mapped task
writes `results/<unit>.json`; the report task gathers them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from envsync.core.clients import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import EnvsyncConfig
    from envsync.core.manifest import ManifestStore


def manifest_store(config: EnvsyncConfig, conn_id: str, bucket: str | None = None) -> ManifestStore:
    """The JSON store in `bucket` (default: the state bucket; backup exports use config.export_bucket)."""
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    return ManifestStore(storage_client(config.project, conn_id), bucket or config.state.bucket)


def run_prefix(store: ManifestStore, context: Context) -> str:
    return store.run_prefix(context["dag"].dag_id, context["run_id"])


def guarded_runner(
    config: EnvsyncConfig, conn_id: str, context: Context, task_id: str, location: str | None = None
) -> JobRunner:
    """A JobRunner whose every write passes the prod write guard, labelled with this run and task."""
    from envsync.bigquery.jobs import JobRunner
    from envsync.core.clients import bigquery_client
    from envsync.core.guard import GuardedBigQuery, WriteGuard

    client = bigquery_client(config.project, config.location, conn_id)
    bq = GuardedBigQuery(client, WriteGuard.from_config(config), location or config.location)
    return JobRunner(
        bq,
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        task_id=task_id,
        timeout=config.sync.job_timeout_seconds,
    )


def recorded_cut(store: ManifestStore, prefix: str) -> dt.datetime | None:
    """The cut T an earlier try of this run recorded, so retries and reruns read the same instant."""
    recorded = store.read(f"{prefix}/plan.json")
    return dt.datetime.fromisoformat(recorded["cut"]) if recorded else None


def read_plan(store: ManifestStore, prefix: str) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException

    manifest = store.read(f"{prefix}/plan.json")
    if manifest is None:
        raise AirflowFailException(f"no plan recorded at {store.uri(prefix + '/plan.json')}; see the plan task")
    return manifest


def record_run_audit(
    config: EnvsyncConfig,
    conn_id: str,
    context: Context,
    task_id: str,
    manifest: dict[str, Any] | None,
    results: list[dict[str, Any]],
    error: BaseException | None,
    manifest_uri: str | None = None,
) -> None:
    """Append this DAG run's summary and its table actions to the audit tables (envsync.observe.audit)."""
    from envsync.observe.audit import masked_column_rows, record_run, run_rows

    dag_run = context["dag_run"]
    run_type = getattr(dag_run, "run_type", None)
    now = dt.datetime.now(dt.UTC)
    masked = (
        []
        if (manifest or {}).get("params", {}).get("dry_run")
        else masked_column_rows(
            dag_id=context["dag"].dag_id, run_id=context["run_id"], privacy=(manifest or {}).get("privacy"), now=now
        )
    )
    run, actions = run_rows(
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        run_type=str(getattr(run_type, "value", run_type) or ""),
        logical_date=context.get("logical_date"),
        started_at=getattr(dag_run, "start_date", None),
        manifest={**(manifest or {}), "manifest_uri": manifest_uri},
        results=results,
        status="failed" if error is not None else "success",
        error=None if error is None else f"{type(error).__name__}: {error}"[:2000],
        now=now,
    )
    record_run(config, guarded_runner(config, conn_id, context, task_id), run, actions, masked)


def send_privacy_alert(config: EnvsyncConfig, context: Context) -> None:
    """The Slack warning that policy-tagged columns reached dev unmasked (best effort, like every alert)."""
    if not config.alerts.enabled:
        return
    from envsync.observe.alerts import EnvsyncSlackNotifier

    EnvsyncSlackNotifier(kind="privacy", slack_webhook_conn_id=config.alerts.slack_conn_id).notify(context)


class UnitOperator(BaseOperator):
    """A task that executes one unit of a recorded plan (a dataset, or all views) and records its results.

    Subclasses implement `run_unit`; this class loads the plan, builds the guarded job runner, stores
    `results/<unit>.json`, logs the results table and fails the task when an object failed: without
    retries when every failure is deterministic (verification, contract, guard), else with retries.
    """

    ui_color = "#e6f4ea"

    def __init__(self, *, gcp_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id
        self._runner: JobRunner | None = None

    def run_unit(
        self, config: EnvsyncConfig, manifest: dict[str, Any], runner: JobRunner, context: Context
    ) -> tuple[str, list[dict[str, Any]]] | None:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.core.config import load_config
        from envsync.observe.report import results_table
        from envsync.sync.run import SyncError, failures

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = run_prefix(store, context)
        manifest = read_plan(store, prefix)
        self._runner = guarded_runner(config, self.gcp_conn_id, context, self.task_id)
        outcome = self.run_unit(config, manifest, self._runner, context)
        if outcome is None:
            return {"unit": None, "objects": 0}
        unit, results = outcome
        store.write(f"{prefix}/results/{unit}.json", {"unit": unit, "results": results})
        self.log.info("%s:\n%s", unit, results_table(results))
        failed = failures(results)
        if failed:
            message = f"{len(failed)} object(s) of {unit} failed: " + "; ".join(
                f"{r['target']}: {r['error']}" for r in failed
            )
            if any(r.get("retryable") for r in failed):
                raise SyncError(message)
            raise AirflowFailException(message)  # deterministic: a retry would fail the same way
        return {"unit": unit, "objects": len(results), "rows": sum(int(r.get("rows") or 0) for r in results)}

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.cancel_all()


class DatasetUnitOperator(UnitOperator):
    """A UnitOperator mapped over the plan task's output: one task instance per `{"dataset": ...}` ref."""

    template_fields: Sequence[str] = ("dataset_ref",)

    def __init__(self, *, dataset_ref: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset_ref = dataset_ref


class RunReportOperator(BaseOperator):
    """Gather every unit's results, log the run report, store it, and fail if anything failed."""

    ui_color = "#fef7e0"

    def __init__(self, *, gcp_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        error: BaseException | None = None
        try:
            return self.report(context)
        except BaseException as failure:
            error = failure
            raise
        finally:
            self.audit(context, error)

    def audit(self, context: Context, error: BaseException | None) -> None:
        """Append the run's summary and table actions to the audit tables; a failure here is only logged."""
        try:
            from envsync.core.config import load_config

            config = load_config()
            store = manifest_store(config, self.gcp_conn_id)
            prefix = run_prefix(store, context)
            report = store.read(f"{prefix}/report.json") or store.read(f"{prefix}/plan.json")
            record_run_audit(
                config,
                self.gcp_conn_id,
                context,
                self.task_id,
                report,
                (report or {}).get("results") or [],
                error,
                store.uri(f"{prefix}/report.json"),
            )
        except Exception as failure:  # the audit never fails the data work
            self.log.warning("could not record this run in the audit tables: %s", failure)

    def report(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.core.config import load_config
        from envsync.core.window import Window
        from envsync.observe.report import human_bytes, privacy_report, privacy_table, results_table, summarise

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = run_prefix(store, context)
        manifest = read_plan(store, prefix)
        dry_run = bool(manifest["params"].get("dry_run"))
        results: list[dict[str, Any]] = []
        missing: list[str] = []
        for unit in manifest["units"]:
            recorded = None if dry_run else store.read(f"{prefix}/results/{unit}.json")
            if recorded is not None:
                results.extend(recorded["results"])
                continue
            if not dry_run:
                missing.append(unit)
            status = "planned" if dry_run else "not run"
            results.extend({**row, "status": status} for row in manifest["planned"] if row["unit"] == unit)
        window = manifest.get("window")
        win = (
            Window(
                dt.datetime.fromisoformat(window["start"]), dt.datetime.fromisoformat(window["end"]), window["quarters"]
            )
            if window
            else None
        )
        summary = summarise(results, cut=dt.datetime.fromisoformat(manifest["cut"]), window=win)
        summary.update(
            dry_run=dry_run,
            anchor=manifest.get("anchor"),
            seed_version=manifest.get("seed_version"),
            manifest=store.uri(f"{prefix}/report.json"),
        )
        privacy = privacy_report(manifest.get("privacy"), results)
        summary.update(masked_columns=len(privacy["masked"]), unmasked_tagged=len(privacy["unmasked_tagged"]))
        brief = {k: v for k, v in summary.items() if k != "tables"}
        store.write(f"{prefix}/report.json", {**manifest, "privacy": privacy, "results": results, "summary": brief})
        header = [f"T = {manifest['cut']}"]
        if manifest.get("anchor"):
            header.insert(0, f"A = {manifest['anchor']}")
        if win:
            header.append(f"window [{win.start.isoformat()}, {win.end.isoformat()})")
        if manifest.get("seed_version"):
            header.append(f"seed version {manifest['seed_version']['version']}")
        self.log.info(
            "envsync run report%s: %s\n%s\n%d objects, %d ok, %d failed, %s rows, est. %s billed, %d BigQuery jobs",
            " (dry run)" if dry_run else "",
            ", ".join(header),
            results_table(results),
            summary["objects"],
            summary["ok"],
            len(summary["failed"]),
            f"{summary['rows']:,}",
            human_bytes(summary["est_bytes_billed"]),
            summary["jobs"],
        )
        if manifest.get("privacy") is not None:
            self.log.info("privacy report:\n%s", privacy_table(privacy, results))
            for row in privacy["unmasked_tagged"]:
                self.log.warning(
                    "%s.%s carries policy tag(s) %s and reached %s unmasked",
                    row["target"],
                    row["column"],
                    row["policy_tags"],
                    row["env"],
                )
            if any(row["env"] == "dev" for row in privacy["unmasked_tagged"]) and not dry_run:
                send_privacy_alert(config, context)
        if missing or summary["failed"]:
            # what the other tasks recorded will not change on a retry of this task
            raise AirflowFailException(
                "the run did not complete: "
                + (f"failed: {summary['failed']}; " if summary["failed"] else "")
                + (f"no results from {missing}" if missing else "")
            )
        return brief
