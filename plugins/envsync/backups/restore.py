"""Restores: bring tables of a prod dataset back to their state at an instant T.

Where a table's state at T comes from (`choose_source`, pure; the first that applies, and the log
says which and why):
  1. time travel: T lies inside the restore window (the prod dataset's own `max_time_travel_hours`,
     narrowed by `prod.time_travel_hours` and `backups.restore_time_travel_hours` when set), the table
     still exists in prod and was created at or before T: clone it FOR SYSTEM_TIME AS OF T. BigQuery
     cannot read a table as of an instant before its creation
     (https://cloud.google.com/bigquery/docs/time-travel), so a table created after T - new since T,
     or dropped and created again since - never uses time travel;
  2. the newest snapshot taken at or before T (in `backup_<ds>`);
  3. the newest GCS export taken at or before T (`gs://<bucket>/backups/<ds>/<table>/<date>/`).
Recovery drills allow only 2 and 3: they prove that backups restore. A table created after T with no
backup at or before T is skipped, with the reason, not failed (`CreatedAfterT`).

Each table is built under `<table>__restore` in the target dataset and verified (row count and
checksum computed in BigQuery against the backup's manifest - or against prod as of T for time
travel - and the schema against the manifest). Only then it is published by a copy job (operation
COPY) from the stage into the target, and the stage is dropped:
  * into an existing table with WRITE_TRUNCATE: data and schema are replaced (the schema as of T),
    the table itself stays - writers never see NotFound, and its labels, description, expiration,
    partition expiration, options, IAM policy, search indexes and tags stay
    (https://cloud.google.com/bigquery/docs/managing-tables#copy-table). Its partitioning cannot
    change this way: a target partitioned differently from the state at T is refused, nothing written;
  * otherwise with WRITE_EMPTY, creating the table with the state's schema, partitioning and
    clustering. A table created in a prod dataset gets back the expiration its backup recorded
    (none when it had none or it lies in the past), not the dataset's default table expiration.
A copy writes a standard table, so the restored table starts a new clone/snapshot chain: the next
snapshot of it is depth 1, not depth 3, which BigQuery would refuse
(https://cloud.google.com/bigquery/quotas#table_snapshots).
A table that fails leaves nothing behind. RPO is T minus the time of the state restored; RTO is the
table's restore duration.

Projects: time travel reads the source dataset in its own project (prod's, or staging's), snapshots are
read from the backup project, and the stage and the restored table are in the target's project (a
drill's, staging's, or prod's for a confirmed restore). Results name tables as `config.qualified` does.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from envsync.backups.snapshots import (
    BackupCatalog,
    BackupEngine,
    Export,
    Snapshot,
    manifest_path,
    snapshot_ref,
    source_project,
    table_checksum,
)
from envsync.bigquery.discovery import base_tables
from envsync.bigquery.jobs import JobRunner, JobStats, run_recorded
from envsync.bigquery.timetravel import dataset_hours, effective_window
from envsync.bigquery.verify import compare_schema, table_partition_filter
from envsync.core.guard import ProdWriteRefused, TableRef
from envsync.core.identifiers import validate_identifier
from envsync.core.rungs import format_duration
from envsync.core.sqltemplates import render
from envsync.observe.report import result_row

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.config import EnvsyncConfig
    from envsync.core.guard import GuardedBigQuery

log = logging.getLogger(__name__)

UTC = dt.UTC
SOURCES = ("time_travel", "snapshot", "export")
BACKUP_SOURCES = ("snapshot", "export")
RESTORE_SUFFIX = "__restore"
# T is checked when the run is planned and read minutes later: keep it this far inside the window
TIME_TRAVEL_MARGIN = dt.timedelta(minutes=30)
EXPORT_CANDIDATES = 3


class RestoreError(RuntimeError):
    """A table cannot be restored; the message names it. Deterministic: a retry would fail the same way."""


class RestoreVerificationError(RestoreError):
    """A restored table does not match its backup's manifest (or prod as of T)."""


class CreatedAfterT(RestoreError):
    """The table was created after T and no backup at or before T exists: it is skipped, not failed."""


