"""Clones, snapshots and copies keep the source's metadata; clone/snapshot chains are bounded.

Each test names the BigQuery documentation it follows (emulators/bqfidelity/metadata.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fidkit import run

pytestmark = pytest.mark.integration

P = "envsync-demo"


def _schema(bq: Any) -> list[Any]:
    from google.cloud.bigquery import SchemaField as F

    return [
        F("id", "INTEGER", "REQUIRED", description="the id"),
        F("d", "DATE", "REQUIRED"),
        F("ts", "TIMESTAMP"),
        F("s", "RECORD", fields=[F("a", "INTEGER", "REQUIRED"), F("b", "STRING", description="bee")]),
        F("r", "STRING", "REPEATED"),
    ]


def _base(bq: Any, ds: str, *, rpf: bool = True, range_partitioned: bool = False) -> str:
    """A DAY-partitioned (or RANGE-partitioned), clustered table with REQUIRED and nested columns, 3 rows."""
    from google.cloud import bigquery

    table = bigquery.Table(f"{P}.{ds}.base", schema=_schema(bq))
    if range_partitioned:
        table.range_partitioning = bigquery.RangePartitioning(
            field="id", range_=bigquery.PartitionRange(start=0, end=100, interval=10)
        )
    else:
        table.time_partitioning = bigquery.TimePartitioning(field="d")
    table.clustering_fields = ["id"]
    table.require_partition_filter = rpf
    table.description = "base table"
    table.labels = {"owner": "prod"}
    bq.create_table(table)
    run(
        bq,
        f"""insert into `{P}.{ds}.base` (id, d, ts, s, r) values
        (1, date '2026-11-01', timestamp '2026-11-01 10:00:00+00', struct(1, 'x'), ['a']),
        (2, date '2026-11-02', null, struct(2, null), []),
        (3, date '2026-11-03', timestamp '2026-11-03 10:00:00+00', null, ['b', 'c'])""",
    )
    return f"{P}.{ds}.base"


def _layout(table: Any) -> dict[str, Any]:
    props = table._properties
    return {
        key: props.get(key)
        for key in ("schema", "timePartitioning", "rangePartitioning", "clustering", "requirePartitionFilter")
    }


def _count(bq: Any, table: str, where: str = "d is not null or d is null") -> int:
    return run(bq, f"select count(*) as n from `{table}` where {where}")[0]["n"]


def test_clone_keeps_schema_modes_partitioning_clustering_and_partition_filter(
    bq: Any, dataset: Callable[..., str]
) -> None:
    """https://cloud.google.com/bigquery/docs/table-clones-intro ("Table clone metadata": a clone has the
    base table's metadata) and https://cloud.google.com/bigquery/docs/table-clones-create (a table that
    requires a partition filter can be cloned: a clone is not a query)."""
    ds = dataset()
    base = _base(bq, ds)
    run(bq, f"create table `{P}.{ds}.clone` clone `{base}`")
    clone, source = bq.get_table(f"{P}.{ds}.clone"), bq.get_table(base)

    assert _layout(clone) == _layout(source)
    assert clone.schema[0].mode == "REQUIRED" and clone.schema[0].description == "the id"
    assert clone.schema[3].fields[0].mode == "REQUIRED" and clone.schema[3].fields[1].description == "bee"
    assert clone.time_partitioning.field == "d" and clone.clustering_fields == ["id"]
    assert clone.require_partition_filter is True
    assert clone._properties["cloneDefinition"]["baseTableReference"]["tableId"] == "base"
    assert _count(bq, f"{P}.{ds}.clone", "d >= '2000-01-01'") == 3


def test_clone_enforces_required_columns(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/docs/schemas#modes: a REQUIRED column does not accept NULL; the
    clone keeps the mode (table-clones-intro), so the clone refuses NULL too."""
    from google.api_core.exceptions import BadRequest

    ds = dataset()
    base = _base(bq, ds, rpf=False)
    run(bq, f"create table `{P}.{ds}.clone` clone `{base}`")
    with pytest.raises(BadRequest):
        run(bq, f"insert into `{P}.{ds}.clone` (id, d) values (null, date '2026-11-05')")
    run(bq, f"insert into `{P}.{ds}.clone` (id, d) values (4, date '2026-11-05')")
    assert _count(bq, f"{P}.{ds}.clone") == 4


