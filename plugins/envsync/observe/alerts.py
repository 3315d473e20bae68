"""Slack alerts of envsync runs, sent through the Airflow Slack provider's webhook notifier.

Every DAG notifies on failure; prod_to_dev_sync, reseed_environments, recovery_drill, staging_cut and
promote_schema also on success (`dag_defaults.alert_callbacks`). A dev sync that copies policy-tagged
columns unmasked (their tag is not in privacy.policy_tags and the table's config does not mask them)
sends a privacy warning from its report task. The message is built from the run's report in the state
bucket: environment and datasets, tables and rows, estimated bytes billed, duration, the failing
tables and their errors (promote_schema's also the migration versions and the lane), and a link to
the run in the Airflow UI. The webhook comes from the Airflow
connection `alerts.slack_conn_id` (type `slackwebhook`). Sending is best effort: a missing or broken
connection, or an unreachable Slack, is logged and never fails the data work.

Parity checks post their own message when they find unexpected drift (`parity_message`: the count per
environment, the top findings, a link to the run), through the same connection (`post`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

MAX_FAILURES_SHOWN = 5
MAX_ERROR = 300
ICONS = {"success": ":white_check_mark:", "failure": ":x:", "privacy": ":warning:", "drift": ":warning:"}
MAX_COLUMNS_SHOWN = 10
RUN_KINDS = ("success", "failure", "privacy")  # what EnvsyncSlackNotifier sends (drift goes through alert_parity)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h " if hours else "") + (f"{minutes}m " if hours or minutes else "") + f"{secs}s"


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow 3 UI."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def build_message(
    *,
    kind: str,
    dag_id: str,
    run_id: str,
    report: dict[str, Any] | None,
    duration: float | None,
    url: str,
    failed_tasks: list[str],
    reason: str | None = None,
) -> dict[str, Any]:
    """The Slack payload (`text` and `blocks`) of a run's success or failure alert (pure)."""
    from envsync.observe.audit import environment_of
    from envsync.observe.report import BOOKKEEPING_ACTIONS, human_bytes

    planned = bool(report)
    report = report or {}
    results = report.get("results") or [{**row, "status": "not run"} for row in report.get("planned") or []]
    counted = [r for r in results if r.get("action") not in BOOKKEEPING_ACTIONS]
    failed = [r for r in results if r.get("status") == "failed"]
    failed_counted = [r for r in counted if r.get("status") == "failed"]
    datasets = (report.get("params") or {}).get("datasets") or []
    env = environment_of(dag_id, report) or "-"
    rows = sum(int(r.get("rows") or 0) for r in counted)
    est = sum(int(r.get("est_bytes_billed") or 0) for r in counted)
    if kind == "privacy":
        return _privacy_message(dag_id=dag_id, run_id=run_id, report=report, env=env, url=url)
    verb = "succeeded" if kind == "success" else "FAILED"
    headline = f"{ICONS[kind]} envsync *{dag_id}* {verb} on *{env}* ({', '.join(datasets) or 'no datasets planned'})"
    facts = (
        f"tables: {len(counted)} ({len(counted) - len(failed_counted)} ok, {len(failed_counted)} failed) | "
        f"rows: {rows:,} | "
        f"est. bytes billed: {human_bytes(est)} | duration: {_duration(duration)}"
    )
    lines = [headline, facts]
    promotion = report.get("promotion")
    if promotion:  # promote_schema: the versions, the environment and the lane
        lines.append(
            f"schema migrations {', '.join(map(str, promotion.get('versions') or [])) or 'none'} -> {env}, "
            f"lane {promotion.get('lane')}" + "".join(f"; {note}" for note in promotion.get("notes") or [])
        )
    if report.get("refused") and not failed:
        lines.append(f"refused: {str(report['refused'])[: MAX_ERROR * 2]}")
    if report.get("cut"):
        window = report.get("window")
        lines.append(f"T = {report['cut']}" + (f", window [{window['start']}, {window['end']})" if window else ""))
    cut = report.get("staging_cut")
    if cut:
        lines.append(
            f"QA -> staging as of T = {cut['cut']}: seed version {cut.get('seed_version') or 'none'}, "
            f"migration version {cut.get('migration_version') or 'none (qa holds no schema migration)'}"
        )
    for row in failed[:MAX_FAILURES_SHOWN]:
        lines.append(f"failed: {row.get('table')} -> {row.get('target')}: {str(row.get('error'))[:MAX_ERROR]}")
    if len(failed) > MAX_FAILURES_SHOWN:
        lines.append(f"... and {len(failed) - MAX_FAILURES_SHOWN} more failed tables")
    if kind == "failure" and not planned:
        lines.append("no plan was recorded: the plan task failed before anything was written (see its log)")
    elif kind == "failure" and not failed:
        lines.append(f"failed tasks: {', '.join(failed_tasks) or '-'}" + (f" ({reason})" if reason else ""))
    lines.append(f"<{url}|Open run {run_id} in Airflow>")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def _privacy_message(*, dag_id: str, run_id: str, report: dict[str, Any], env: str, url: str) -> dict[str, Any]:
    unmasked = [r for r in (report.get("privacy") or {}).get("unmasked_tagged") or [] if r.get("env") == env]
    lines = [
        f"{ICONS['privacy']} envsync *{dag_id}* copied {len(unmasked)} policy-tagged column(s) UNMASKED to "
        f"*{env}*: mask them (tables.<ds>.<table>.mask) or list their policy tags in privacy.policy_tags"
    ]
    for row in unmasked[:MAX_COLUMNS_SHOWN]:
        lines.append(f"unmasked: {row['target']}.{row['column']} (policy tags: {', '.join(row['policy_tags'])})")
    if len(unmasked) > MAX_COLUMNS_SHOWN:
        lines.append(f"... and {len(unmasked) - MAX_COLUMNS_SHOWN} more columns")
    lines.append(f"<{url}|Open run {run_id} in Airflow>")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def post(conn_id: str, message: Any, context: Any, *, kind: str, timeout: int = 10) -> bool:
    """Send `message` (a payload, or a function building it) through the Slack provider's webhook
    notifier and connection `conn_id`; never raises (an alert never fails the data work)."""
    dag_id = getattr(context.get("dag"), "dag_id", None) or "?"
    try:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        payload = message() if callable(message) else message
        SlackWebhookNotifier(
            slack_webhook_conn_id=conn_id, text=payload["text"], blocks=payload["blocks"], timeout=timeout
        ).notify(context)
        log.info("sent the Slack %s alert of %s through connection %r", kind, dag_id, conn_id)
        return True
    except Exception as error:  # an alert never fails the data work
        log.warning(
            "Slack %s alert of %s not sent (connection %r): %s: %s", kind, dag_id, conn_id, type(error).__name__, error
        )
        return False