@dataclass(frozen=True)
class Source:
    """Where a table's state at T is read from."""

    kind: str  # time_travel | snapshot | export
    table: str
    taken_at: dt.datetime  # the instant of the state restored (T itself for time travel)
    # [<project>.]<ds>.<table> (time travel), [<project>.]<backup_ds>.<snapshot>, or gs://.../ folder
    ref: str
    reason: str

    def rpo_seconds(self, point_in_time: dt.datetime) -> float:
        return (point_in_time - self.taken_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "taken_at": self.taken_at.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Source:
        return cls(**{**data, "taken_at": dt.datetime.fromisoformat(data["taken_at"])})


@dataclass(frozen=True)
class ExportCandidate:
    taken_at: dt.datetime
    uri: str


def parse_point_in_time(text: Any, now: dt.datetime) -> dt.datetime:
    """An ISO-8601 instant with a time zone; '' or None means now."""
    if text in (None, ""):
        return now
    if isinstance(text, dt.datetime):
        value = text
    else:
        try:
            value = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"param point_in_time {text!r} is not an ISO-8601 instant such as 2026-11-20T08:00:00+00:00"
            ) from None
    if value.tzinfo is None:
        raise ValueError(f"param point_in_time {text!r} has no time zone; write it like 2026-11-20T08:00:00+00:00")
    value = value.astimezone(UTC)
    if value > now:
        raise ValueError(f"param point_in_time {value.isoformat()} is in the future (now {now.isoformat()})")
    return value


def choose_source(
    table: str,
    point_in_time: dt.datetime,
    now: dt.datetime,
    *,
    time_travel_hours: int,
    in_prod: bool,
    snapshots: Sequence[Snapshot],
    exports: Sequence[ExportCandidate],
    allowed: Iterable[str] = SOURCES,
    dataset: str = "",
    created: dt.datetime | None = None,
) -> Source:
    """The source of `table`'s state at T (see the module doc); RestoreError when there is none,
    CreatedAfterT when the prod table now was created after T and no backup at or before T exists.

    `created` is the creation time of the prod table that exists now (None: unknown or not in prod).
    `dataset` names the dataset in messages and in a time-travel source (with its project when split).
    """
    allowed = tuple(allowed)
    name = f"{dataset}.{table}" if dataset else table
    oldest = now - dt.timedelta(hours=time_travel_hours) + TIME_TRAVEL_MARGIN
    created_after_t = in_prod and created is not None and created > point_in_time
    why_not: list[str] = []
    if created_after_t and created is not None:
        why_not.append(
            f"{name} was created at {created.isoformat()}, after T (new since T, or dropped and "
            "created again since), so time travel cannot read it as of T"
        )
    if "time_travel" in allowed:
        if time_travel_hours <= 0:
            why_not.append("time travel is off for restores (backups.restore_time_travel_hours is 0)")
        elif point_in_time < oldest:
            why_not.append(
                f"T is outside the {time_travel_hours} h time-travel window (oldest usable instant "
                f"{oldest.isoformat()})"
            )
        elif not in_prod:
            why_not.append(f"{name} no longer exists in prod, so time travel cannot read it")
        elif created_after_t:
            pass  # said above
        else:
            return Source(
                "time_travel",
                table,
                point_in_time,
                name,
                f"T is inside the {time_travel_hours} h time-travel window: read {name} as of T",
            )
    else:
        why_not.append("this run restores from backups only (no time travel)")
    if "snapshot" in allowed:
        usable = [s for s in snapshots if s.taken_at <= point_in_time]
        if usable:
            best = max(usable, key=lambda s: (s.taken_at, s.name))
            gap = format_duration(point_in_time.replace(microsecond=0) - best.taken_at)
            return Source(
                "snapshot",
                table,
                best.taken_at,
                str(best),
                "; ".join(why_not) + f"; newest snapshot at or before T: {best} "
                f"(taken {best.taken_at.isoformat()}, {gap} before T)",
            )
        oldest_kept = min((s.taken_at for s in snapshots), default=None)
        why_not.append(
            "no snapshot at or before T"
            + (f" (oldest kept: {oldest_kept.isoformat()})" if oldest_kept else " (none kept)")
        )
    if "export" in allowed:
        usable_exports = [e for e in exports if e.taken_at <= point_in_time]
        if usable_exports:
            best_export = max(usable_exports, key=lambda e: e.taken_at)
            return Source(
                "export",
                table,
                best_export.taken_at,
                best_export.uri,
                "; ".join(why_not) + f"; newest export at or before T: {best_export.uri} "
                f"(taken {best_export.taken_at.isoformat()})",
            )
        why_not.append("no GCS export at or before T")
    error = CreatedAfterT if created_after_t else RestoreError
    raise error(f"cannot restore {name} to {point_in_time.isoformat()}: " + "; ".join(why_not))


