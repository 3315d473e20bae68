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
from envsync.operators.runtime import guarded_runner, manifest_store, run_prefix

__all__ = ["guarded_runner", "manifest_store", "run_prefix"]  # re-exported: the operators' modules use them here

if TYPE_CHECKING:
    from airflow.sdk import Context

    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import EnvsyncConfig
    from envsync.core.manifest import ManifestStore


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
    record_run(config, guarded_runner(config, conn_id, context, task_id, env="audit"), run, actions, masked)


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
        from envsync.operators.leasing import working_under_lease
        from envsync.sync.run import SyncError, failures

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = run_prefix(store, context)
        manifest = read_plan(store, prefix)
        with working_under_lease(config, self.gcp_conn_id, context, self.task_id) as beat:
            self._runner = guarded_runner(
                config, self.gcp_conn_id, context, self.task_id, env=self.writes_env(manifest, context)
            )
            if beat is not None:
                self._runner.bq.fence = beat.fence  # no write once another run took the lease over
            outcome = self.run_unit(config, manifest, self._runner, context)
            if outcome is None:
                return {"unit": None, "objects": 0}
            unit, results = outcome
            earlier = recorded_fingerprints(store, prefix, manifest) if self.fingerprints_environment else {}
            prints = self.fingerprints(config, context, results, earlier)
        store.write(f"{prefix}/results/{unit}.json", {"unit": unit, "results": results, "fingerprints": prints})
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

    # True for units that may change tables they do not name in their results (migrations): they
    # record the fingerprints of every table of the environments the run holds
    fingerprints_environment = False

    def writes_env(self, manifest: dict[str, Any], context: Context) -> str | None:
        """The environment this unit writes: its jobs run in (and are billed to) that environment's jobs
        project. By default the run's one environment (the plan's `env`, else the DAG's; test_<name> is
        `test`); None (the top-level project) when the run writes several."""
        from envsync.core.config import ENV_NAMES
        from envsync.observe.audit import environment_of

        env = environment_of(context["dag"].dag_id, manifest)
        if env.startswith("test_"):
            return "test"
        return env if env in ("prod", *ENV_NAMES) else None

    def fingerprints(
        self,
        config: EnvsyncConfig,
        context: Context,
        results: list[dict[str, Any]],
        earlier: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """What this unit leaves in each table it wrote (the report proves the run left it so); a unit
        that records the whole environment also re-reads what earlier units recorded (a stage table a
        later unit dropped is then recorded as gone)."""
        from envsync.bigquery.verify import fingerprint

        assert self._runner is not None
        client = self._runner.bq.client
        targets = {str(r["target"]) for r in results if r.get("status") in ("ok", "dropped") and r.get("target")}
        if self.fingerprints_environment:
            targets |= environment_tables(config, self.gcp_conn_id, context, client) | set(earlier or {})
        prints: dict[str, dict[str, Any]] = {}
        for target in sorted(targets):  # `dataset.table` of the top-level project, or `project.dataset.table`
            found = fingerprint(client, config.project, target)
            if found is not None:
                prints[target] = found
        return prints

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.cancel_all()


def recorded_fingerprints(store: ManifestStore, prefix: str, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fingerprints the run's units recorded so far, later units' over earlier ones'."""
    recorded: dict[str, dict[str, Any]] = {}
    for unit in manifest.get("units") or []:
        recorded.update((store.read(f"{prefix}/results/{unit}.json") or {}).get("fingerprints") or {})
    return recorded


def environment_tables(config: EnvsyncConfig, conn_id: str, context: Context, client: Any) -> set[str]:
    """Every table in the datasets of the environments this run holds leases on, each listed in its
    environment's project and named as `config.qualified` names it (`dataset.table`, or
    `project.dataset.table` in a split layout)."""
    from google.api_core.exceptions import NotFound

    from envsync.operators.leasing import env_datasets, held_envs, lease_project

    found: set[str] = set()
    for env in held_envs(config, conn_id, context):
        project = lease_project(config, env)
        for dataset in env_datasets(config, env):
            try:
                tables = client.list_tables(f"{project}.{dataset}")
                found |= {config.qualified(project, dataset, t.table_id) for t in tables}
            except NotFound:
                continue
    return found


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
            brief = self.report(context)
            self.prove(context)
            return brief
        except BaseException as failure:
            error = self.refused(context) or failure
            raise
        finally:
            self.audit(context, error)
            self.release(context, error)

    def refused(self, context: Context) -> BaseException | None:
        """The lease refusal of this run's plan (naming the run that held the environment), if any."""
        from envsync.core.config import load_config
        from envsync.operators.leasing import refusal

        try:
            why = refusal(load_config(), self.gcp_conn_id, context)
        except Exception:
            return None
        return None if why is None else RuntimeError(f"refused the environment's lease: {why}")

    def release(self, context: Context, error: BaseException | None) -> None:
        """Give back the leases this run holds (after its last write: this report task)."""
        from envsync.core.config import load_config
        from envsync.operators.leasing import release_leases

        try:
            released = release_leases(
                load_config(), self.gcp_conn_id, context, self.task_id, "failed" if error is not None else "success"
            )
        except Exception as failure:  # a lease not given back goes stale and is taken over
            self.log.warning("could not release this run's leases: %s", failure)
            return
        if released:
            self.log.info("released the leases of %s", ", ".join(released))

    def prove(self, context: Context) -> None:
        """Before reporting success: re-read the fingerprints of every table the run wrote and compare them
        with what its units recorded; a difference fails the run, naming the tables and who else wrote."""
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.bigquery.verify import fingerprint, fingerprint_changes
        from envsync.core.clients import bigquery_client
        from envsync.core.config import load_config
        from envsync.operators.leasing import held_envs, leases_for

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = run_prefix(store, context)
        manifest = read_plan(store, prefix)
        recorded = recorded_fingerprints(store, prefix, manifest)
        if not recorded:
            return
        client = bigquery_client(config.project, config.location, self.gcp_conn_id)
        now = {target: fingerprint(client, config.project, target) for target in recorded}
        changes = fingerprint_changes(recorded, now)
        if not changes:
            self.log.info("proved: the %d table(s) this run wrote hold what it recorded", len(recorded))
            return
        leases = leases_for(config, self.gcp_conn_id)
        others = []
        for env in held_envs(config, self.gcp_conn_id, context):
            state = leases.read(env)
            if state is not None and state.holder.run_id != context["run_id"]:
                others.append(f"{env} is held by {state.holder.describe()}")
            last = leases.last_release(env)
            if last and last.get("run_id") != context["run_id"]:
                others.append(f"{env} was last written by run {last.get('run_id')} of DAG {last.get('dag_id')}")
        raise AirflowFailException(
            f"{len(changes)} table(s) no longer hold what this run wrote: "
            + "; ".join(changes)
            + (f". Changed meanwhile: {'; '.join(others)}" if others else ". The leases name no other writer")
        )

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
            "envsync run report%s: %s\n%s\n%d objects, %d ok, %d failed, %s rows, est. %s billed, %d BigQuery jobs, "
            "%d retries under BigQuery's rate limits%s",
            " (dry run)" if dry_run else "",
            ", ".join(header),
            results_table(results),
            summary["objects"],
            summary["ok"],
            len(summary["failed"]),
            f"{summary['rows']:,}",
            human_bytes(summary["est_bytes_billed"]),
            summary["jobs"],
            summary.get("retries", 0),
            f" ({summary['retry_reasons']})" if summary.get("retry_reasons") else "",
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