def parity_message(*, dag_id: str, run_id: str, summary: dict[str, Any], url: str) -> dict[str, Any]:
    """The Slack payload of unexpected parity drift: per environment the count of unexpected and
    expected differences, the top findings, the total count and a link to the run (pure)."""
    envs = summary.get("environments") or {}
    drifting = {env: c for env, c in envs.items() if c.get("drift")}
    lines = [
        f"{ICONS['drift']} envsync *parity*: {summary['drift']} unexpected difference(s) from prod on "
        f"*{', '.join(sorted(drifting)) or '-'}* ({', '.join(summary.get('datasets') or [])}), "
        f"checked by {dag_id}",
        " | ".join(
            f"{env}: {c.get('drift', 0)} drift, {c.get('expected', 0)} expected" for env, c in sorted(envs.items())
        ),
    ]
    top = summary.get("top_drift") or []
    lines += [f"• {line[:MAX_ERROR]}" for line in top]
    if summary["drift"] > len(top):
        lines.append(
            f"... and {summary['drift'] - len(top)} more (envsync_audit.parity, sql/reports/latest_parity.sql)"
        )
    lines.append(f"<{url}|Open run {run_id} in Airflow>")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def alert_parity(config: Any, context: Any, summary: dict[str, Any]) -> bool:
    """Post the parity drift alert of this run when there is unexpected drift and alerts are on."""
    if not summary.get("drift") or not config.alerts.enabled:
        return False
    dag_id = context["dag"].dag_id
    run_id = context.get("run_id") or ""
    return post(
        config.alerts.slack_conn_id,
        lambda: parity_message(dag_id=dag_id, run_id=run_id, summary=summary, url=run_url(_base_url(), dag_id, run_id)),
        context,
        kind="drift",
    )


class EnvsyncSlackNotifier(BaseNotifier):
    """A message summarising the envsync run, sent through the Slack provider's webhook notifier; never raises.

    The provider (its hook pulls in Airflow's providers manager, about a second of imports) is loaded
    when an alert is sent, not when a DAG file is parsed: every DAG carries these callbacks.
    """

    template_fields = ()

    def __init__(self, *, kind: str, slack_webhook_conn_id: str, timeout: int = 10) -> None:
        if kind not in RUN_KINDS:
            raise ValueError(f"kind must be one of {sorted(RUN_KINDS)}, got {kind!r}")
        super().__init__()
        self.kind = kind
        self.slack_webhook_conn_id = slack_webhook_conn_id
        self.timeout = timeout

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render: the message is built from the run's report (see `message`)."""

    def notify(self, context: Any) -> None:
        post(self.slack_webhook_conn_id, lambda: self.message(context), context, kind=self.kind, timeout=self.timeout)

    def message(self, context: Any) -> dict[str, Any]:
        from envsync.core.config import load_config
        from envsync.core.manifest import ManifestStore

        dag_run = context.get("dag_run")
        dag_id = context["dag"].dag_id
        run_id = context.get("run_id") or getattr(dag_run, "run_id", "")
        report = None
        try:
            from envsync.core.clients import storage_client

            config = load_config()
            store = ManifestStore(storage_client(config.state_project), config.state.bucket)
            prefix = store.run_prefix(dag_id, run_id)
            report = store.read(f"{prefix}/report.json") or store.read(f"{prefix}/plan.json")
        except Exception as error:  # the alert still goes out, with what is known
            log.warning("could not read the run's report for the Slack alert: %s", error)
        start = getattr(dag_run, "start_date", None)
        end = getattr(dag_run, "end_date", None) or dt.datetime.now(dt.UTC)
        ti = context.get("ti")  # the run's last (for a failure: the failed) task instance
        failed_tasks = [ti.task_id] if self.kind == "failure" and getattr(ti, "task_id", None) else []
        return build_message(
            kind=self.kind,
            dag_id=dag_id,
            run_id=run_id,
            report=report,
            duration=(end - start).total_seconds() if start else None,
            url=run_url(_base_url(), dag_id, run_id),
            failed_tasks=failed_tasks,
            reason=context.get("reason"),
        )


def _base_url() -> str:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080") or "http://localhost:8080"
