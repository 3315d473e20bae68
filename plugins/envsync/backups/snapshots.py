"""Backups of prod tables: snapshots into backup_<ds>, their manifests, the daily export, thinning.

A backup is a BigQuery table snapshot `backup_<ds>.<table>__<YYYYMMDDTHHMM[SS]Z>` (see
`envsync.backups.ladder.snapshot_name`) of prod table `<ds>.<table>` as it was at the instant in its name,
with an expiration and labels (`envsync-pinned` marks manual backups that thinning never removes).
Prod's tables are read in prod's project (staging's in staging's); the snapshots are written into the
backup environment's project, by jobs run in its jobs project. BigQuery snapshots a table into another
project only within one region (https://cloud.google.com/bigquery/docs/table-snapshots-create), so a
backup dataset must be in its source dataset's location: checked before any job. Manifests name
objects as `config.qualified` does (with their project once the layout is split).
The state bucket holds what BigQuery does not:

    backup_manifests/<ds>/<table>/<snapshot>.json   one per snapshot: T, rows and checksum (computed in
                                                    BigQuery), schema, partitioning, pin and reason
    backup_jobs/<ds>/<YYYY-MM-DD>.json              snapshot jobs started per table that UTC day
                                                    (BigQuery allows 50 per table per day)
and, when `backups.export.enabled`, the export bucket holds the daily rung for retention beyond time
travel: `gs://<bucket>/backups/<ds>/<table>/<YYYY-MM-DD>/part-*.<format>` plus `_manifest.json`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envsync.backups.ladder import Backup, parse_snapshot_name, snapshot_expiry, snapshot_name, thin
from envsync.bigquery.datasets import default_kms_key, ensure_env_dataset, env_labels
from envsync.bigquery.jobs import JobStats, label_value
from envsync.bigquery.verify import partition_filter
from envsync.core.guard import TableRef
from envsync.core.sqltemplates import render

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import EnvsyncConfig
    from envsync.core.guard import GuardedBigQuery
    from envsync.core.manifest import ManifestStore

log = logging.getLogger(__name__)

UTC = dt.UTC
PINNED_LABEL = "envsync-pinned"
EXPORT_MANIFEST = "_manifest.json"
EXPORT_EXTENSIONS = {"PARQUET": "parquet", "AVRO": "avro"}


class BackupError(RuntimeError):
    """A backup could not be taken or recorded; the message names the table."""


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of prod table `dataset.table`, stored as `backup_dataset.name`.

    `project`: set (to the backup project) when names carry their project, as `config.qualified`
    names objects of a split layout; then the snapshot is named `project.backup_dataset.name`.
    """

    dataset: str
    table: str
    backup_dataset: str
    name: str
    taken_at: dt.datetime
    pinned: bool = False
    project: str | None = None

    def backup(self) -> Backup:
        return Backup(self.taken_at, self.name, self.pinned)

    def ref(self, project: str) -> TableRef:
        return TableRef(project, self.backup_dataset, self.name)

    def __str__(self) -> str:
        name = f"{self.backup_dataset}.{self.name}"
        return f"{self.project}.{name}" if self.project else name


def source_env(config: EnvsyncConfig, dataset: str) -> str:
    """The environment a backup of `dataset` reads: prod for prod's `<ds>`, staging for `staging_<ds>`."""
    if dataset in config.prod.datasets:
        return "prod"
    prefix = config.environments.staging.prefix
    if prefix and dataset.startswith(prefix) and dataset[len(prefix) :] in config.prod.datasets:
        return "staging"
    raise BackupError(
        f"{dataset!r} is neither a prod dataset {list(config.prod.datasets)} nor a staging dataset "
        f"({prefix}<ds>): only prod and staging are backed up"
    )


def source_project(config: EnvsyncConfig, dataset: str) -> str:
    """The project of source dataset `dataset`: prod's for `<ds>`, staging's for `staging_<ds>`."""
    return config.source_project(source_env(config, dataset))


