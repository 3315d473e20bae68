"""The QA -> staging cut: at a sprint's end QA's state becomes staging's, all or nothing.

Steps (the `staging_cut` DAG; one function or method each):
  1. plan (`plan_cut`): fix one instant T; every qa dataset must exist and T must lie inside its
     time-travel window (`max_time_travel_hours`; a read before it fails on BigQuery:
     https://cloud.google.com/bigquery/docs/time-travel). Per qa object: a table is cloned as of T,
     a view re-created on staging with its dataset references rewritten from qa to staging (sqlglot),
     objects that exist only in staging are dropped. The seed version (the `envsync-seed-version`
     label the reseed sets on qa's datasets) and the migration version (`migration_version`: the
     newest version qa holds per the migration ledger as of T, null when none) are recorded with T.
  2. pin: a pinned backup of every staging table, by the backup ladder's own pinned snapshots
     (`backup_staging_<ds>`, the ladder's ledger of 50 snapshot jobs per table per day checked first:
     https://cloud.google.com/bigquery/quotas#table_snapshots).
  3. stage (`CutSync.stage_table`, one task per dataset; a clone is a copy job, in the base table's
     region: https://cloud.google.com/bigquery/docs/table-clones-create): `CREATE TABLE <t>__envsync_stage CLONE
     qa_<ds>.<t> FOR SYSTEM_TIME AS OF T` in the staging dataset, verified against qa as of T as the
     dev sync verifies (rows per partition, schema, partitioning and clustering), plus the row
     checksum (`BIT_XOR(FARM_FINGERPRINT(TO_JSON_STRING(row)))`) of the stage against qa's as of T.
     A stage that fails is dropped. Staging's own tables are not touched by this step.
  4. publish (`CutSync.publish`, one task, only when every stage verified): each stage is copied
     over its staging table by a copy job (WRITE_TRUNCATE: the table and its access stay; a table
     whose partitioning differs is dropped and created by the copy), the stage dropped; then
     staging-only objects are dropped and views re-created. A copy writes a standard table, so a
     staging table is never a clone: its ladder snapshot and a restore from that stay within
     BigQuery's clone/snapshot chain limit (a clone of a clone of a snapshot is refused).
  5. On any failure before publish, the stages are dropped and staging is exactly as it was. A
     failure during publish restores every pinned table from its pin (the restore engine, verified
     against the pin's manifest), drops the tables staging did not have, and re-creates staging's
     views as they were: staging's fingerprints are those before the cut.

qa is read in qa's project (`environments.qa.project`), staging written in staging's; the pins are the
backup ladder's, in the backup environment's project.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envsync.backups.snapshots import snapshot_ref, table_checksum
from envsync.bigquery.actions import Action
from envsync.bigquery.datasets import ensure_env_dataset, env_labels
from envsync.bigquery.discovery import discover_dataset, list_existing
from envsync.bigquery.jobs import JobRunner, JobStats, run_recorded
from envsync.bigquery.timetravel import created_after, creation_times
from envsync.bigquery.verify import partition_filter
from envsync.bigquery.views import rewrite_view_sql, view_dependencies
from envsync.core.guard import TableRef
from envsync.observe.report import result_row
from envsync.sync.plan import STAGE_SUFFIX, DatasetPlan, order_views
from envsync.sync.run import DETERMINISTIC_ERRORS, DatasetSync, VerificationError, create_view, view_datasets

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.config import EnvsyncConfig

log = logging.getLogger(__name__)

CURRENT = "staging_cut/current.json"  # the last successful cut: T, seed version, migration version
MIGRATION_LEDGER = "migrations"  # envsync_audit.migrations, the ledger of promoted migrations
SEED_LABEL = "envsync-seed-version"


class CutError(RuntimeError):
    """The cut cannot run or did not complete; the message names the dataset or table."""


@dataclass(frozen=True)
class CutSource:
    """What staging becomes: qa as of T, with its seed and migration versions."""

    cut: dt.datetime
    seed_version: str | None
    migration_version: str | None


def migration_version(
    config: EnvsyncConfig, client: bigquery.Client, env: str, as_of: dt.datetime | None = None
) -> str | None:
    """The newest migration version `env` holds per the ledger (`<audit dataset>.migrations`; with
    `as_of`, per the rows recorded up to that instant): what a cut carries over from qa to staging.
    None when there is no ledger or `env` holds no version (a read only)."""
    from envsync.migrations.ledger import applied, read_ledger

    held = applied(read_ledger(config, client), env, as_of)
    if not held:
        log.info(
            "%s holds no schema migration (ledger %s.%s): the cut records a null migration version",
            env,
            config.audit.dataset,
            MIGRATION_LEDGER,
        )
        return None
    return str(max(held))


def carry_migrations(config: EnvsyncConfig, runner: JobRunner, source: CutSource) -> dict[str, Any]:
    """After a published cut: staging's ledger made qa's as of T (`migrations.record_carried`), so the
    promotion gates see staging holding what qa held; versions staging held that qa did not are
    recorded `reverted`. One batched insert; nothing when the ledger already agrees (a retried publish)."""
    from envsync.migrations.ledger import read_ledger, record_carried

    ledger = read_ledger(config, runner.bq.client)
    row = result_row(
        config.qualified(config.audit_project, config.audit.dataset, MIGRATION_LEDGER),
        f"staging as of qa at T = {source.cut.isoformat()}",
        "migrations",
        "staging's migrations become qa's (the cut copied qa's tables)",
    )
    synced, reverted = record_carried(config, runner, "qa", "staging", ledger, as_of=source.cut)
    row.update(status="ok", synced=synced, reverted=reverted, rows=len(synced) + len(reverted))
    log.info(
        "staging's migration ledger now matches qa's as of T = %s (version %s): synced %s, reverted %s",
        source.cut.isoformat(),
        source.migration_version,
        synced or "none",
        reverted or "none",
    )
    return row


def seed_version(config: EnvsyncConfig, client: bigquery.Client, qa_datasets: list[str]) -> str | None:
    """The seed version qa was re-seeded with (the label the reseed sets on every qa dataset).

    CutError when qa's datasets carry different versions (a partial reseed): the cut would mix them."""
    versions = {}
    project = config.project_of("qa")
    for name in qa_datasets:
        labels = client.get_dataset(f"{project}.{name}").labels or {}
        versions[name] = labels.get(SEED_LABEL)
    found = set(versions.values())
    if len(found) > 1:
        raise CutError(
            f"qa's datasets were seeded with different seed versions {versions}: re-seed qa "
            "(reseed_environments, environments [qa]) before cutting it over to staging"
        )
    return found.pop() if found else None