def _layout(table: bigquery.Table) -> str:
    if table.range_partitioning is not None:
        rng = table.range_partitioning
        return f"integer range on {rng.field} ({rng.range_.start}, {rng.range_.end}, {rng.range_.interval})"
    if table.time_partitioning is not None:
        return f"{table.time_partitioning.type_} on {table.time_partitioning.field or '_PARTITIONTIME'}"
    return "unpartitioned"


def publish_disposition(target: str, existing: bigquery.Table | None, stage: bigquery.Table) -> str:
    """The write disposition of the copy job that publishes a verified stage into `target`.

    WRITE_TRUNCATE into an existing table (keeps the table and its own settings and access; replaces its
    data and schema), WRITE_EMPTY when there is none. RestoreError when `target` is not a standard table
    or is partitioned differently from the restored state: BigQuery refuses a copy into an existing
    table with another partitioning ("Incompatible table partitioning specification").
    """
    if existing is None:
        return "WRITE_EMPTY"
    kind = (existing.table_type or "TABLE").upper()
    if kind != "TABLE":
        raise RestoreError(
            f"cannot restore into {target}: it is a {kind}, and a restore only overwrites "
            "tables; drop or rename it, or restore into another dataset (nothing was written)"
        )
    if _layout(existing) != _layout(stage):
        raise RestoreError(
            f"cannot restore into {target}: its partitioning is {_layout(existing)}, the state "
            f"restored has {_layout(stage)}, and a copy into an existing table cannot change its "
            "partitioning; drop or rename it, or restore into another dataset (nothing was written)"
        )
    return "WRITE_TRUNCATE"


def export_load(manifest: dict[str, Any], labels: dict[str, str]) -> tuple[str, bigquery.LoadJobConfig]:
    """The wildcard URI and load configuration of an export's files (`<folder>/part-*.<ext>`: one URI,
    where a load job takes at most 10,000, https://cloud.google.com/bigquery/quotas#load_jobs). Avro
    is read with its logical types (useAvroLogicalTypes), so DATE, TIMESTAMP and NUMERIC come back as
    such (https://cloud.google.com/bigquery/docs/loading-data-cloud-storage-avro#logical_types)."""
    from google.cloud import bigquery

    files = manifest["files"]
    folder, ext = files[0].rsplit("/", 1)[0], files[0].rsplit(".", 1)[-1]
    config = bigquery.LoadJobConfig(
        source_format=manifest["format"],
        write_disposition="WRITE_TRUNCATE",
        schema=[bigquery.SchemaField.from_api_repr(f) for f in manifest["schema"]],
        labels=dict(labels),
    )
    if str(manifest["format"]).upper() == "AVRO":
        config.use_avro_logical_types = True
    return f"{folder}/part-*.{ext}", config