def snapshot_ref(config: EnvsyncConfig, name: str) -> TableRef:
    """The table of a snapshot named as manifests and restore sources record it: `backup_<ds>.<snapshot>`
    (in the backup environment's project) or `<project>.backup_<ds>.<snapshot>`."""
    parts = name.split(".")
    if len(parts) == 2:
        return TableRef(config.project_of("backup"), *parts)
    if len(parts) == 3:
        return TableRef(*parts)
    raise BackupError(
        f"{name!r} names no snapshot: expected backup_<ds>.<snapshot> or <project>.backup_<ds>.<snapshot>"
    )


@dataclass(frozen=True)
class Export:
    """One exported backup of `dataset.table`: files under `folder` of the export bucket."""

    dataset: str
    table: str
    day: dt.date
    folder: str  # backups/<ds>/<table>/<date>/
    bucket: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.folder}"


def manifest_path(dataset: str, table: str, name: str) -> str:
    return f"backup_manifests/{dataset}/{table}/{name}.json"


def jobs_path(dataset: str, day: dt.date) -> str:
    return f"backup_jobs/{dataset}/{day.isoformat()}.json"


def export_folder(dataset: str, table: str, day: dt.date) -> str:
    return f"backups/{dataset}/{table}/{day.isoformat()}/"


def checksum_row(row: Any) -> dict[str, Any]:
    """{"rows", "checksum"} from a table_checksum query row (the checksum as text: JSON-safe INT64)."""
    return {"rows": int(row["row_count"]), "checksum": str(row["checksum"])}


def table_checksum(
    runner: JobRunner,
    ref: TableRef,
    key: tuple[str, ...],
    stats: JobStats,
    *,
    as_of: dt.datetime | None = None,
    keep_all: str = "true",
) -> dict[str, Any]:
    """{"rows", "checksum"} of table `ref` (as of T when `as_of` is given), computed in BigQuery by one
    query job under the job key `key`: what a backup's manifest records and what a restore verifies.

    `keep_all` is the table's `verify.partition_filter`: a predicate that keeps every row and satisfies
    `require_partition_filter`.
    """
    if as_of is None:
        sql, params = render("common/table_checksum", target=ref.sql, keep_all=keep_all), None
    else:
        sql = render("common/table_checksum_as_of", source=ref.sql, keep_all=keep_all)
        params = {"as_of": as_of}
    job = runner.run(sql, key=key, params=params, stats=stats)
    return checksum_row(next(iter(job.result())))


def export_job_config(
    fmt: str, labels: dict[str, str], *, job_timeout_ms: int | None = None
) -> bigquery.ExtractJobConfig:
    """The extract job of a backup export. Avro keeps DATE, TIME, DATETIME, TIMESTAMP and NUMERIC as
    Avro logical types (`use_avro_logical_types`), so that a load of the export gives those types back
    instead of STRING/INT64 (useAvroLogicalTypes of JobConfigurationExtract,
    https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationExtract;
    https://cloud.google.com/bigquery/docs/exporting-data#avro_export_details)."""
    from google.cloud import bigquery

    config = bigquery.ExtractJobConfig(destination_format=fmt, labels=dict(labels))
    if job_timeout_ms is not None:
        config.job_timeout_ms = job_timeout_ms
    if fmt == "AVRO":
        config.use_avro_logical_types = True
    return config


