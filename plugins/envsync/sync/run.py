"""The prod -> dev sync: plan from prod metadata, then execute server-side, verify, publish.

Prod is read in prod's project (`prod.project`); the environment's datasets are written in the
environment's project (`environments.<env>.project`), by jobs of the client the runner was given
(the environment's `jobs_project`). Each table is built under a staging name in the dev dataset,
verified against prod as of T, and only then renamed to its final name. When anything fails for a
table, both the staging table and the final table are dropped, so a failed table never remains in dev
looking complete; a rerun of the same run (same T, same window) converges to the end state of a clean
run.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envsync.bigquery.actions import Action
from envsync.bigquery.datasets import ensure_env_dataset, env_labels
from envsync.bigquery.ddl import (
    carry_column_options,
    cluster_clause,
    columns_sql,
    insert_columns,
    is_ingestion_time,
    partition_clause,
)
from envsync.bigquery.discovery import DatasetInfo, TableInfo, discover_dataset, list_existing
from envsync.bigquery.jobs import JobRunner, JobStats, run_recorded
from envsync.bigquery.partitions import (
    MAX_PARTITIONS_PER_JOB,
    Chunk,
    chunk_params,
    chunk_predicate,
    describe,
    id_chunks,
    outside_window,
    spec_of,
    window_chunks_on,
)
from envsync.bigquery.verify import (
    compare_counts,
    compare_partitioning,
    compare_schema,
    count_rows,
    count_unmasked,
    partition_filter,
    window_filter,
    window_params,
)
from envsync.bigquery.views import rewrite_view_sql
from envsync.core.guard import GuardedBigQuery, ProdWriteRefused, TableRef, WriteGuard
from envsync.core.identifiers import quote, quote_column, quote_dataset
from envsync.core.sqltemplates import render
from envsync.core.window import Window
from envsync.observe.report import result_row
from envsync.privacy.masking import MaskError, masked_select, masks_from_dicts, needs_salt, require_salt
from envsync.sync.plan import STAGE_SUFFIX, DatasetPlan, check_table_filter, order_views, plan_dataset, single_trim

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.config import EnvsyncConfig

log = logging.getLogger(__name__)


class SyncError(RuntimeError):
    """One or more objects failed; the message names every failed table."""


class VerificationError(SyncError):
    """A copy does not match prod as of T. Deterministic: retrying the same run cannot fix it."""


DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (VerificationError, ProdWriteRefused, MaskError)


@dataclass(frozen=True)
class RunInfo:
    dag_id: str
    run_id: str
    task_id: str
    cut: dt.datetime
    window: Window | None
    env: str = "dev"


# ---------------------------------------------------------------------------------- planning


def build_plans(
    config: EnvsyncConfig,
    client: bigquery.Client,
    *,
    datasets: list[str],
    tables: list[str],
    env: str = "dev",
    window: Window | None = None,
) -> list[DatasetPlan]:
    """Discover the selected prod datasets (in prod's project) and their environment datasets (in the
    environment's project), and plan every object.

    With the dev window, prod's partition ids (INFORMATION_SCHEMA.PARTITIONS, one metadata query per
    dataset) let the plan count the jobs needed to stay under 4,000 partitions per job."""
    unknown = [d for d in datasets if d not in config.prod.datasets]
    if unknown:
        raise ValueError(f"datasets {unknown} are not configured; allowed: {config.prod.datasets}")
    infos: list[DatasetInfo] = [
        discover_dataset(client, config.prod_project, ds, row_access_policies=True) for ds in datasets
    ]
    check_table_filter(tables, infos)
    plans = []
    for info in infos:
        existing = list_existing(client, config.project_of(env), config.env_dataset(env, info.dataset))
        ids = prod_partition_ids(client, config.prod_project, info) if window is not None and env == "dev" else None
        plans.append(
            plan_dataset(
                config, info, existing=existing, tables_filter=tables, env=env, window=window, partition_ids=ids
            )
        )
    return plans


# ---------------------------------------------------------------------------------- execution


class DatasetSync:
    """Executes one dataset's plan with at most `max_concurrent_jobs` BigQuery jobs in flight.

    Sources are read in the project of `source_env`; targets are written in the project of
    `target_env` (by default the run's environment)."""

    source_env = "prod"  # what the copies are verified against (messages), and where they are read
    target_env: str | None = None  # the environment written (None: the run's)

    def __init__(self, config: EnvsyncConfig, bq: GuardedBigQuery, runner: JobRunner, run: RunInfo):
        self.config = config
        self.bq = bq
        self.runner = runner
        self.run = run
        self.source_project = config.project_of(self.source_env)
        self.target_project = config.project_of(self.target_env or run.env)
        self._masked: dict[str, list[dict[str, Any]]] = {}

    def target_name(self, action: Action) -> str:
        """How results name an action's target (with its project once the layout is split)."""
        return self.config.qualified(self.target_project, action.target_dataset, action.table)

    def _row(self, action: Action) -> dict[str, Any]:
        return result_row(
            self.config.qualified(self.source_project, action.dataset, action.table),
            self.target_name(action),
            action.action,
            action.reason,
            est_bytes_billed=action.est_bytes_billed,
        )

    # dataset -------------------------------------------------------------------------------
    def ensure_dataset(self, plan: DatasetPlan) -> str:
        return ensure_env_dataset(
            self.bq,
            f"{self.target_project}.{plan.target_dataset}",
            location=plan.location,
            description=plan.description,
            labels=env_labels(plan.labels, plan.env, plan.dataset),
            kms_key_name=plan.kms_key_name,
        )

    # tables --------------------------------------------------------------------------------
    def _refs(self, action: Action) -> tuple[TableRef, TableRef, TableRef]:
        source = TableRef(self.source_project, action.dataset, action.table)
        target = TableRef(self.target_project, action.target_dataset, action.table)
        stage = TableRef(self.target_project, action.target_dataset, action.table + STAGE_SUFFIX)
        return source, target, stage

    def _build(self, action: Action, info: TableInfo, source: TableRef, stage: TableRef, stats: JobStats) -> None:
        key = (action.dataset, action.table)
        cut = {"cut": self.run.cut}
        if action.action in ("clone_window", "full_clone"):
            sql = render("sync/clone_table", target=stage.sql, source=source.sql)
            self.runner.run(sql, key=key + ("clone",), params=cut, stats=stats)
        if action.action == "clone_window":
            self._trim(action, info, stage, stats)
        if action.action in ("ctas_window", "masked_ctas"):
            self._ctas(action, info, source, stage, stats)

    def _trim(self, action: Action, info: TableInfo, stage: TableRef, stats: JobStats) -> None:
        """DELETE the rows outside the window from the clone: one DELETE per chunk of at most 4,000
        partitions (https://cloud.google.com/bigquery/quotas#partitioned_tables), chunked on the
        partitions the clone really has (INFORMATION_SCHEMA.PARTITIONS) - unless the plan's count of
        prod's partitions outside the window is well under the limit (`plan.single_trim`)."""
        key = (action.dataset, action.table)
        column = quote_column(action.date_column or "")
        assert self.run.window is not None  # clone_window runs only with a window
        params = window_params(action, self.run.window)
        spec = spec_of(info)
        chunks = [Chunk(None, None, 0)]
        if single_trim(action):  # the plan counted prod's partitions outside the window: one DELETE
            chunks = [Chunk(None, None, action.trim_partitions or 0)]
        elif spec is not None and spec.unit != "RANGE" and spec.column.lower() == (action.date_column or "").lower():
            chunks = id_chunks(
                partition_ids(self.runner, stage, key, stats),
                spec,
                keep=outside_window(spec, params["window_start"], params["window_end"]),
            )
        if len(chunks) > 1:
            log.info(
                "%s: trimming %d partitions outside the window in %d DELETE jobs (at most %d partitions each): %s",
                stage,
                sum(c.partitions for c in chunks),
                len(chunks),
                MAX_PARTITIONS_PER_JOB,
                describe(chunks),
            )
        for index, chunk in enumerate(chunks):
            sql = render(
                "sync/delete_outside_window",
                target=stage.sql,
                column=column,
                chunk=chunk_predicate(action.date_column or "", chunk),
            )
            part = ("trim",) if len(chunks) == 1 else ("trim", str(index))
            self.runner.run(sql, key=key + part, params={**params, **chunk_params(chunk)}, stats=stats)

    def _ctas(self, action: Action, info: TableInfo, source: TableRef, stage: TableRef, stats: JobStats) -> None:
        """The window as of T (a masked copy without a date column: the whole table), prod's columns or
        their masks: one CTAS when it fits in one job; otherwise (more than 4,000 partitions, or an
        ingestion-time table, which CTAS cannot create) CREATE TABLE plus one INSERT per chunk."""
        key = (action.dataset, action.table)
        masks = masks_from_dicts(action.masks)
        select, mask_params = masked_select(self.config, info, masks) if masks else ("*", {})
        windowed = action.date_column is not None and self.run.window is not None
        window = self.run.window if windowed else None
        params = {"cut": self.run.cut, **(window_params(action, window) if window is not None else {}), **mask_params}
        # partition_filter: `true`, or a predicate satisfying prod's require_partition_filter
        row_filter = (
            f"{window_filter(action.date_column)}\n    and {partition_filter(info)}"
            if windowed
            else partition_filter(info)
        )
        ddl = dict(
            target=stage.sql,
            columns=columns_sql(info),
            partition_by=partition_clause(info),
            cluster_by=cluster_clause(info),
        )
        spec = spec_of(info)
        if windowed:
            chunks = window_chunks_on(spec, action.date_column, params["window_start"], params["window_end"])
        elif spec is not None:  # the whole table: split on the partitions prod has
            chunks = id_chunks(partition_ids(self.runner, source, key, stats), spec)
        else:
            chunks = [Chunk(None, None, 0)]
        if len(chunks) == 1 and not is_ingestion_time(info):
            sql = render("sync/ctas_window", **ddl, source=source.sql, select_list=select, row_filter=row_filter)
            self.runner.run(sql, key=key + ("ctas",), params=params, stats=stats)
        else:
            log.info(
                "%s: creating the table, then copying %s in %d INSERT job(s)%s: %s",
                stage,
                "the window" if windowed else "the table",
                len(chunks),
                " (ingestion-time partitioned: CTAS cannot create it)" if is_ingestion_time(info) else "",
                describe(chunks),
            )
            self.runner.run(render("sync/create_table", **ddl), key=key + ("create",), stats=stats)
            prefix = "_PARTITIONTIME, " if is_ingestion_time(info) else ""
            for index, chunk in enumerate(chunks):
                sql = render(
                    "sync/insert_window",
                    target=stage.sql,
                    source=source.sql,
                    insert_columns=insert_columns(info),
                    select_columns=insert_columns(info) if not masks else prefix + select,
                    row_filter=row_filter,
                    chunk=chunk_predicate(spec.column if spec else "", chunk),
                )
                self.runner.run(
                    sql, key=key + ("insert", str(index)), params={**params, **chunk_params(chunk)}, stats=stats
                )
        carry_column_options(self.bq, stage, info.schema)

    def _verify(
        self, action: Action, info: TableInfo, source: TableRef, stage: TableRef, stats: JobStats
    ) -> tuple[int, list[str], list[str]]:
        windowed = action.action in ("clone_window", "ctas_window") or (
            action.action == "masked_ctas" and action.date_column is not None
        )
        prod_counts, copy_counts = count_rows(
            self.runner,
            action,
            source,
            stage,
            cut=self.run.cut,
            window=self.run.window if windowed else None,
            stats=stats,
            keep_all=partition_filter(info),
        )
        name = self.target_name(action)
        problems = compare_counts(name, prod_counts, copy_counts, self.source_env)
        copy_table = self.bq.client.get_table(stage.api)
        problems += compare_schema(name, info.schema, [f.to_api_repr() for f in copy_table.schema])
        warnings: list[str] = []
        if action.masks:
            problems += self._verify_masks(action, info, source, stage, stats, windowed)
        partitioning = compare_partitioning(name, info, copy_table)
        if self.config.sync.verify_partitioning == "error":
            problems += partitioning
        else:
            warnings += partitioning
        return sum(copy_counts.values()), problems, warnings

    def _verify_masks(
        self, action: Action, info: TableInfo, source: TableRef, stage: TableRef, stats: JobStats, windowed: bool
    ) -> list[str]:
        """Count, in BigQuery, the copy's masked values equal to prod's value for the same row (must be 0)."""
        masks = masks_from_dicts(action.masks)
        counts = count_unmasked(
            self.runner,
            action,
            info,
            source,
            stage,
            cut=self.run.cut,
            window=self.run.window if windowed else None,
            stats=stats,
        )
        self._masked[action.key] = [{**m.to_dict(), "kind": m.kind, "unmasked_rows": counts[m.column]} for m in masks]
        leaked = {m.column: counts[m.column] for m in masks if counts[m.column]}
        log.info(
            "%s: masked columns %s; rows still holding prod's value: %s",
            stage,
            [f"{m.column} ({m.kind})" for m in masks],
            counts,
        )
        if not leaked:
            return []
        return [
            f"{self.target_name(action)}: masked column(s) still hold prod's value for the same row "
            f"in {leaked} row(s) (matched on {', '.join(action.match_key) or 'a hash of the unmasked columns'})"
        ]

    def _publish(self, action: Action, info: TableInfo, stage: TableRef, target: TableRef, stats: JobStats) -> None:
        sql = render("sync/swap_stage", target=target.sql, stage=stage.sql, target_name=quote(target.table))
        self.runner.run(sql, key=(action.dataset, action.table, "publish"), stats=stats)
        table = self.bq.client.get_table(target.api)
        table.description = info.description
        table.labels = {**info.labels, "envsync-run": self.runner.labels["envsync-run"]}
        self.bq.update_table(table, ["description", "labels"])

    def sync_table(self, action: Action, info: TableInfo) -> dict[str, Any]:
        source, target, stage = self._refs(action)
        result = self._row(action)

        def work(stats: JobStats) -> None:
            self._build(action, info, source, stage, stats)
            rows, problems, warnings = self._verify(action, info, source, stage, stats)
            result.update(rows=rows, warnings=warnings)
            if action.key in self._masked:
                result["masked"] = self._masked[action.key]
            for warning in warnings:
                log.warning("%s (verify_partitioning is 'warn')", warning)
            if problems:
                raise VerificationError("; ".join(problems))
            self._publish(action, info, stage, target, stats)

        return run_recorded(
            result, work, deterministic=DETERMINISTIC_ERRORS, on_failure=lambda: self._discard(stage, target)
        )

    def _discard(self, *refs: TableRef) -> None:
        for ref in refs:
            try:
                self.bq.delete_table(ref)
            except Exception as error:  # keep reporting the original failure
                log.error("could not drop %s after a failure: %s", ref, error)

    # views and drops -------------------------------------------------------------------------
    def sync_view(self, action: Action, description: str | None = None) -> dict[str, Any]:
        _, target, _ = self._refs(action)
        row = self._row(action)
        if action.other_projects:
            note = f"reads {', '.join(action.other_projects)} of another project: left as it is"
            log.warning("view %s %s", row["target"], note)
            row["warnings"] = [note]
        env = self.run.env
        return run_recorded(
            row,
            lambda stats: create_view(
                self.runner,
                target,
                action.view_sql or "",
                allowed_prefix=self.config.env_prefixes()[env],
                datasets=[self.config.env_dataset(env, ds) for ds in self.config.prod.datasets],
                other_projects=action.other_projects,
                env=env,
                key=(action.dataset, action.table),
                stats=stats,
                description=description,
            ),
            deterministic=DETERMINISTIC_ERRORS,
            on_failure=lambda: self._discard(target),
        )

    def drop(self, action: Action) -> dict[str, Any]:
        start = time.monotonic()
        _, target, _ = self._refs(action)
        result = self._row(action)
        try:
            self.bq.delete_table(target)
            result["status"] = "dropped"
            log.info("dropped %s (%s)", target, action.reason)
        except Exception as error:
            result.update(status="failed", error=f"{type(error).__name__}: {error}")
        result["seconds"] = JobRunner.elapsed(start)
        return result

    # the whole dataset ------------------------------------------------------------------------
    def execute(self, plan: DatasetPlan) -> list[dict[str, Any]]:
        check_salt(self.config, [plan])  # before anything is written
        self.ensure_dataset(plan)
        tables = plan.by_action("clone_window", "ctas_window", "full_clone", "masked_ctas")
        log.info(
            "syncing %s -> %s: %d tables, %d to drop, with up to %d concurrent jobs (views follow)",
            self.config.qualified(self.source_project, plan.dataset),
            self.config.qualified(self.target_project, plan.target_dataset),
            len(tables),
            len(plan.by_action("drop")),
            self.config.sync.max_concurrent_jobs,
        )
        results: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=self.config.sync.max_concurrent_jobs) as pool:
            futures = [pool.submit(self.sync_table, a, plan.tables[a.table]) for a in tables]
            for future in futures:
                result = future.result()
                log.info(
                    "%s: %s, %s rows, %.1f s", result["table"], result["status"], result.get("rows"), result["seconds"]
                )
                results.append(result)
        for action in plan.by_action("skip"):
            results.append({**self._row(action), "status": "skipped"})
        for name in plan.excluded:
            results.append(
                {
                    **self._row(Action(plan.dataset, name, plan.target_dataset, "exclude", "exclude: true in config")),
                    "status": "excluded",
                }
            )
        for action in plan.by_action("drop"):
            results.append(self.drop(action))
        return results


