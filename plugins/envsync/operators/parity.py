"""Operators of the parity check: the daily `parity` DAG's task, and the last task of every refresh run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from envsync.core.clients import DEFAULT_CONN_ID
from envsync.environments.parity import ENVIRONMENTS as ENVIRONMENTS  # re-exported: the DAG's environments param
from envsync.operators.common import guarded_runner, manifest_store, record_run_audit, run_prefix

if TYPE_CHECKING:
    from airflow.sdk import Context

    from envsync.environments.parity import ParityResult


def _publish(operator: BaseOperator, config: Any, context: Context, result: ParityResult) -> dict[str, Any]:
    """Log the findings and the summary, add the summary to the run's report, alert on drift."""
    from envsync.environments.parity import findings_table
    from envsync.observe.alerts import alert_parity
    from envsync.observe.report import parity_summary_text

    summary = result.summary()
    operator.log.info(
        "parity of %s against prod:\n%s",
        ", ".join(result.environments) or "no environment",
        findings_table(result.findings),
    )
    operator.log.info("%s", parity_summary_text(summary))
    try:
        store = manifest_store(config, getattr(operator, "gcp_conn_id", DEFAULT_CONN_ID))
        prefix = run_prefix(store, context)
        store.update(f"{prefix}/report.json", lambda report: {**report, "parity": summary})
    except Exception as error:  # the findings are in the audit table and the log already
        operator.log.warning("could not add the parity summary to the run report: %s", error)
    alert_parity(config, context, summary)
    return summary


def _merge(results: Sequence[ParityResult]) -> ParityResult:
    from envsync.environments.parity import ParityResult

    return ParityResult(
        results[0].checked_at,
        [e for r in results for e in r.environments],
        sorted({d for r in results for d in r.datasets}),
        [f for r in results for f in r.findings],
    )