class BackupCatalog:
    """What backups exist: snapshots listed from `backup_<ds>`, manifests and exports from GCS."""

    def __init__(
        self, config: EnvsyncConfig, client: bigquery.Client, store: ManifestStore, exports: ManifestStore | None = None
    ):
        self.config = config
        self.client = client
        self.store = store
        self.exports_store = exports or store

    @property
    def backup_project(self) -> str:
        """The project holding the backup datasets (the backup environment's)."""
        return self.config.project_of("backup")

    def backup_dataset(self, dataset: str) -> str:
        return self.config.env_dataset("backup", dataset)

    def source_project(self, dataset: str) -> str:
        """The project of source dataset `dataset` (prod's, or staging's for `staging_<ds>`)."""
        return source_project(self.config, dataset)

    def source_dataset(self, dataset: str) -> bigquery.Dataset:
        """Source dataset `dataset` as BigQuery describes it, after checking that its backup dataset, if it
        exists, is in the same location: BigQuery snapshots a table into another dataset (and project)
        only within its region. BackupError naming both locations otherwise."""
        from google.api_core.exceptions import NotFound

        source = self.client.get_dataset(f"{self.source_project(dataset)}.{dataset}")
        backup_ref = f"{self.backup_project}.{self.backup_dataset(dataset)}"
        try:
            backup = self.client.get_dataset(backup_ref)
        except NotFound:
            return source
        if (backup.location or "").upper() != (source.location or "").upper():
            raise BackupError(
                f"backup dataset {backup_ref} is in {backup.location} but its source dataset "
                f"{source.project}.{dataset} is in {source.location}: BigQuery takes snapshots only within "
                f"one region; drop the backup dataset so envsync re-creates it in {source.location} "
                "(nothing was written)"
            )
        return source

    def snapshots(self, dataset: str) -> dict[str, list[Snapshot]]:
        """Every snapshot of every table of prod `dataset`, oldest first (expired ones are gone)."""
        from google.api_core.exceptions import NotFound

        backup_ds = self.backup_dataset(dataset)
        named = self.backup_project if self.config.split else None
        found: dict[str, list[Snapshot]] = {}
        try:
            items = list(self.client.list_tables(f"{self.backup_project}.{backup_ds}"))
        except NotFound:
            return found
        for item in items:
            parsed = parse_snapshot_name(item.table_id)
            if parsed is None:
                continue
            table, taken_at = parsed
            pinned = (item.labels or {}).get(PINNED_LABEL) == "true"
            found.setdefault(table, []).append(
                Snapshot(dataset, table, backup_ds, item.table_id, taken_at, pinned, named)
            )
        for items_of_table in found.values():
            items_of_table.sort(key=lambda s: (s.taken_at, s.name))
        return found

    def manifest(self, snapshot: Snapshot) -> dict[str, Any] | None:
        return self.store.read(manifest_path(snapshot.dataset, snapshot.table, snapshot.name))

    def exports(self, dataset: str) -> dict[str, list[Export]]:
        """Exported backups (those with a manifest) of every table of prod `dataset`, newest day first;
        one listing of gs://<export bucket>/backups/<ds>/."""
        found: dict[str, list[Export]] = {}
        for name in self.exports_store.list(f"backups/{dataset}/"):
            parts = name.split("/")  # backups/<ds>/<table>/<date>/<file>
            if len(parts) != 5 or parts[4] != EXPORT_MANIFEST:
                continue
            try:
                day = dt.date.fromisoformat(parts[3])
            except ValueError:
                continue
            found.setdefault(parts[2], []).append(
                Export(dataset, parts[2], day, "/".join(parts[:4]) + "/", self.exports_store.bucket_name)
            )
        for items in found.values():
            items.sort(key=lambda e: e.day, reverse=True)
        return found

    def export_manifest(self, export: Export) -> dict[str, Any] | None:
        return self.exports_store.read(export.folder + EXPORT_MANIFEST)

    def export_manifest_at(self, uri: str) -> tuple[dict[str, Any] | None, str]:
        """The manifest of the export at `uri` (gs://<bucket>/backups/<ds>/<table>/<date>/), and its URI."""
        folder = uri.removeprefix(f"gs://{self.exports_store.bucket_name}/")
        return self.exports_store.read(folder + EXPORT_MANIFEST), uri + EXPORT_MANIFEST

    def jobs_today(self, dataset: str, day: dt.date) -> dict[str, int]:
        return {k: int(v) for k, v in (self.store.read(jobs_path(dataset, day)) or {}).items()}

    def count_job(self, dataset: str, day: dt.date, table: str) -> int:
        """Record one more snapshot job for `table` on `day`; returns the day's count for it."""
        data = self.store.update(jobs_path(dataset, day), lambda d: {**d, table: int(d.get(table, 0)) + 1})
        return int(data[table])


