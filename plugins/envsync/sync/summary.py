"""A sync plan as text for the task log, and its privacy entries (the dev sync, prod-copy and the cut).

These read the planner's DatasetPlan, so they live with the planner; the run report's shared pieces
(tables, byte counts, privacy entries) come from envsync.observe.report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envsync.bigquery.actions import Action
from envsync.observe.report import format_rows, human_bytes, merge_privacy, privacy_of, render_table
from envsync.sync.plan import DatasetPlan

if TYPE_CHECKING:
    from envsync.core.config import EnvsyncConfig

# BigQuery limits a run is measured against (https://cloud.google.com/bigquery/quotas).
TABLE_OPERATIONS_PER_TABLE_PER_DAY = 1_500
DATASET_METADATA_UPDATES_PER_10S = 5


def plan_table(plans: list[DatasetPlan]) -> str:
    rows = []
    for plan in plans:
        for a in plan.actions:
            rows.append(
                [
                    a.key,
                    a.action,
                    format_rows(a.source_rows) if a.action not in ("view", "drop") else "-",
                    human_bytes(a.est_bytes_billed),
                    str(a.est_jobs),
                    a.reason + (f"; {a.billing_note}" if getattr(a, "billing_note", "") else ""),
                ]
            )
        for name in plan.excluded:
            rows.append([f"{plan.dataset}.{name}", "exclude", "-", human_bytes(0), "0", "exclude: true in config"])
    return render_table(["table", "action", "prod rows", "est. bytes billed", "jobs", "why"], rows)


def source_name(config: EnvsyncConfig, action: Action) -> str:
    """How reports name the prod table of a sync or prod-copy action (with prod's project once split)."""
    return config.qualified(config.prod_project, action.dataset, action.table)


def target_name(config: EnvsyncConfig, env: str, action: Action) -> str:
    """How reports name the target of an action of `env` (with the environment's project once split)."""
    return config.qualified(config.project_of(env), action.target_dataset, action.table)


def privacy_entries(plans: list[DatasetPlan], config: EnvsyncConfig | None = None) -> dict[str, Any]:
    """The plan's privacy report: per environment, the masked columns (and their mask and origin: the
    table's config or a policy tag of privacy.policy_tags) and the policy-tagged columns copied unmasked.

    Tables are named as `config` qualifies them (`dataset.table` without a config)."""
    return merge_privacy(
        [
            privacy_of(
                plan.env,
                source_name(config, a) if config else a.key,
                target_name(config, plan.env, a) if config else f"{a.target_dataset}.{a.table}",
                a.masks,
                a.unmasked_tagged,
            )
            for plan in plans
            for a in plan.actions
        ]
    )


def quota_summary(plans: list[DatasetPlan], config: EnvsyncConfig | None = None, *, dataset_tasks: int = 2) -> str:
    """What this run will ask of BigQuery against each documented limit, and the peak rates envsync
    allows itself (`rate_limits`, `sync.max_concurrent_jobs`; `dataset_tasks` mapped tasks at once)."""
    from envsync.core import limits
    from envsync.core.config import RateLimitSettings, SyncSettings

    rates = config.rate_limits if config is not None else RateLimitSettings()
    per_task = (config.sync if config is not None else SyncSettings()).max_concurrent_jobs
    tasks = max(1, min(dataset_tasks, len(plans)))
    actions = [a for p in plans for a in p.actions]
    tables = [a for a in actions if a.action not in ("view", "skip", "exclude")]
    jobs = sum(a.est_jobs for a in actions)
    in_flight = tasks * per_task
    table_ops = max((a.est_jobs for a in tables), default=0)
    dataset_updates = 2 * len(plans)
    peak = tasks * rates.api_requests_per_second
    over = ", REACHABLE: lower rate_limits.api_requests_per_second" if peak > limits.API_REQUESTS_PER_SECOND else ""
    return "\n".join(
        [
            f"BigQuery limits for this run ({limits.QUOTAS_DOC}):",
            f"  jobs: {jobs} query jobs, at most {in_flight} in flight ({tasks} dataset task(s) x {per_task}); "
            f"BigQuery queues up to {limits.QUERY_QUEUE_INTERACTIVE:,} interactive queries per project and region",
            f"  API requests: about {2 * jobs + len(tables)} (jobs.insert {jobs}, jobs.getQueryResults {jobs}, "
            f"tables.get {len(tables)}); peak at most {rates.api_requests_per_second}/s per method per task, "
            f"{peak}/s for the run (BigQuery: {limits.API_REQUESTS_PER_SECOND}/s per user per method"
            f"{over}); "
            f"tables.insert 0",
            f"  table metadata updates: at most {table_ops} per table, at most {rates.table_updates_per_10s} per 10 s "
            f"(BigQuery: {limits.TABLE_UPDATES_PER_10S} per 10 s, {TABLE_OPERATIONS_PER_TABLE_PER_DAY:,} per day)",
            f"  dataset metadata updates: {dataset_updates}, "
            f"at most {rates.dataset_updates_per_10s} per 10 s per dataset "
            f"(BigQuery: {DATASET_METADATA_UPDATES_PER_10S} per 10 s)",
            f"  snapshot jobs: none (clones, copies and CTAS; BigQuery allows {limits.CONCURRENT_SNAPSHOT_JOBS} "
            "concurrent snapshot jobs)",
        ]
    )
