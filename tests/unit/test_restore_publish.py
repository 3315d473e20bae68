"""Publishing a restore by a copy job (guarded, re-attachable) and the backup export's job config.

No BigQuery: the client is a `Mock(spec=bigquery.Client)`; what is asserted is what reaches it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest import mock

import pytest
from google.api_core.exceptions import Conflict
from google.cloud import bigquery

from envsync.bigquery.jobs import JobRunner, JobStats
from envsync.core.guard import GuardedBigQuery, ProdWriteRefused, TableRef, WriteGuard

PROJECT = "acme-data"
STAGE = TableRef(PROJECT, "sales", "orders__restore")
TARGET = TableRef(PROJECT, "sales", "orders")


def guarded(client: Any, prod_restore: bool = False) -> GuardedBigQuery:
    guard = WriteGuard(PROJECT, ["sales"], ["drill_", "backup_"])
    if prod_restore:
        point = dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)
        guard = guard.for_prod_restore("sales", point, "restore prod dataset sales to 2026-11-20T08:00:00+00:00")
    return GuardedBigQuery(client, guard, "US")


def runner(bq: GuardedBigQuery) -> JobRunner:
    return JobRunner(bq, dag_id="restore", run_id="manual__1", task_id="restore", timeout=30)


def test_copy_into_prod_is_refused_without_the_confirmed_restore() -> None:
    client = mock.Mock(spec=bigquery.Client)
    with pytest.raises(ProdWriteRefused, match="copy into table acme-data.sales.orders"):
        guarded(client).copy_table(STAGE, TARGET, write_disposition="WRITE_TRUNCATE", job_id="j", labels={})
    assert client.mock_calls == []


def test_copy_is_a_copy_operation_with_the_disposition_labels_and_location() -> None:
    client = mock.Mock(spec=bigquery.Client)
    guarded(client, prod_restore=True).copy_table(
        STAGE, TARGET, write_disposition="WRITE_TRUNCATE", job_id="j1", labels={"envsync-dag": "restore"}
    )
    client.copy_table.assert_called_once()
    args, kwargs = client.copy_table.call_args
    assert args == ("acme-data.sales.orders__restore", "acme-data.sales.orders")
    assert (kwargs["job_id"], kwargs["location"]) == ("j1", "US")
    config = kwargs["job_config"]
    # COPY (not CLONE/SNAPSHOT): a standard table, the clone/snapshot chain starts again
    assert config.to_api_repr() == {
        "copy": {
            "operationType": "COPY",
            "writeDisposition": "WRITE_TRUNCATE",
            "createDisposition": "CREATE_IF_NEEDED",
        },
        "labels": {"envsync-dag": "restore"},
    }
    with pytest.raises(ValueError, match="WRITE_APPEND"):
        guarded(client, prod_restore=True).copy_table(
            STAGE, TARGET, write_disposition="WRITE_APPEND", job_id="j", labels={}
        )


def job(state: str) -> mock.Mock:
    found = mock.Mock()
    found.state = state
    found.total_bytes_billed = None  # copy jobs bill nothing
    return found


def test_run_job_reattaches_to_a_running_job_and_skips_finished_ids() -> None:
    client = mock.Mock(spec=bigquery.Client)
    r = runner(guarded(client))
    base = r.job_id_base("restore", "sales", "orders", "publish")
    client.get_job.side_effect = lambda job_id, location: {f"{base}_0": job("DONE"), f"{base}_1": job("RUNNING")}[
        job_id
    ]
    start = mock.Mock(side_effect=Conflict("exists"))
    stats = JobStats()
    attached = r.run_job(("restore", "sales", "orders", "publish"), start, stats=stats)
    assert [c.args[0] for c in start.call_args_list] == [f"{base}_0", f"{base}_1"]
    assert attached.state == "RUNNING"
    attached.result.assert_called_once_with(timeout=30)
    assert (stats.jobs, stats.job_ids) == (1, [f"{base}_1"])

    started = job("RUNNING")
    new = r.run_job(("k",), lambda job_id: started)
    assert new is started


def test_avro_export_uses_logical_types() -> None:
    from envsync.backups.snapshots import BackupCatalog, BackupEngine
    from envsync.core.config import parse_config

    client = mock.Mock(spec=bigquery.Client)
    store = mock.Mock()
    store.bucket_name = "acme-state"
    store.list.side_effect = [[], ["backups/sales/orders/2026-11-20/part-000.avro"]]
    config = parse_config(
        {
            "project": PROJECT,
            "prod": {"datasets": ["sales"]},
            "state": {"bucket": "acme-state"},
            "backups": {"export": {"enabled": True, "format": "AVRO"}},
        }
    )
    bq = guarded(client)
    engine = BackupEngine(config, bq, runner(bq), BackupCatalog(config, client, store))
    manifest = {
        "dataset": "sales",
        "table": "orders",
        "snapshot": "backup_sales.orders__20261120T0800Z",
        "name": "orders__20261120T0800Z",
        "taken_at": "2026-11-20T08:00:00+00:00",
    }
    exported = engine.export(manifest, JobStats())
    client.extract_table.assert_called_once()
    args, kwargs = client.extract_table.call_args
    assert args == (
        "acme-data.backup_sales.orders__20261120T0800Z",
        "gs://acme-state/backups/sales/orders/2026-11-20/part-*.avro",
    )
    assert kwargs["job_config"].to_api_repr()["extract"] == {"destinationFormat": "AVRO", "useAvroLogicalTypes": True}
    assert exported["format"] == "AVRO"


def test_parquet_export_has_no_avro_option() -> None:
    from envsync.backups.snapshots import export_job_config

    assert export_job_config("PARQUET", {})._properties["extract"] == {"destinationFormat": "PARQUET"}


def test_an_export_is_loaded_by_one_wildcard_uri_and_avro_with_logical_types() -> None:
    from envsync.backups.restore import export_load

    files = [f"gs://acme-exports/backups/sales/orders/2026-11-20/part-{i:012d}.avro" for i in range(12_000)]
    manifest = {
        "files": files,
        "format": "AVRO",
        "schema": [{"name": "order_date", "type": "DATE", "mode": "NULLABLE"}],
    }
    uri, config = export_load(manifest, {"envsync-dag": "restore"})
    assert uri == "gs://acme-exports/backups/sales/orders/2026-11-20/part-*.avro"  # not 12,000 URIs
    load = config.to_api_repr()["load"]
    assert load["useAvroLogicalTypes"] is True and load["sourceFormat"] == "AVRO"
    assert load["writeDisposition"] == "WRITE_TRUNCATE"
    parquet = export_load({**manifest, "format": "PARQUET", "files": [files[0].replace(".avro", ".parquet")]}, {})
    assert parquet[0].endswith("/part-*.parquet") and "useAvroLogicalTypes" not in parquet[1].to_api_repr()["load"]