class BackupEngine:
    """Takes, records, exports and thins snapshots; every write passes the guard (backup_ datasets only)."""

    def __init__(self, config: EnvsyncConfig, bq: GuardedBigQuery, runner: JobRunner, catalog: BackupCatalog):
        self.config = config
        self.bq = bq
        self.runner = runner
        self.catalog = catalog
        self.ladder = config.backups.ladder()

    def ensure_backup_dataset(self, dataset: str, location: str | None = None) -> str:
        """Create or update `backup_<dataset>` in the backup project, in its source dataset's location and
        with its default CMEK key; returns its name. BackupError, before any write, when the backup
        dataset or `location` (the source's location as the caller read it) is another location."""
        backup_ds = self.catalog.backup_dataset(dataset)
        source = self.catalog.source_dataset(dataset)
        if location is not None and location.upper() != (source.location or "").upper():
            raise BackupError(
                f"source dataset {source.project}.{dataset} is in {source.location}, not {location}: "
                "its backups are made in its own location"
            )
        ensure_env_dataset(
            self.bq,
            f"{self.catalog.backup_project}.{backup_ds}",
            location=source.location,
            description=f"envsync backups (table snapshots) of prod dataset {dataset}",
            labels=env_labels({}, "backup", dataset),
            kms_key_name=default_kms_key(self.bq.client, f"{source.project}.{dataset}"),
        )
        return backup_ds

    def snapshot(
        self,
        dataset: str,
        table: str,
        *,
        taken_at: dt.datetime,
        as_of: dt.datetime | None,
        pinned: bool,
        reason: str,
        expires: dt.datetime,
        stats: JobStats,
    ) -> dict[str, Any]:
        """Snapshot prod `dataset.table` (as of `as_of`, or its current state), label it, record its manifest.

        `taken_at` is the instant the snapshot's data is from (its name). Idempotent: a retry finds the
        snapshot an earlier try made and does not count a second job.
        """
        from google.api_core.exceptions import NotFound

        from envsync.bigquery.discovery import TableInfo

        backup_ds = self.catalog.backup_dataset(dataset)
        name = snapshot_name(table, taken_at)
        source = TableRef(self.catalog.source_project(dataset), dataset, table)
        target = TableRef(self.catalog.backup_project, backup_ds, name)
        shown = self.config.qualified(source.project, dataset, table)
        key = ("snapshot", dataset, table, name)
        prod_table = self.bq.client.get_table(source.api)
        info = TableInfo.from_api(prod_table)  # partitioning, for export restores
        try:
            self.bq.client.get_table(target.api)
            existed = True
            log.info("snapshot %s exists (an earlier try of this run made it)", target)
        except NotFound:
            existed = False
        if not existed:
            jobs = self.catalog.count_job(dataset, dt.datetime.now(UTC).date(), table)  # jobs count on the day they run
            log.info("snapshot job %d today for %s -> %s", jobs, shown, target.api)
            if as_of is None:
                self.runner.run(
                    render("backups/create_snapshot", target=target.sql, source=source.sql), key=key, stats=stats
                )
            else:
                self.runner.run(
                    render("backups/create_snapshot_as_of", target=target.sql, source=source.sql),
                    key=key,
                    params={"as_of": as_of},
                    stats=stats,
                )
        snap = self.bq.client.get_table(target.api)
        snap.expires = expires
        snap.description = (
            f"envsync {'pinned' if pinned else 'ladder'} backup of {shown} as of "
            f"{taken_at.isoformat()}" + (f": {reason}" if reason else "")
        )
        snap.labels = {
            **env_labels({}, "backup", dataset),
            "envsync-table": label_value(table),
            PINNED_LABEL: "true" if pinned else "false",
            "envsync-run": self.runner.labels["envsync-run"],
        }
        self.bq.update_table(snap, ["expires", "description", "labels"])
        # a snapshot keeps the base table's require_partition_filter
        counted = table_checksum(self.runner, target, key + ("checksum",), stats, keep_all=partition_filter(info))
        manifest = {
            "dataset": dataset,
            "table": table,
            "snapshot": self.config.qualified(target.project, backup_ds, name),
            "name": name,
            "taken_at": taken_at.isoformat(),
            "as_of": as_of.isoformat() if as_of else None,
            "pinned": pinned,
            "reason": reason,
            "expires": expires.isoformat(),
            "created_at": dt.datetime.now(UTC).isoformat(),
            "dag_id": self.runner.dag_id,
            "run_id": self.runner.run_id,
            **counted,
            "schema": [f.to_api_repr() for f in snap.schema],
            "partitioning": info.partitioning,
            "range_partitioning": info.range_partitioning,
            "clustering": info.clustering,
            # a restore that has to create the table again gives it this expiration, not the dataset's default
            "table_expires": prod_table.expires.isoformat() if prod_table.expires else None,
        }
        self.catalog.store.write(manifest_path(dataset, table, name), manifest)
        return manifest

    def export(self, manifest: dict[str, Any], stats: JobStats) -> dict[str, Any]:
        """Export a snapshot to gs://<bucket>/backups/<ds>/<table>/<date>/ with its manifest (replacing any)."""
        fmt = self.config.backups.export.format
        store = self.catalog.exports_store
        day = dt.datetime.fromisoformat(manifest["taken_at"]).date()
        folder = export_folder(manifest["dataset"], manifest["table"], day)
        for name in store.list(folder):
            store.delete(name)
        snapshot = snapshot_ref(self.config, manifest["snapshot"])
        destination = f"gs://{store.bucket_name}/{folder}part-*.{EXPORT_EXTENSIONS[fmt]}"
        config = export_job_config(fmt, self.runner.labels, job_timeout_ms=self.runner.job_timeout_ms)
        self.runner.run_job(
            ("export", manifest["dataset"], manifest["table"], manifest["name"]),
            lambda job_id: self.bq.client.extract_table(
                snapshot.api, destination, job_config=config, job_id=job_id, location=self.bq.location
            ),
            stats=stats,
        )
        files = [f"gs://{store.bucket_name}/{name}" for name in store.list(folder)]
        if not files:
            raise BackupError(f"export of {manifest['snapshot']} to {destination} wrote no files")
        exported = {**manifest, "format": fmt, "files": files, "exported_at": dt.datetime.now(UTC).isoformat()}
        store.write(folder + EXPORT_MANIFEST, exported)
        log.info(
            "exported %s to gs://%s/%s (%d files, %s)", manifest["snapshot"], store.bucket_name, folder, len(files), fmt
        )
        return exported

    def thin(self, dataset: str, now: dt.datetime) -> list[Snapshot]:
        """Delete the snapshots of `dataset` the ladder no longer keeps (never a pinned one)."""
        doomed: list[Snapshot] = []
        for table, snapshots in sorted(self.catalog.snapshots(dataset).items()):
            by_name = {s.name: s for s in snapshots}
            for backup in thin(self.ladder, [s.backup() for s in snapshots], now):
                snap = by_name[backup.name]
                if snap.pinned:  # belt and braces: thin() never returns one
                    continue
                self.bq.delete_table(snap.ref(self.catalog.backup_project))
                self.catalog.store.delete(manifest_path(dataset, table, snap.name))
                doomed.append(snap)
        if doomed:
            log.info("thinned %d snapshots of %s: %s", len(doomed), dataset, ", ".join(s.name for s in doomed))
        return doomed

    def ladder_expiry(self, taken_at: dt.datetime) -> dt.datetime:
        return snapshot_expiry(self.ladder, taken_at)
