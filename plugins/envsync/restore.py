"""Restores: bring tables of a prod dataset back to their state at an instant T.

Where a table's state at T comes from (`choose_source`, pure; the first that applies, and the log
says which and why):
  1. time travel: T lies inside the restore window (`backups.restore_time_travel_hours`, default
     `prod.time_travel_hours`) and the table still exists in prod: clone it FOR SYSTEM_TIME AS OF T;
  2. the newest snapshot taken at or before T (in `backup_<ds>`);
  3. the newest GCS export taken at or before T (`gs://<bucket>/backups/<ds>/<table>/<date>/`).
Recovery drills allow only 2 and 3: they prove that backups restore.

Each table is built under `<table>__restore` in the target dataset, verified (row count and checksum
computed in BigQuery against the backup's manifest - or against prod as of T for time travel - and
the schema against the manifest), and only then swapped in under its name. A table that fails leaves
nothing behind. RPO is T minus the time of the state restored; RTO is the table's restore duration.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from envsync.backups import BackupCatalog, BackupEngine, Export, Snapshot, checksum_row, manifest_path
from envsync.discovery import base_tables
from envsync.guard import ProdWriteRefused, TableRef, quote, validate_identifier
from envsync.jobs import JobRunner, JobStats, run_recorded
from envsync.ladder import format_duration
from envsync.report import result_row
from envsync.sqltemplates import render
from envsync.verify import compare_schema, table_partition_filter

if TYPE_CHECKING:
    from envsync.config import EnvsyncConfig
    from envsync.guard import GuardedBigQuery

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
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


@dataclass(frozen=True)
class Source:
    """Where a table's state at T is read from."""

    kind: str               # time_travel | snapshot | export
    table: str
    taken_at: dt.datetime   # the instant of the state restored (T itself for time travel)
    ref: str                # <ds>.<table> (time travel), <backup_ds>.<snapshot>, or gs://.../ folder
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
) -> Source:
    """The source of `table`'s state at T (see the module doc); RestoreError when there is none."""
    allowed = tuple(allowed)
    name = f"{dataset}.{table}" if dataset else table
    oldest = now - dt.timedelta(hours=time_travel_hours) + TIME_TRAVEL_MARGIN
    why_not: list[str] = []
    if "time_travel" in allowed:
        if time_travel_hours <= 0:
            why_not.append("time travel is off for restores (backups.restore_time_travel_hours is 0)")
        elif point_in_time < oldest:
            why_not.append(f"T is outside the {time_travel_hours} h time-travel window (oldest usable instant "
                           f"{oldest.isoformat()})")
        elif not in_prod:
            why_not.append(f"{name} no longer exists in prod, so time travel cannot read it")
        else:
            return Source("time_travel", table, point_in_time, name,
                          f"T is inside the {time_travel_hours} h time-travel window: read {name} as of T")
    else:
        why_not.append("this run restores from backups only (no time travel)")
    if "snapshot" in allowed:
        usable = [s for s in snapshots if s.taken_at <= point_in_time]
        if usable:
            best = max(usable, key=lambda s: (s.taken_at, s.name))
            gap = format_duration(point_in_time.replace(microsecond=0) - best.taken_at)
            return Source("snapshot", table, best.taken_at, str(best),
                          "; ".join(why_not) + f"; newest snapshot at or before T: {best} "
                          f"(taken {best.taken_at.isoformat()}, {gap} before T)")
        oldest_kept = min((s.taken_at for s in snapshots), default=None)
        why_not.append("no snapshot at or before T" + (
            f" (oldest kept: {oldest_kept.isoformat()})" if oldest_kept else " (none kept)"))
    if "export" in allowed:
        usable_exports = [e for e in exports if e.taken_at <= point_in_time]
        if usable_exports:
            best_export = max(usable_exports, key=lambda e: e.taken_at)
            return Source("export", table, best_export.taken_at, best_export.uri,
                          "; ".join(why_not) + f"; newest export at or before T: {best_export.uri} "
                          f"(taken {best_export.taken_at.isoformat()})")
        why_not.append("no GCS export at or before T")
    raise RestoreError(f"cannot restore {name} to {point_in_time.isoformat()}: " + "; ".join(why_not))