def plan_cut(
    config: EnvsyncConfig, client: bigquery.Client, datasets: list[str], cut: dt.datetime
) -> tuple[list[DatasetPlan], dict[str, Any]]:
    """One plan per prod dataset: qa_<ds> as of T into staging_<ds>; and what staging holds before the
    cut (its tables and its views' SQL, for a rollback). CutError when a qa dataset does not exist.

    Views move from qa's datasets (in qa's project) to staging's (in staging's project); a reference
    to a third project is left as it is and reported when the view is re-created."""
    qa_project, staging_project = config.project_of("qa"), config.project_of("staging")
    qa_of = {ds: config.env_dataset("qa", ds) for ds in datasets}
    staging_of = {ds: config.env_dataset("staging", ds) for ds in datasets}
    mapping = {config.env_dataset("qa", ds): config.env_dataset("staging", ds) for ds in config.prod.datasets}
    plans, before = [], {}
    for ds in datasets:
        qa, staging = qa_of[ds], staging_of[ds]
        if list_existing(client, qa_project, qa) is None:
            raise CutError(
                f"qa dataset {qa!r} does not exist in project {qa_project!r}: seed qa "
                "(reseed_environments) before cutting it over to staging"
            )
        info = discover_dataset(client, qa_project, qa)
        created = creation_times(client, qa_project, qa)
        existing = list_existing(client, staging_project, staging)
        if existing is not None:
            where = client.get_dataset(f"{staging_project}.{staging}").location
            if (where or "").lower() != (info.location or "").lower():
                # a clone (and a copy) must stay in its base table's region (table-clones-create, Limitations)
                raise CutError(
                    f"staging dataset {staging!r} is in {where}, qa dataset {qa!r} in {info.location}: a "
                    "clone cannot cross regions (https://cloud.google.com/bigquery/docs/table-clones-create)"
                )
        before[staging] = staging_state(client, staging_project, staging, existing)
        actions = []
        for table in info.tables:
            base: dict[str, Any] = dict(
                dataset=qa, table=table.table, target_dataset=staging, source_rows=table.num_rows
            )
            if table.kind == "VIEW":
                rewrite = rewrite_view_sql(table.view_query or "", mapping, qa_project, target_project=staging_project)
                actions.append(
                    Action(
                        **base,
                        action="view",
                        reason="re-created on staging, reading staging",
                        view_sql=rewrite.sql,
                        depends_on=sorted(view_dependencies(rewrite.sql)),
                        other_projects=third_projects(config, rewrite.other_projects),
                    )
                )
            elif table.kind not in ("TABLE", "CLONE"):
                actions.append(Action(**base, action="skip", reason=f"{table.kind.lower()} objects are not copied"))
            elif created_after(created.get(table.table), cut):
                actions.append(
                    Action(
                        **base,
                        action="skip",
                        reason=(
                            f"created at {created[table.table].isoformat()}, "  # type: ignore[union-attr]  # created_after: set
                            f"after T = {cut.isoformat()}: it did not "
                            "exist as of T"
                        ),
                    )
                )
            else:
                actions.append(Action(**base, action="full_clone", reason="QA's table as of T", est_jobs=5))
        names = {t.table for t in info.tables}
        for name in existing or []:
            if name not in names:
                why = "leftover stage of an earlier run" if name.endswith(STAGE_SUFFIX) else "exists only in staging"
                actions.append(
                    Action(dataset=qa, table=name, target_dataset=staging, action="drop", reason=why, est_jobs=1)
                )
        plans.append(
            DatasetPlan(
                dataset=qa,
                target_dataset=staging,
                location=info.location,
                description=info.description,
                labels=dict(info.labels),
                actions=actions,
                excluded=[],
                tables={t.table: t for t in info.tables},
                env="staging",
                kms_key_name=info.kms_key_name,
            )
        )
    return plans, before