def check_salt(config: EnvsyncConfig, plans: list[DatasetPlan]) -> None:
    """Fail (MaskError naming the variable) when a planned hash/fake mask has no salt on this worker."""
    needing = [a.key for p in plans for a in p.by_action("masked_ctas") if needs_salt(masks_from_dicts(a.masks))]
    if needing:
        require_salt(config, needing)


def sync_views(
    config: EnvsyncConfig, bq: GuardedBigQuery, runner: JobRunner, run: RunInfo, plans: list[DatasetPlan]
) -> list[dict[str, Any]]:
    """Re-create every planned view, after all tables, in dependency order across datasets."""
    views = order_views([a for p in plans for a in p.by_action("view")])
    log.info("re-creating %d views on the %s datasets", len(views), run.env)
    described = {(p.dataset, name): info.description for p in plans for name, info in p.tables.items()}
    return [DatasetSync(config, bq, runner, run).sync_view(v, described.get((v.dataset, v.table))) for v in views]


def create_view(
    runner: JobRunner,
    target: TableRef,
    sql: str,
    *,
    allowed_prefix: str,
    env: str,
    key: tuple[str, ...],
    stats: JobStats,
    description: str | None = None,
    datasets: Collection[str] = (),
    other_projects: Collection[str] = (),
) -> None:
    """Create (or replace) a view whose SQL is already rewritten, after checking it reads only datasets
    of its environment; then prove it resolves with a LIMIT 0 probe, and give it prod's description
    (CREATE OR REPLACE drops the old one; set through the API, no value in the SQL text).

    The environment's datasets are those of the view's project starting with `allowed_prefix` (when
    it is not empty) or named in `datasets`; a dataset of another project passes only when its
    `project.dataset` is in `other_projects` (the third-project references its plan reported)."""
    foreign = sorted(
        {
            name
            for name, own in view_datasets(sql, target.project)
            if not (
                (bool(allowed_prefix) and name.startswith(allowed_prefix)) or name in datasets
                if own
                else name in other_projects
            )
        }
    )
    if foreign:
        raise VerificationError(f"view {target} would read {foreign}, which are not {env} datasets")
    runner.run(render("sync/create_view", target=target.sql, query=sql), key=key + ("view",), stats=stats)
    runner.run(render("sync/probe_view", target=target.sql), key=key + ("probe",), stats=stats)
    if description:
        view = runner.bq.client.get_table(target.api)
        view.description = description
        runner.bq.update_table(view, ["description"])