def test_clone_as_of_keeps_range_partitioning(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/docs/table-clones-create (FOR SYSTEM_TIME AS OF) and
    https://cloud.google.com/bigquery/docs/partitioned-tables#integer_range: range partitioning is kept."""
    import datetime as dt

    ds = dataset()
    base = _base(bq, ds, rpf=False, range_partitioned=True)
    run(bq, f"create table `{P}.{ds}.clone` clone `{base}` for system_time as of @t", t=dt.datetime.now(dt.UTC))
    clone = bq.get_table(f"{P}.{ds}.clone")
    assert clone.range_partitioning.field == "id" and clone.range_partitioning.range_.interval == 10
    assert clone.time_partitioning is None and clone.schema[1].mode == "REQUIRED"
    assert _count(bq, f"{P}.{ds}.clone") == 3


def test_snapshot_and_restore_keep_layout(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/docs/table-snapshots-intro (a snapshot preserves the base table)
    and https://cloud.google.com/bigquery/docs/table-snapshots-restore (a restore gives a standard table
    with the snapshot's schema and layout)."""
    from google.cloud import bigquery

    ds = dataset()
    base = _base(bq, ds)
    run(bq, f"create snapshot table `{P}.{ds}.snap` clone `{base}`")
    snap = bq.get_table(f"{P}.{ds}.snap")
    assert snap.table_type == "SNAPSHOT" and _layout(snap) == _layout(bq.get_table(base))

    config = bigquery.CopyJobConfig(operation_type="RESTORE")
    bq.copy_table(f"{P}.{ds}.snap", f"{P}.{ds}.restored", job_config=config).result()
    restored = bq.get_table(f"{P}.{ds}.restored")
    assert restored.table_type == "TABLE" and _layout(restored) == _layout(snap)
    assert _count(bq, f"{P}.{ds}.restored", "d >= '2000-01-01'") == 3


@pytest.mark.parametrize("operation", ["COPY", "CLONE", "SNAPSHOT"])
def test_copy_jobs_into_a_new_table_keep_layout(bq: Any, dataset: Callable[..., str], operation: str) -> None:
    """https://cloud.google.com/bigquery/docs/managing-tables#copy-table (a copy job creates the
    destination with the source's schema, partitioning and clustering) and the CLONE / SNAPSHOT
    operation types of copy jobs (https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#operationtype)."""
    from google.cloud import bigquery

    ds = dataset()
    base = _base(bq, ds)
    config = bigquery.CopyJobConfig(operation_type=operation)
    bq.copy_table(base, f"{P}.{ds}.dest", job_config=config).result()
    dest = bq.get_table(f"{P}.{ds}.dest")
    assert _layout(dest) == _layout(bq.get_table(base))
    assert _count(bq, f"{P}.{ds}.dest", "d >= '2000-01-01'") == 3


def test_copy_truncate_keeps_the_destinations_own_settings(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/docs/managing-tables#copy-table: WRITE_TRUNCATE replaces the
    data; the destination table keeps its own description, labels and expiration."""
    import datetime as dt

    from google.cloud import bigquery

    ds = dataset()
    base = _base(bq, ds, rpf=False)
    bq.copy_table(base, f"{P}.{ds}.dest").result()
    dest = bq.get_table(f"{P}.{ds}.dest")
    dest.description, dest.labels = "my own", {"team": "dev"}
    dest.expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    bq.update_table(dest, ["description", "labels", "expires"])
    run(bq, f"delete from `{base}` where id = 3")

    config = bigquery.CopyJobConfig(write_disposition="WRITE_TRUNCATE")
    bq.copy_table(base, f"{P}.{ds}.dest", job_config=config).result()
    after = bq.get_table(f"{P}.{ds}.dest")
    assert (after.description, after.labels) == ("my own", {"team": "dev"})
    assert after.expires == dest.expires
    assert _layout(after) == _layout(bq.get_table(base))
    assert _count(bq, f"{P}.{ds}.dest") == 2


def test_copy_truncate_replaces_the_schema_and_keeps_the_destinations_options(
    bq: Any, dataset: Callable[..., str]
) -> None:
    """A restore publishes an older state into the existing table by a copy job with WRITE_TRUNCATE.
    https://cloud.google.com/bigquery/docs/reference/auditlogs/rest/Shared.Types/BigQueryAuditMetadata.WriteDisposition:
    WRITE_TRUNCATE writes the data from the beginning and need not keep the table's schema (the
    source's schema is written; WRITE_TRUNCATE_DATA would keep it);
    https://cloud.google.com/bigquery/docs/managing-tables#copy-table: the destination table stays, with
    its own friendly name, partition expiration and require_partition_filter."""
    from google.cloud import bigquery

    ds = dataset()
    base = _base(bq, ds, rpf=False)
    bq.copy_table(base, f"{P}.{ds}.dest").result()
    dest = bq.get_table(f"{P}.{ds}.dest")
    dest.friendly_name, dest.require_partition_filter = "Destination", True
    dest.time_partitioning = bigquery.TimePartitioning(field="d", expiration_ms=3650 * 86_400_000)
    bq.update_table(dest, ["friendly_name", "require_partition_filter", "time_partitioning"])
    run(bq, f"alter table `{P}.{ds}.dest` add column added_later string")

    config = bigquery.CopyJobConfig(write_disposition="WRITE_TRUNCATE")
    bq.copy_table(base, f"{P}.{ds}.dest", job_config=config).result()
    after = bq.get_table(f"{P}.{ds}.dest")
    assert [f.name for f in after.schema] == [f.name for f in bq.get_table(base).schema]  # added_later is gone
    assert (after.friendly_name, after.require_partition_filter) == ("Destination", True)
    assert (after.time_partitioning.field, after.time_partitioning.expiration_ms) == ("d", 3650 * 86_400_000)
    assert _count(bq, f"{P}.{ds}.dest", "d is null or d >= '2000-01-01'") == 3


def test_clone_snapshot_chain_is_refused_at_the_third_link(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/quotas#table_snapshots (quotas: table clones/snapshots): a clone
    or snapshot of the result of a clone or snapshot of a clone or snapshot is refused; a copy job writes
    a standard table and starts a new chain; a rename keeps the table (and its place in the chain)."""
    from google.api_core.exceptions import BadRequest
    from google.cloud import bigquery

    ds = dataset()
    base = _base(bq, ds, rpf=False)
    run(bq, f"create snapshot table `{P}.{ds}.snap` clone `{base}`")  # depth 1
    run(bq, f"create table `{P}.{ds}.restored` clone `{P}.{ds}.snap`")  # depth 2
    run(bq, f"alter table `{P}.{ds}.restored` rename to restored2")
    with pytest.raises(BadRequest, match="clone/snapshot chain"):
        run(bq, f"create snapshot table `{P}.{ds}.snap2` clone `{P}.{ds}.restored2`")
    with pytest.raises(BadRequest, match="clone/snapshot chain"):
        config = bigquery.CopyJobConfig(operation_type="CLONE")
        bq.copy_table(f"{P}.{ds}.restored2", f"{P}.{ds}.clone3", job_config=config).result()
    assert {t.table_id for t in bq.list_tables(f"{P}.{ds}")} == {"base", "snap", "restored2"}

    bq.copy_table(f"{P}.{ds}.restored2", f"{P}.{ds}.copied").result()  # a new chain
    run(bq, f"create snapshot table `{P}.{ds}.snap3` clone `{P}.{ds}.copied`")
    run(bq, f"create table `{P}.{ds}.clone4` clone `{P}.{ds}.snap3`")
    assert _count(bq, f"{P}.{ds}.clone4") == 3

    run(bq, f"drop table `{P}.{ds}.restored2`")  # a new table, a new chain
    run(bq, f"create table `{P}.{ds}.restored2` as select * from `{base}`")
    run(bq, f"create snapshot table `{P}.{ds}.snap5` clone `{P}.{ds}.restored2`")


def test_clone_of_an_empty_partitioned_table_keeps_required_modes(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/docs/table-clones-intro: an empty base table clones like any other
    (same schema, modes and partitioning)."""
    from google.cloud import bigquery
    from google.cloud.bigquery import SchemaField as F

    ds = dataset()
    table = bigquery.Table(f"{P}.{ds}.empty", schema=[F("id", "INTEGER", "REQUIRED"), F("d", "DATE", "REQUIRED")])
    table.time_partitioning = bigquery.TimePartitioning(field="d")
    bq.create_table(table)
    run(bq, f"create table `{P}.{ds}.clone` clone `{P}.{ds}.empty`")
    clone = bq.get_table(f"{P}.{ds}.clone")
    assert _layout(clone) == _layout(bq.get_table(f"{P}.{ds}.empty")) and clone.num_rows == 0
    assert [f.mode for f in clone.schema] == ["REQUIRED", "REQUIRED"]


def test_a_view_whose_query_no_longer_resolves_is_still_a_view(bq: Any, dataset: Callable[..., str]) -> None:
    """tables.get returns a view's resource even when a column it reads was dropped; only querying it
    fails (https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/get,
    https://cloud.google.com/bigquery/docs/views)."""
    from google.api_core.exceptions import BadRequest

    ds = dataset()
    run(bq, f"create table `{P}.{ds}.t` as select 1 as id, 'x' as gone")
    run(bq, f"create view `{P}.{ds}.v` as select id, gone from `{P}.{ds}.t`")
    run(bq, f"alter table `{P}.{ds}.t` drop column gone")

    view = bq.get_table(f"{P}.{ds}.v")

    assert view.table_type == "VIEW"
    assert "gone" in view.view_query
    assert {t.table_id: t.table_type for t in bq.list_tables(f"{P}.{ds}")} == {"t": "TABLE", "v": "VIEW"}
    with pytest.raises(BadRequest):
        run(bq, f"select * from `{P}.{ds}.v` limit 0")


def test_num_rows_is_the_rows_a_table_holds_after_updates_and_deletes(bq: Any, dataset: Callable[..., str]) -> None:
    """numRows: "The number of rows of data in this table" (the Table resource,
    https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#Table.FIELDS.num_rows): what it
    holds now, not every row ever written (the emulator's storage keeps updated and deleted rows)."""
    ds = dataset()
    table = f"{P}.{ds}.t"
    run(bq, f"create table `{table}` as select x, cast(null as string) as y from unnest(generate_array(1, 20)) as x")
    assert bq.get_table(table).num_rows == 20
    run(bq, f"update `{table}` set y = 'a' where y is null")
    assert bq.get_table(table).num_rows == 20
    run(bq, f"delete from `{table}` where x > 15")
    assert bq.get_table(table).num_rows == 15
    run(bq, f"insert into `{table}` (x, y) values (100, 'b')")
    assert bq.get_table(table).num_rows == 16 == run(bq, f"select count(*) as n from `{table}`")[0]["n"]