def third_projects(config: EnvsyncConfig, references: list[str]) -> list[str]:
    """The `project.dataset` references a staging view may keep: those of a third project, never prod's
    (a view naming prod's project is refused when it is created)."""
    return [ref for ref in references if ref.partition(".")[0] != config.prod_project]


def staging_state(client: bigquery.Client, project: str, dataset: str, existing: list[str] | None) -> dict[str, Any]:
    """What a staging dataset holds before the cut: whether it exists, its base tables, its views' SQL."""
    if existing is None:
        return {"exists": False, "tables": [], "views": {}, "others": []}
    tables, views, others = [], {}, []
    for item in client.list_tables(f"{project}.{dataset}"):
        kind = (item.table_type or "TABLE").upper()
        if item.table_id.endswith(STAGE_SUFFIX):
            continue
        if kind == "VIEW":
            views[item.table_id] = client.get_table(item.reference).view_query
        elif kind == "TABLE":
            tables.append(item.table_id)
        else:
            others.append(item.table_id)
    return {"exists": True, "tables": sorted(tables), "views": views, "others": sorted(others)}


def stage_name(table: str) -> str:
    return table + STAGE_SUFFIX


def pin_staging(
    config: EnvsyncConfig, engine: Any, before: dict[str, Any], *, reason: str, expires: dt.datetime
) -> list[dict[str, Any]]:
    """Pinned backups of every staging table as it is before the cut (the ladder's pinned snapshots in
    `backup_staging_<ds>`); their manifests. CutError, before any snapshot, when a table has used its
    50 snapshot jobs today: without its pin the cut could not be rolled back."""
    from envsync.backups.ladder import plan_snapshot

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    refused = []
    for dataset, state in before.items():
        used = engine.catalog.jobs_today(dataset, now.date())
        for table in state["tables"]:
            decision = plan_snapshot(engine.ladder, used.get(table, 0), now, table=f"{dataset}.{table}", pinned=True)
            if not decision.take:
                refused.append(decision.reason)
    if refused:
        raise CutError("cannot pin staging before the cut (nothing was written): " + "; ".join(refused))
    pins = []
    for dataset, state in before.items():
        if not state["tables"]:
            continue
        engine.ensure_backup_dataset(dataset)  # in the backup project, in the staging dataset's location
        for table in state["tables"]:
            pins.append(
                engine.snapshot(
                    dataset,
                    table,
                    taken_at=now,
                    as_of=None,
                    pinned=True,
                    reason=reason,
                    expires=expires,
                    stats=JobStats(),
                )
            )
    return pins