def view_datasets(sql: str, project: str) -> list[tuple[str, bool]]:
    """The datasets a view of `project` reads: (dataset, True) in `project` (or unqualified),
    (`other.dataset`, False) in another project."""
    found = []
    for catalog, dataset, _ in rewrite_view_sql(sql, {}, project).references:
        if dataset:
            own = catalog in ("", project)
            found.append((dataset if own else f"{catalog}.{dataset}", own))
    return found


def prod_partition_ids(client: bigquery.Client, project: str, info: DatasetInfo) -> dict[str, list[str]] | None:
    """Partition ids of every partitioned table of a prod dataset (a read of metadata), or None when
    they cannot be read (the plan then assumes one DELETE per table)."""
    from google.cloud import bigquery

    if not any(t.partitioning or t.range_partitioning for t in info.tables):
        return {}
    sql = render("sync/partition_ids_all", dataset=quote_dataset(project, info.dataset))
    try:
        rows = client.query(sql, job_config=bigquery.QueryJobConfig(), job_retry=None).result()
    except Exception as error:  # an estimate only: execution reads the partitions it splits on itself
        log.warning("could not read the partitions of %s for the estimate: %s", info.dataset, error)
        return None
    found: dict[str, list[str]] = {}
    for row in rows:
        if row["partition_id"]:
            found.setdefault(row["table_name"], []).append(row["partition_id"])
    return found


