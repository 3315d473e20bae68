"""Helpers of the backup, restore and drill tests: a small prod of its own project, and backups with a
chosen time (the emulator cannot time-travel to before a table existed, so older backups are
simulated: snapshots of the current state recorded under an earlier instant). Names are logical, as
in testkit: `ds`, `tref`, `fq` give the real ones (run-prefixed on a GCP sandbox)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import sandbox

NS = sandbox.namespace("envsync-backup")
PROJECT = NS.project
BUCKET = NS.bucket("envsync-backup-state")
DATASET = "shop"
ds, tref, fq = NS.ds, NS.tref, NS.fq
UTC = dt.UTC

PROD_SQL = [
    """create or replace table `{p}.shop.orders` partition by d as
       select id, date_add(date '2026-01-01', interval id day) as d, cast(id as float64) * 2.5 as amount,
              concat('order-', cast(id as string)) as note
       from unnest(generate_array(1, 40)) as id""",
    """create or replace table `{p}.shop.customers` as
       select id as customer_id, concat('customer-', cast(id as string)) as name
       from unnest(generate_array(1, 10)) as id""",
    """create or replace view `{p}.shop.big_orders` as select * from `{p}.shop.orders` where amount > 50""",
]
KEYS = {"orders": "id", "customers": "customer_id"}


def client():
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def query(sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    job = client().query(
        NS.sql(sql), job_config=bigquery.QueryJobConfig(query_parameters=to_query_parameters(params)), job_retry=None
    )
    return [dict(r) for r in job.result()]


def make_prod() -> None:
    """(Re)create prod dataset shop with 40 orders, 10 customers and a view; drop every derived dataset."""
    from google.cloud import bigquery

    c = client()
    for name in dataset_names():
        c.delete_dataset(fq(name), delete_contents=True, not_found_ok=True)
    dataset = bigquery.Dataset(fq(DATASET))
    dataset.location = "US"
    c.create_dataset(dataset, exists_ok=True)
    for sql in PROD_SQL:
        query(sql.format(p=PROJECT))
    clear_bucket()


def clear_bucket() -> None:
    from google.api_core.exceptions import NotFound

    from envsync.core.clients import storage_client

    try:
        for blob in storage_client(PROJECT).list_blobs(BUCKET):
            blob.delete()
    except NotFound:
        pass


def contents(table: str) -> list[str]:
    """Every row of `<dataset>.<table>` as JSON, in key order."""
    key = KEYS[table.rsplit(".", 1)[-1]]
    return [r["j"] for r in query(f"select to_json_string(t) as j from `{PROJECT}.{table}` as t order by {key}")]


def dataset_names() -> set[str]:
    """The logical names of this kit's datasets (on a shared sandbox, only this run's)."""
    return {name for d in client().list_datasets() if (name := NS.logical(d.dataset_id)) is not None}


def table_names(dataset: str) -> set[str]:
    from google.api_core.exceptions import NotFound

    try:
        return {t.table_id for t in client().list_tables(fq(dataset))}
    except NotFound:
        return set()


def write_config(path: Path, **backups: Any) -> Path:
    import yaml

    data = {
        "project": NS.virtual_project,
        "location": "US",
        "prod": {"datasets": [DATASET]},
        "state": {"bucket": "envsync-backup-state"},
        "sync": {"verify_partitioning": "warn"},
        "backups": backups,
    }
    path.write_text(yaml.safe_dump(sandbox.real_config(data)))
    return path


def take_backup(
    config_path: Path, taken_at: dt.datetime, *, pinned: bool = False, dataset: str = DATASET
) -> list[dict[str, Any]]:
    """Snapshot every table's current state, recorded as taken at `taken_at`, with manifests, through
    envsync's own backup engine (what a ladder run at `taken_at` would have recorded). `dataset`: prod's
    `shop`, or `staging_shop` (its backups go to backup_staging_shop)."""
    from envsync.backups.snapshots import BackupCatalog, BackupEngine
    from envsync.bigquery.jobs import JobRunner, JobStats
    from envsync.core.clients import storage_client
    from envsync.core.config import load_config
    from envsync.core.guard import GuardedBigQuery, WriteGuard
    from envsync.core.manifest import ManifestStore

    config = load_config(config_path)
    store = ManifestStore(storage_client(PROJECT), BUCKET)
    store.ensure_bucket("US")
    bq = GuardedBigQuery(client(), WriteGuard.from_config(config), "US")
    runner = JobRunner(bq, dag_id="tests", run_id=f"seed-{taken_at:%Y%m%d%H%M}", task_id="backup", timeout=120)
    engine = BackupEngine(config, bq, runner, BackupCatalog(config, client(), store))
    engine.ensure_backup_dataset(ds(dataset), "US")
    expires = dt.datetime.now(UTC) + dt.timedelta(days=30)
    return [
        engine.snapshot(
            ds(dataset),
            table,
            taken_at=taken_at,
            as_of=None,
            pinned=pinned,
            reason="test",
            expires=expires,
            stats=JobStats(),
        )
        for table in sorted(KEYS)
    ]


def tamper(snapshot: str) -> None:
    """Replace snapshot `backup_shop.<name>` by one of different data under the same name."""
    backup_ds, name = tref(snapshot).split(".")
    c = client()
    source = c.get_table(fq(snapshot))
    key = KEYS[name.split("__")[0]]
    query(
        f"create or replace table `{PROJECT}.{backup_ds}.tampered` as "
        f"select * from `{PROJECT}.{snapshot}` where {key} > 1"
    )
    c.delete_table(source)
    query(f"create snapshot table `{PROJECT}.{snapshot}` clone `{PROJECT}.{backup_ds}.tampered`")
    c.delete_table(fq(f"{backup_ds}.tampered"))


def states(dag_run: Any) -> dict[str, str]:
    """Each task instance's state, keyed `task_id[map_index]`."""
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def store():
    """The state bucket of this kit (manifests, ledgers, reports)."""
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    return ManifestStore(storage_client(PROJECT), BUCKET)


def report(dag_id: str) -> dict[str, Any]:
    """The newest run report of `dag_id`."""
    found = store().latest_report(dag_id)
    assert found is not None, f"no report of {dag_id}"
    return found


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def run_time() -> dt.datetime:
    """A logical date for a ladder run now: after prod was made (time travel cannot read before that),
    and not in the last seconds of an hour (two runs of a test must share their hour)."""
    time.sleep(1.1)
    now = dt.datetime.now(dt.UTC)
    if now.minute == 59 and now.second > 30:
        time.sleep(61 - now.second)
    return now_utc()