class RestoreEngine:
    """Plans and executes the restore of tables of one prod dataset into a target dataset."""

    def __init__(self, config: EnvsyncConfig, bq: GuardedBigQuery, runner: JobRunner, catalog: BackupCatalog):
        self.config = config
        self.bq = bq
        self.runner = runner
        self.catalog = catalog
        self.project = config.project

    # planning ----------------------------------------------------------------------------------
    def prod_tables(self, dataset: str) -> dict[str, dt.datetime | None]:
        """Base tables of prod `dataset` now, with their creation time."""
        return base_tables(self.bq.client, self.project, dataset)

    def export_candidates(self, exports: list[Export], point_in_time: dt.datetime) -> list[ExportCandidate]:
        """Of a table's exports (newest first), the newest few days at or before T's day, with
        taken_at from their manifests."""
        found = []
        for export in [e for e in exports if e.day <= point_in_time.date()][:EXPORT_CANDIDATES]:
            manifest = self.catalog.export_manifest(export)
            if manifest is not None:
                found.append(ExportCandidate(dt.datetime.fromisoformat(manifest["taken_at"]), export.uri))
        return found

    def plan(self, dataset: str, tables: list[str] | None, point_in_time: dt.datetime, now: dt.datetime,
             allowed: Iterable[str]) -> tuple[dict[str, Source | str], list[str]]:
        """Per table: its Source, or the reason it cannot be restored; plus the tables skipped
        because they were created after T. Default tables: prod's tables and every backed-up one."""
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
                raise ValueError(f"param tables: {unknown} are neither tables of prod dataset {dataset!r} nor "
                                 f"backed up; known: {sorted(set(prod) | set(snapshots) | exported)}")
            selected = list(dict.fromkeys(tables))
        else:
            selected = sorted(set(prod) | set(snapshots) | exported)
        skipped = [t for t in selected if prod.get(t) is not None and prod[t] > point_in_time  # type: ignore[operator]
                   and not any(s.taken_at <= point_in_time for s in snapshots.get(t, []))]
        from envsync.timetravel import restore_window_hours  # the dataset's own window, narrowed by the config
        hours = restore_window_hours(self.config, self.bq.client, dataset)
        chosen: dict[str, Source | str] = {}
        for table in selected:
            if table in skipped:
                continue
            try:
                candidates = (self.export_candidates(exports.get(table, []), point_in_time)
                              if "export" in allowed else [])
                chosen[table] = choose_source(
                    table, point_in_time, now, time_travel_hours=hours, in_prod=table in prod,
                    snapshots=snapshots.get(table, []), exports=candidates, allowed=allowed, dataset=dataset)
            except RestoreError as error:
                chosen[table] = str(error)
        return chosen, skipped

    # execution ---------------------------------------------------------------------------------
    def expected(self, dataset: str, source: Source, point_in_time: dt.datetime,
                 key: tuple[str, ...], stats: JobStats) -> dict[str, Any]:
        """What the restored table must hold: {"rows", "checksum", "schema" (None for time travel)}."""
        if source.kind == "time_travel":
            ref = TableRef(self.project, dataset, source.table)
            sql = render("common/table_checksum_as_of", source=ref.sql,
                         keep_all=table_partition_filter(self.bq.client, ref))
            job = self.runner.run(sql, key=key + ("expected",), params={"as_of": point_in_time}, stats=stats)
            return {**checksum_row(next(iter(job.result()))), "schema": None}
        if source.kind == "snapshot":
            path = manifest_path(dataset, source.table, source.ref.split(".", 1)[1])
            manifest, where = self.catalog.store.read(path), self.catalog.store.uri(path)
        else:
            manifest, where = self.catalog.export_manifest_at(source.ref)
        if manifest is None:
            raise RestoreVerificationError(f"{dataset}.{source.table}: the backup {source.ref} has no manifest "
                                           f"({where}); it cannot be verified")
        return manifest

    def _build(self, dataset: str, source: Source, stage: TableRef, point_in_time: dt.datetime,
               manifest: dict[str, Any], key: tuple[str, ...], stats: JobStats) -> None:
        if source.kind == "time_travel":
            sql = render("restore/clone_as_of", target=stage.sql, source=TableRef(self.project, dataset, source.table).sql)
            self.runner.run(sql, key=key + ("clone",), params={"as_of": point_in_time}, stats=stats)
        elif source.kind == "snapshot":
            snapshot = TableRef(self.project, *source.ref.split(".", 1))
            self.runner.run(render("restore/clone_snapshot", target=stage.sql, source=snapshot.sql),
                            key=key + ("clone",), stats=stats)
        else:
            self._load_export(manifest, stage, key, stats)

    def _load_export(self, manifest: dict[str, Any], stage: TableRef, key: tuple[str, ...], stats: JobStats) -> None:
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=manifest["format"],
            write_disposition="WRITE_TRUNCATE",
            schema=[bigquery.SchemaField.from_api_repr(f) for f in manifest["schema"]],
            labels=self.runner.labels,
        )
        if manifest.get("partitioning"):
            part = manifest["partitioning"]
            config.time_partitioning = bigquery.TimePartitioning(type_=part["type"], field=part.get("field"))
        if manifest.get("clustering"):
            config.clustering_fields = manifest["clustering"]
        job_id = f"{self.runner.job_id_base(*key, 'load')}_{time.time_ns()}"
        job = self.bq.load_table_from_uri(manifest["files"], stage, config, job_id=job_id)
        job.result(timeout=self.runner.timeout)
        stats.jobs += 1

    def restore_table(self, dataset: str, source: Source, target_dataset: str,
                      point_in_time: dt.datetime) -> dict[str, Any]:
        """Restore one table into `target_dataset`, verified, under its own name; returns its result row."""
        target = TableRef(self.project, target_dataset, source.table)
        stage = TableRef(self.project, target_dataset, source.table + RESTORE_SUFFIX)
        key = ("restore", dataset, source.table, target_dataset)
        result = result_row(f"{dataset}.{source.table}", str(target), source.kind, source.reason,
                            source=source.ref, backup_taken_at=source.taken_at.isoformat(),
                            rpo_seconds=source.rpo_seconds(point_in_time), rto_seconds=None,
                            checksum=None, expected_checksum=None)

        def work(stats: JobStats) -> dict[str, Any]:
            start = time.monotonic()
            expected = self.expected(dataset, source, point_in_time, key, stats)
            self._build(dataset, source, stage, point_in_time, expected, key, stats)
            keep_all = table_partition_filter(self.bq.client, stage)  # the stage keeps the backup's options
            job = self.runner.run(render("common/table_checksum", target=stage.sql, keep_all=keep_all),
                                  key=key + ("checksum",), stats=stats)
            actual = checksum_row(next(iter(job.result())))
            name = f"{target_dataset}.{source.table}"
            problems = []
            if (actual["rows"], actual["checksum"]) != (int(expected["rows"]), str(expected["checksum"])):
                problems.append(f"{name}: restored {actual['rows']} rows with checksum {actual['checksum']}, the "
                                f"{'state at T' if source.kind == 'time_travel' else 'backup manifest'} says "
                                f"{expected['rows']} rows with checksum {expected['checksum']} "
                                "(the backup was changed or is incomplete)")
            if expected.get("schema") is not None:
                restored = [f.to_api_repr() for f in self.bq.client.get_table(stage.api).schema]
                problems += compare_schema(name, expected["schema"], restored)
            if problems:
                raise RestoreVerificationError("; ".join(problems))
            self.runner.run(render("sync/swap_stage", target=target.sql, stage=stage.sql,
                                   target_name=quote(target.table)), key=key + ("publish",), stats=stats)
            log.info("restored %s from %s %s: %d rows, checksum %s verified", target, source.kind, source.ref,
                     actual["rows"], actual["checksum"])
            return {"rows": actual["rows"], "checksum": actual["checksum"],
                    "expected_checksum": str(expected["checksum"]),
                    "rto_seconds": JobRunner.elapsed(start)}

        return run_recorded(result, work, deterministic=(RestoreError, ProdWriteRefused),
                            on_failure=lambda: self._discard(stage))

    def _discard(self, ref: TableRef) -> None:
        try:
            self.bq.delete_table(ref)
        except Exception as error:  # keep reporting the original failure
            log.error("could not drop %s after a failure: %s", ref, error)

    def pin_current(self, dataset: str, tables: Iterable[str], reason: str, expires: dt.datetime,
                    backups: BackupEngine) -> list[dict[str, Any]]:
        """Pinned snapshots of the current state of prod tables (taken before a restore overwrites them)."""
        now = dt.datetime.now(UTC).replace(microsecond=0)
        prod = self.prod_tables(dataset)
        backups.ensure_backup_dataset(dataset, self.bq.location)
        manifests = []
        for table in tables:
            if table not in prod:
                continue  # nothing to lose: the table does not exist in prod now
            stats = JobStats()
            manifests.append(backups.snapshot(dataset, table, taken_at=now, as_of=None, pinned=True, reason=reason,
                                              expires=expires, stats=stats))
        return manifests