def partition_ids(runner: JobRunner, table: TableRef, key: tuple[str, ...], stats: JobStats) -> list[str]:
    """The partition ids of `table` (INFORMATION_SCHEMA.PARTITIONS: metadata, no table data read)."""
    job = runner.run(
        render("sync/partition_ids", dataset=quote_dataset(table.project, table.dataset)),
        key=key + ("partitions",),
        params={"table_name": table.table},
        stats=stats,
    )
    return [row["partition_id"] for row in job.result() if row["partition_id"]]


def failures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r["status"] == "failed"]


def sync_dataset(
    config: EnvsyncConfig, client: bigquery.Client, plan: DatasetPlan, run: RunInfo
) -> list[dict[str, Any]]:
    bq = GuardedBigQuery(client, WriteGuard.from_config(config), plan.location or config.location)
    runner = JobRunner(
        bq, dag_id=run.dag_id, run_id=run.run_id, task_id=run.task_id, timeout=config.sync.job_timeout_seconds
    )
    return DatasetSync(config, bq, runner, run).execute(plan)


def run_sync(
    config: EnvsyncConfig,
    client: bigquery.Client,
    *,
    anchor: dt.datetime,
    run_id: str,
    datasets: list[str] | None = None,
    tables: list[str] | None = None,
    window_quarters: int | None = None,
    cut: dt.datetime | None = None,
) -> dict[str, Any]:
    """A whole sync outside Airflow (benchmarks, scripts): plan, execute every dataset, summarise."""
    from envsync.core.window import new_cut, quarter_window
    from envsync.observe.report import summarise

    window = quarter_window(anchor, window_quarters or config.environments.dev.window_quarters)
    plans = build_plans(
        config, client, datasets=datasets or list(config.prod.datasets), tables=tables or [], window=window
    )
    run = RunInfo("prod_to_dev_sync", run_id, "sync_dataset", cut or new_cut(), window)
    results: list[dict[str, Any]] = []
    for plan in plans:
        results.extend(sync_dataset(config, client, plan, run))
    bq = GuardedBigQuery(client, WriteGuard.from_config(config), config.location)
    runner = JobRunner(
        bq, dag_id=run.dag_id, run_id=run.run_id, task_id="sync_views", timeout=config.sync.job_timeout_seconds
    )
    results.extend(sync_views(config, bq, runner, run, plans))
    return summarise(results, cut=run.cut, window=window)