class _ParityBase(BaseOperator):
    template_fields: Sequence[str] = ("environments", "datasets")
    ui_color = "#f3e8fd"

    def __init__(
        self, *, environments: Any = None, datasets: Any = None, gcp_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.environments = environments
        self.datasets = datasets
        self.gcp_conn_id = gcp_conn_id


class ParityOperator(_ParityBase):
    """Compare the chosen environments with prod (reads only), record the findings in
    envsync_audit.parity, log them, and alert on unexpected drift. Drift does not fail the task: the
    alert and the audit rows are the signal; an environment that cannot be read does."""

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.bigquery.discovery import DiscoveryError
        from envsync.core.config import ConfigError, load_config
        from envsync.environments.parity import audit_runner, check, record
        from envsync.operators.params import check_datasets, check_environments_param

        config = load_config()
        try:
            environments = check_environments_param(self.environments)
            datasets = check_datasets(config, self.datasets)
        except (ConfigError, ValueError) as bad_param:
            raise AirflowFailException(str(bad_param)) from bad_param
        busy = being_rebuilt(config, self.gcp_conn_id, environments)
        for env, holder in busy.items():
            self.log.warning("%s: being rebuilt by %s; not compared this run (never a half-written state)", env, holder)
        environments = [env for env in environments if env not in busy]
        if not environments:
            return {"being_rebuilt": busy, "environments": []}
        self.log.info("checking the parity of %s with prod, datasets %s", environments, datasets)
        # reads every environment, writes only the audit dataset: its jobs run in the audit project
        runner = audit_runner(config, guarded_runner(config, self.gcp_conn_id, context, self.task_id, env="audit"))
        error: BaseException | None = None
        result = None
        try:
            try:
                result = check(config, runner, environments=environments, datasets=datasets)
            except DiscoveryError as failure:
                raise AirflowFailException(str(failure)) from failure
            record(config, runner, result)
            return _publish(self, config, context, result)
        except BaseException as failure:
            error = failure
            raise
        finally:
            manifest = {
                "cut": (result.checked_at if result else dt.datetime.now(dt.UTC)).isoformat(),
                "env": ",".join(result.environments if result else environments),
                "params": {"datasets": datasets},
            }
            try:
                record_run_audit(config, self.gcp_conn_id, context, self.task_id, manifest, [], error)
            except Exception as failure:  # the audit never fails the check
                self.log.warning("could not record this run in the audit tables: %s", failure)


def being_rebuilt(config: Any, conn_id: str, environments: Sequence[str]) -> dict[str, str]:
    """The environments another run is writing now (their lease holder), which readers leave alone."""
    from envsync.operators.leasing import lease_holders

    try:
        holders = lease_holders(config, conn_id, [e for e in environments if e != "test"])
    except Exception as error:  # no state bucket yet: nothing is being written
        from google.api_core.exceptions import NotFound

        if isinstance(error, NotFound):
            return {}
        raise
    return {env: state.holder.describe() for env, state in holders.items() if state is not None}


# prod is the reference, not an environment parity checks: a promotion to prod checks the environments
# that took its migrations before it (with prod's new schema they hold nothing prod lacks)
PROD_PROMOTION_PARITY = ("qa", "staging")


def refreshed_environments(dag_id: str, manifest: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(environment kind, test name) of every environment a refresh run wrote, from its manifest (a
    promotion to prod: PROD_PROMOTION_PARITY)."""
    params = manifest.get("params") or {}
    if dag_id == "promote_schema" and manifest.get("env") == "prod":
        return [(env, None) for env in PROD_PROMOTION_PARITY]
    if params.get("test_env"):
        return [("test", str(params["test_env"]))]
    if manifest.get("env"):
        return [(str(manifest["env"]), None)]
    if params.get("environments"):
        return [(str(env), None) for env in params["environments"]]
    from envsync.observe.audit import DAG_ENVIRONMENTS

    env = DAG_ENVIRONMENTS.get(dag_id)
    return [(env, None)] if env else []


class RefreshParityOperator(_ParityBase):
    """The last task of a sync, reseed or prod-copy run (and of schema promotions): the parity of the
    environment(s) the run refreshed. Records, logs, adds a summary to the run report and alerts on
    drift; fails the run on unexpected structural drift of an object the run itself wrote (the
    refresh did not give it prod's shape: `parity.refresh_failures`), never on metadata, freshness or
    row-count findings.

    `environments`: the environment(s) to check (`dev`, `qa`, a list, or `test_<name>`); default:
    those the run's manifest names. `datasets`: default those of the run's params."""

    def _targets(self, manifest: dict[str, Any], dag_id: str) -> list[tuple[str, str | None]]:
        from envsync.environments.parity import ENVIRONMENTS

        chosen = self.environments
        if chosen in (None, "", []):
            return refreshed_environments(dag_id, manifest)
        out = []
        for name in [chosen] if isinstance(chosen, str) else list(chosen):
            kind, _, test_name = str(name).partition("_") if str(name).startswith("test_") else (str(name), "", "")
            if kind not in ENVIRONMENTS:
                raise ValueError(
                    f"environments: {name!r} is not an environment parity checks; allowed: "
                    f"{list(ENVIRONMENTS)} or test_<name>"
                )
            out.append((kind, test_name or None))
        return out

    def execute(self, context: Context) -> dict[str, Any] | None:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.core.config import load_config
        from envsync.environments.parity import check_refreshed, refresh_failures
        from envsync.operators.params import check_datasets

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        manifest = store.read(f"{run_prefix(store, context)}/plan.json") or {}
        params = manifest.get("params") or {}
        if params.get("dry_run"):
            self.log.info("dry run: nothing was refreshed, no parity check")
            return None
        try:
            targets = self._targets(manifest, context["dag"].dag_id)
            datasets = check_datasets(config, self.datasets or params.get("datasets"))
        except ValueError as error:
            raise AirflowFailException(str(error)) from error
        lease_names = {(kind, name): f"test_{name}" if kind == "test" and name else kind for kind, name in targets}
        busy = being_rebuilt(config, self.gcp_conn_id, sorted(set(lease_names.values())))
        for env, holder in busy.items():
            self.log.warning("%s: being rebuilt by %s since this run; its parity is checked by that run", env, holder)
        targets = [t for t in targets if lease_names[t] not in busy]
        runner = guarded_runner(config, self.gcp_conn_id, context, self.task_id, env="audit")
        results = [
            check_refreshed(config, runner, kind, datasets=datasets, test_name=test_name) for kind, test_name in targets
        ]
        if not results:
            self.log.info("the run refreshed no environment: no parity check")
            return None
        result = _merge(results)
        summary = _publish(self, config, context, result)
        report = store.read(f"{run_prefix(store, context)}/report.json") or {}
        written = [str(r["target"]) for r in report.get("results") or [] if r.get("status") == "ok" and r.get("target")]
        failing = refresh_failures(result, written)
        if failing:
            raise AirflowFailException(
                f"{len(failing)} unexpected structural difference(s) from prod after this refresh: "
                + "; ".join(f"{f.environment} {f.object_name}: {f.detail}" for f in failing[:10])
            )
        return summary