class RestoreEngine:
    """Plans and executes the restore of tables of one prod dataset into a target dataset."""

    def __init__(self, config: EnvsyncConfig, bq: GuardedBigQuery, runner: JobRunner, catalog: BackupCatalog):
        self.config = config
        self.bq = bq
        self.runner = runner
        self.catalog = catalog

    def source_project(self, dataset: str) -> str:
        """The project of source dataset `dataset` (prod's `<ds>`, or staging's `staging_<ds>`)."""
        return source_project(self.config, dataset)

    def qualified(self, dataset: str, table: str | None = None) -> str:
        """Source dataset `dataset` (or its `table`) as manifests and results name it."""
        return self.config.qualified(self.source_project(dataset), dataset, table)

    # planning ----------------------------------------------------------------------------------
    def prod_tables(self, dataset: str) -> dict[str, dt.datetime | None]:
        """Base tables of source dataset `dataset` now (in its project), with their creation time."""
        return base_tables(self.bq.client, self.source_project(dataset), dataset)

    def window_hours(self, dataset: str) -> int:
        """How recent T must be for a restore of `dataset` to read it by time travel: the dataset's own
        window (read in its project), narrowed by prod.time_travel_hours and by
        backups.restore_time_travel_hours (0: never)."""
        project = self.source_project(dataset)
        window = effective_window(
            dataset, dataset_hours(self.bq.client, project, dataset), self.config.prod.time_travel_hours
        )
        log.info("time travel on %s: %d h (%s)", self.qualified(dataset), window.hours, window.source)
        return min(window.hours, self.config.restore_time_travel_hours())

    def export_candidates(self, exports: list[Export], point_in_time: dt.datetime) -> list[ExportCandidate]:
        """Of a table's exports (newest first), the newest few days at or before T's day, with
        taken_at from their manifests."""
        found = []
        for export in [e for e in exports if e.day <= point_in_time.date()][:EXPORT_CANDIDATES]:
            manifest = self.catalog.export_manifest(export)
            if manifest is not None:
                found.append(ExportCandidate(dt.datetime.fromisoformat(manifest["taken_at"]), export.uri))
        return found

    def plan(
        self,
        dataset: str,
        tables: list[str] | None,
        point_in_time: dt.datetime,
        now: dt.datetime,
        allowed: Iterable[str],
    ) -> tuple[dict[str, Source | str], dict[str, str]]:
        """Per table: its Source, or the reason it cannot be restored; plus the tables skipped, with the
        reason, because the prod table was created after T and no backup at or before T exists.
        Default tables: prod's tables and every backed-up one."""
        allowed = tuple(allowed)
        prod = self.prod_tables(dataset)
        snapshots = self.catalog.snapshots(dataset)
        exports = self.catalog.exports(dataset)
        exported = set(exports)
        if tables:
            for table in tables:
                validate_identifier("table", table)
            unknown = [t for t in tables if t not in prod and t not in snapshots and t not in exported]
            if unknown:
                raise ValueError(
                    f"param tables: {unknown} are neither tables of prod dataset {dataset!r} nor "
                    f"backed up; known: {sorted(set(prod) | set(snapshots) | exported)}"
                )
            selected = list(dict.fromkeys(tables))
        else:
            selected = sorted(set(prod) | set(snapshots) | exported)
        hours = self.window_hours(dataset)
        chosen: dict[str, Source | str] = {}
        skipped: dict[str, str] = {}
        for table in selected:
            try:
                candidates = (
                    self.export_candidates(exports.get(table, []), point_in_time) if "export" in allowed else []
                )
                chosen[table] = choose_source(
                    table,
                    point_in_time,
                    now,
                    time_travel_hours=hours,
                    in_prod=table in prod,
                    snapshots=snapshots.get(table, []),
                    exports=candidates,
                    allowed=allowed,
                    dataset=self.qualified(dataset),
                    created=prod.get(table),
                )
            except CreatedAfterT as error:
                skipped[table] = f"created after T: {error}"
            except RestoreError as error:
                chosen[table] = str(error)
        return chosen, skipped

    # execution ---------------------------------------------------------------------------------
    def expected(
        self, dataset: str, source: Source, point_in_time: dt.datetime, key: tuple[str, ...], stats: JobStats
    ) -> dict[str, Any]:
        """What the restored table must hold: {"rows", "checksum", "schema" (None for time travel)}."""
        if source.kind == "time_travel":
            ref = TableRef(self.source_project(dataset), dataset, source.table)
            counted = table_checksum(
                self.runner,
                ref,
                key + ("expected",),
                stats,
                as_of=point_in_time,
                keep_all=table_partition_filter(self.bq.client, ref),
            )
            return {**counted, "schema": None}
        if source.kind == "snapshot":
            path = manifest_path(dataset, source.table, snapshot_ref(self.config, source.ref).table)
            manifest, where = self.catalog.store.read(path), self.catalog.store.uri(path)
        else:
            manifest, where = self.catalog.export_manifest_at(source.ref)
        if manifest is None:
            raise RestoreVerificationError(
                f"{self.qualified(dataset, source.table)}: the backup {source.ref} has no manifest ({where}); "
                "it cannot be verified"
            )
        return manifest

    def _build(
        self,
        dataset: str,
        source: Source,
        stage: TableRef,
        point_in_time: dt.datetime,
        manifest: dict[str, Any],
        key: tuple[str, ...],
        stats: JobStats,
    ) -> None:
        if source.kind == "time_travel":
            sql = render(
                "restore/clone_as_of",
                target=stage.sql,
                source=TableRef(self.source_project(dataset), dataset, source.table).sql,
            )
            self.runner.run(sql, key=key + ("clone",), params={"as_of": point_in_time}, stats=stats)
        elif source.kind == "snapshot":
            snapshot = snapshot_ref(self.config, source.ref)
            self.runner.run(
                render("restore/clone_snapshot", target=stage.sql, source=snapshot.sql),
                key=key + ("clone",),
                stats=stats,
            )
        else:
            self._load_export(manifest, stage, key, stats)

    def _load_export(self, manifest: dict[str, Any], stage: TableRef, key: tuple[str, ...], stats: JobStats) -> None:
        """Load an export by one wildcard URI (`<folder>/part-*.<ext>`; a load job takes at most 10,000
        URIs: https://cloud.google.com/bigquery/quotas#load_jobs), AVRO with logical types.

        A table partitioned on a column may have more partitions than one load job may write (4,000:
        https://cloud.google.com/bigquery/quotas#partitioned_tables): it is loaded into an
        unpartitioned scratch table, then copied into the stage by CREATE TABLE plus one INSERT per
        chunk of at most 4,000 partitions; the scratch table is dropped either way.
        """
        from google.cloud import bigquery

        from envsync.bigquery.ddl import cluster_clause, column_list, columns_sql, partition_clause
        from envsync.bigquery.discovery import TableInfo
        from envsync.bigquery.partitions import (
            chunk_params,
            chunk_predicate,
            describe,
            id_chunks,
            partition_id_sql,
            spec_of,
        )

        def load(target: TableRef, part: tuple[str, ...]) -> None:
            self.runner.run_job(
                part,
                lambda job_id: self.bq.load_table_from_uri(
                    [uri], target, config, job_id=job_id, job_timeout_ms=self.runner.job_timeout_ms
                ),
                stats=stats,
            )

        uri, config = export_load(manifest, self.runner.labels)
        part = manifest.get("partitioning") or None
        info = TableInfo(
            stage.dataset,
            stage.table,
            "TABLE",
            schema=manifest["schema"],
            partitioning=part,
            range_partitioning=manifest.get("range_partitioning") or None,
            clustering=manifest.get("clustering") or None,
        )
        spec = spec_of(info)
        direct = spec is None or spec.ingestion_time
        if direct:
            if part:
                config.time_partitioning = bigquery.TimePartitioning(type_=part["type"], field=part.get("field"))
            if manifest.get("clustering"):
                config.clustering_fields = manifest["clustering"]
            load(stage, key + ("load",))
            return
        assert spec is not None  # not direct
        scratch = TableRef(stage.project, stage.dataset, stage.table + "__load")
        try:
            load(scratch, key + ("load",))
            ids = [
                row["partition_id"]
                for row in self.runner.run(
                    render("restore/export_partition_ids", source=scratch.sql, partition_id=partition_id_sql(spec)),
                    key=key + ("partitions",),
                    stats=stats,
                ).result()
            ]
            chunks = id_chunks(ids, spec)
            ddl = dict(
                target=stage.sql,
                columns=columns_sql(info),
                partition_by=partition_clause(info),
                cluster_by=cluster_clause(info),
            )
            log.info(
                "%s: copying the export's %d partitions from %s in %d job(s): %s",
                stage,
                len(ids),
                scratch,
                len(chunks),
                describe(chunks),
            )
            self.runner.run(render("sync/create_table", **ddl), key=key + ("create",), stats=stats)
            for index, chunk in enumerate(chunks):
                self.runner.run(
                    render(
                        "restore/insert_chunk",
                        target=stage.sql,
                        source=scratch.sql,
                        columns=column_list(info),
                        chunk=chunk_predicate(spec.column, chunk),
                    ),
                    key=key + ("insert", str(index)),
                    params=chunk_params(chunk),
                    stats=stats,
                )
        finally:
            self._discard(scratch)

    def restore_table(
        self,
        dataset: str,
        source: Source,
        target_dataset: str,
        point_in_time: dt.datetime,
        *,
        target_project: str | None = None,
    ) -> dict[str, Any]:
        """Restore one table into `target_project.target_dataset` (default project: the source dataset's,
        a restore into itself), verified, under its own name; returns its result row."""
        project = target_project or self.source_project(dataset)
        target = TableRef(project, target_dataset, source.table)
        stage = TableRef(project, target_dataset, source.table + RESTORE_SUFFIX)
        name = self.config.qualified(project, target_dataset, source.table)
        key = ("restore", dataset, source.table, target_dataset)
        result = result_row(
            self.qualified(dataset, source.table),
            name,
            source.kind,
            source.reason,
            source=source.ref,
            backup_taken_at=source.taken_at.isoformat(),
            rpo_seconds=source.rpo_seconds(point_in_time),
            rto_seconds=None,
            checksum=None,
            expected_checksum=None,
        )

        def work(stats: JobStats) -> dict[str, Any]:
            start = time.monotonic()
            expected = self.expected(dataset, source, point_in_time, key, stats)
            self._build(dataset, source, stage, point_in_time, expected, key, stats)
            keep_all = table_partition_filter(self.bq.client, stage)  # the stage keeps the backup's options
            actual = table_checksum(self.runner, stage, key + ("checksum",), stats, keep_all=keep_all)
            problems = []
            if (actual["rows"], actual["checksum"]) != (int(expected["rows"]), str(expected["checksum"])):
                problems.append(
                    f"{name}: restored {actual['rows']} rows with checksum {actual['checksum']}, the "
                    f"{'state at T' if source.kind == 'time_travel' else 'backup manifest'} says "
                    f"{expected['rows']} rows with checksum {expected['checksum']} "
                    "(the backup was changed or is incomplete)"
                )
            if expected.get("schema") is not None:
                restored = [f.to_api_repr() for f in self.bq.client.get_table(stage.api).schema]
                problems += compare_schema(name, expected["schema"], restored)
            if problems:
                raise RestoreVerificationError("; ".join(problems))
            published = self._publish(stage, target, expected, key, stats)
            log.info(
                "restored %s from %s %s: %d rows, checksum %s verified; %s",
                name,
                source.kind,
                source.ref,
                actual["rows"],
                actual["checksum"],
                published,
            )
            return {
                "rows": actual["rows"],
                "checksum": actual["checksum"],
                "expected_checksum": str(expected["checksum"]),
                "published": published,
                "rto_seconds": JobRunner.elapsed(start),
            }

        return run_recorded(
            result, work, deterministic=(RestoreError, ProdWriteRefused), on_failure=lambda: self._discard(stage)
        )

    def _publish(
        self, stage: TableRef, target: TableRef, expected: dict[str, Any], key: tuple[str, ...], stats: JobStats
    ) -> str:
        """Copy the verified stage into `target` (see the module doc), drop the stage; says what was done."""
        from google.api_core.exceptions import NotFound

        try:
            existing = self.bq.client.get_table(target.api)
        except NotFound:
            existing = None
        shown = self.config.qualified(target.project, target.dataset, target.table)
        disposition = publish_disposition(shown, existing, self.bq.client.get_table(stage.api))
        self.runner.run_job(
            key + ("publish",),
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
        if disposition == "WRITE_TRUNCATE":
            done = (
                f"copied into the existing table {shown} (WRITE_TRUNCATE: data and schema replaced; its "
                "settings, labels, expirations and access kept)"
            )
        else:
            done = f"copied into the new table {shown}"
            if target.project == self.config.prod_project and target.dataset in self.config.prod.datasets:
                done += "; " + self._restore_expiration(target, expected)
        self.bq.delete_table(stage)
        return done

    def _restore_expiration(self, target: TableRef, expected: dict[str, Any]) -> str:
        """A table a restore created in prod: the expiration its backup recorded, not the dataset default."""
        recorded = expected.get("table_expires")
        expires = dt.datetime.fromisoformat(recorded) if recorded else None
        if expires is not None and expires <= dt.datetime.now(UTC):
            expires = None  # it expired (likely why it is restored): keep it
        table = self.bq.client.get_table(target.api)
        if table.expires == expires:
            return f"expiration {expires.isoformat() if expires else 'none'} as recorded"
        table.expires = expires
        self.bq.update_table(table, ["expires"])
        return (
            f"expiration set to {expires.isoformat() if expires else 'none'} (recorded by the backup) "
            "instead of the dataset's default table expiration"
        )

    def _discard(self, ref: TableRef) -> None:
        try:
            self.bq.delete_table(ref)
        except Exception as error:  # keep reporting the original failure
            log.error("could not drop %s after a failure: %s", ref, error)

    def pin_current(
        self, dataset: str, tables: Iterable[str], reason: str, expires: dt.datetime, backups: BackupEngine
    ) -> list[dict[str, Any]]:
        """Pinned snapshots of the current state of source tables (taken before a restore overwrites them)."""
        now = dt.datetime.now(UTC).replace(microsecond=0)
        prod = self.prod_tables(dataset)
        backups.ensure_backup_dataset(dataset)
        manifests = []
        for table in tables:
            if table not in prod:
                continue  # nothing to lose: the table does not exist in prod now
            stats = JobStats()
            manifests.append(
                backups.snapshot(
                    dataset, table, taken_at=now, as_of=None, pinned=True, reason=reason, expires=expires, stats=stats
                )
            )
        return manifests