class CutSync(DatasetSync):
    """Stages, verifies and publishes the cut; never writes outside the staging datasets (the guard).

    Reads qa's tables in qa's project; stages, publishes and drops in staging's project."""

    source_env = "qa"
    target_env = "staging"

    def __init__(self, config: EnvsyncConfig, bq: Any, runner: JobRunner, run: Any, store: Any = None):
        super().__init__(config, bq, runner, run)
        self.store = store
        self._infos: dict[str, dict[str, Any]] = {}

    def named(self, dataset: str, table: str) -> str:
        """How the results name a table of staging."""
        return self.config.qualified(self.target_project, dataset, table)

    def stage_table(self, action: Action) -> dict[str, Any]:
        """Clone qa's table as of T under its stage name in staging and verify it; a failure drops the stage."""
        plan_info = self._infos[action.target_dataset][action.table]
        source, _, stage = self._refs(action)
        name = self.target_name(action)
        result = {**self._row(action), "action": "stage", "checksum": None, "expected_checksum": None}

        def work(stats: JobStats) -> dict[str, Any]:
            self._build(action, plan_info, source, stage, stats)
            rows, problems, warnings = self._verify(action, plan_info, source, stage, stats)
            keep_all = partition_filter(plan_info)
            key = (action.dataset, action.table)
            want = table_checksum(
                self.runner, source, key + ("checksum_qa",), stats, as_of=self.run.cut, keep_all=keep_all
            )
            got = table_checksum(self.runner, stage, key + ("checksum",), stats, keep_all=keep_all)
            if (got["rows"], got["checksum"]) != (want["rows"], want["checksum"]):
                problems.append(
                    f"{name}: staged {got['rows']} rows with checksum {got['checksum']}, qa as of T "
                    f"has {want['rows']} rows with checksum {want['checksum']}"
                )
            if problems:
                raise VerificationError("; ".join(problems))
            return {
                "rows": rows,
                "warnings": warnings,
                "checksum": got["checksum"],
                "expected_checksum": want["checksum"],
            }

        return run_recorded(result, work, deterministic=DETERMINISTIC_ERRORS, on_failure=lambda: self._discard(stage))

    def stage(self, plan: DatasetPlan) -> list[dict[str, Any]]:
        """Stage every table of one dataset's plan (the staging dataset is created when missing)."""
        from concurrent.futures import ThreadPoolExecutor

        if list_existing(self.bq.client, self.target_project, plan.target_dataset) is None:
            self.ensure_dataset(plan)  # an existing staging dataset is left alone until publish
        self._infos = {plan.target_dataset: plan.tables}
        tables = plan.by_action("full_clone")
        log.info(
            "staging %d tables of %s as of T = %s into %s",
            len(tables),
            plan.dataset,
            self.run.cut.isoformat(),
            plan.target_dataset,
        )
        with ThreadPoolExecutor(max_workers=self.config.sync.max_concurrent_jobs) as pool:
            results = list(pool.map(self.stage_table, tables))
        for action in plan.by_action("skip"):
            results.append(
                {
                    **self._row(action),
                    "status": "skipped",
                }
            )
        return results

    def discard_stages(self, plans: list[DatasetPlan]) -> None:
        """Drop every stage of the cut (a failed cut leaves none behind)."""
        for plan in plans:
            for action in plan.by_action("full_clone"):
                self._discard(TableRef(self.target_project, plan.target_dataset, stage_name(action.table)))

    def publish_table(self, plan: DatasetPlan, action: Action, stats: JobStats) -> str:
        """Copy a verified stage over its staging table (a standard table: a new clone/snapshot chain)."""
        from google.api_core.exceptions import NotFound

        from envsync.backups.restore import _layout

        stage = TableRef(self.target_project, plan.target_dataset, stage_name(action.table))
        target = TableRef(self.target_project, plan.target_dataset, action.table)
        try:
            existing = self.bq.client.get_table(target.api)
        except NotFound:
            existing = None
        try:
            staged = self.bq.client.get_table(stage.api)
        except NotFound:
            run_label = self.runner.labels["envsync-run"]
            if existing is not None and (existing.labels or {}).get("envsync-run") == run_label:
                return "published by an earlier try of this run"  # a retry finds its work done
            raise
        done = "copied into the existing table (WRITE_TRUNCATE)"
        if existing is not None and (
            (existing.table_type or "TABLE").upper() != "TABLE" or _layout(existing) != _layout(staged)
        ):
            # a copy cannot change an existing table's partitioning: the table is made again
            self.bq.delete_table(target)
            existing = None
            done = "dropped (another kind or partitioning than QA's) and created by the copy"
        disposition = "WRITE_TRUNCATE" if existing is not None else "WRITE_EMPTY"
        if existing is None and done.startswith("copied"):
            done = "created by the copy"
        self.runner.run_job(
            (plan.target_dataset, action.table, "publish"),
            lambda job_id: self.bq.copy_table(
                stage,
                target,
                write_disposition=disposition,
                job_id=job_id,
                labels=self.runner.labels,
                job_timeout_ms=self.runner.job_timeout_ms,
            ),
            stats=stats,
        )
        info = plan.tables[action.table]
        table = self.bq.client.get_table(target.api)
        table.description = info.description
        table.labels = {**info.labels, "envsync-run": self.runner.labels["envsync-run"]}
        self.bq.update_table(table, ["description", "labels"])
        self.bq.delete_table(stage)
        return done

    def publish(self, plans: list[DatasetPlan], source: CutSource) -> list[dict[str, Any]]:
        """Publish every stage, drop staging-only objects, re-create the views, label the datasets.

        Raises CutError at the first failure (the caller rolls staging back from its pins)."""
        results: list[dict[str, Any]] = []
        for plan in plans:
            for action in plan.by_action("full_clone"):
                row = {**self._row(action), "action": "publish", "reason": "copy of the verified stage"}
                row = run_recorded(
                    row,
                    lambda stats, p=plan, a=action: {"published": self.publish_table(p, a, stats)},  # type: ignore[misc]  # defaults bind the loop
                    deterministic=DETERMINISTIC_ERRORS,
                )
                results.append(row)
                if row["status"] == "failed":
                    raise CutError(f"publishing {row['target']} failed: {row['error']}")
        for plan in plans:
            for action in plan.by_action("drop"):
                row = self.drop(action)
                results.append(row)
                if row["status"] == "failed":
                    raise CutError(f"dropping {row['target']} failed: {row['error']}")
        for action in order_views([a for p in plans for a in p.by_action("view")]):
            row = self.sync_view(action)
            results.append(row)
            if row["status"] == "failed":
                raise CutError(f"re-creating view {row['target']} failed: {row['error']}")
        for plan in plans:
            self.label_dataset(plan, source)
        return results

    def label_dataset(self, plan: DatasetPlan, source: CutSource) -> None:
        """Staging's dataset says what it holds: QA's seed version and the cut's T."""
        prod_dataset = plan.target_dataset.removeprefix(self.config.environments.staging.prefix)
        labels = {k: v for k, v in plan.labels.items() if not k.startswith("envsync-")}
        extra = {"envsync-cut": source.cut.strftime("%Y%m%dt%H%M%Sz")}
        if source.seed_version:
            extra[SEED_LABEL] = source.seed_version
        ensure_env_dataset(
            self.bq,
            f"{self.target_project}.{plan.target_dataset}",
            location=plan.location,
            description=plan.description,
            labels=env_labels(labels, "staging", prod_dataset, **extra),
            kms_key_name=plan.kms_key_name,
        )

    def rollback(
        self, plans: list[DatasetPlan], before: dict[str, Any], pins: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Bring staging back to its state before the cut: every pinned table restored from its pin
        (verified against the pin's manifest), tables staging did not have dropped, its views re-created."""
        from envsync.backups.restore import RestoreEngine, Source, _layout
        from envsync.backups.snapshots import BackupCatalog

        catalog = BackupCatalog(self.config, self.bq.client, self.store)
        engine = RestoreEngine(self.config, self.bq, self.runner, catalog)
        results: list[dict[str, Any]] = []
        for pin in pins:
            dataset, table = pin["dataset"], pin["table"]
            target = TableRef(self.target_project, dataset, table)
            snapshot = snapshot_ref(self.config, pin["snapshot"])
            try:  # a table whose partitioning the cut changed cannot take the copy back: make it again
                current = self.bq.client.get_table(target.api)
                if _layout(current) != _layout(self.bq.client.get_table(snapshot.api)):
                    self.bq.delete_table(target)
            except Exception:  # missing: the restore creates it
                pass
            taken = dt.datetime.fromisoformat(pin["taken_at"])
            source = Source(
                "snapshot", table, taken, pin["snapshot"], "rollback of a failed cut to the pin taken before it"
            )
            row = engine.restore_table(dataset, source, dataset, taken, target_project=self.target_project)
            results.append({**row, "action": "rollback"})
        for plan in plans:
            state = before[plan.target_dataset]
            pinned = {p["table"] for p in pins if p["dataset"] == plan.target_dataset}
            for table in self._list(plan.target_dataset):
                name, kind = table
                if name in pinned or name in state["views"] or name in state.get("others", []):
                    continue
                self._discard(TableRef(self.target_project, plan.target_dataset, name))
                results.append(
                    {
                        **result_row(
                            self.named(plan.target_dataset, name),
                            self.named(plan.target_dataset, name),
                            "drop",
                            "rollback: not in staging before the cut",
                        ),
                        "status": "dropped",
                    }
                )
            for name, sql in state["views"].items():
                row = result_row(
                    self.named(plan.target_dataset, name),
                    self.named(plan.target_dataset, name),
                    "rollback",
                    "staging's view as it was before the cut",
                )
                results.append(
                    run_recorded(
                        row,
                        lambda stats, n=name, s=sql, d=plan.target_dataset: self.restore_view(d, n, s, stats),  # type: ignore[misc]  # defaults bind the loop
                        deterministic=DETERMINISTIC_ERRORS,
                    )
                )
        self.remove_new_datasets(plans, before)
        return results

    def restore_view(self, dataset: str, name: str, sql: str, stats: JobStats) -> None:
        """Re-create a view of staging with the SQL it had before the cut."""
        target = TableRef(self.target_project, dataset, name)
        others = [ref for ref, own in view_datasets(sql, self.target_project) if not own]
        create_view(
            self.runner,
            target,
            sql,
            allowed_prefix=self.config.environments.staging.prefix,
            datasets=[self.config.env_dataset("staging", ds) for ds in self.config.prod.datasets],
            other_projects=third_projects(self.config, others),
            env="staging",
            key=(dataset, name, "rollback"),
            stats=stats,
        )

    def remove_new_datasets(self, plans: list[DatasetPlan], before: dict[str, Any]) -> None:
        """Delete the staging datasets the cut created (staging had none before it)."""
        for plan in plans:
            if not before[plan.target_dataset]["exists"]:
                self.bq.delete_dataset(f"{self.target_project}.{plan.target_dataset}")

    def _list(self, dataset: str) -> list[tuple[str, str]]:
        from google.api_core.exceptions import NotFound

        try:
            return [
                (t.table_id, (t.table_type or "TABLE").upper())
                for t in self.bq.client.list_tables(f"{self.target_project}.{dataset}")
            ]
        except NotFound:
            return []
