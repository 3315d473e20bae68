"""BigQuery's table and job rules, as the fidelity layer (emulators/bqfidelity/rules.py) enforces them.

Each test names the BigQuery documentation it follows. Every refusal is paired with a positive
control (the valid form of the same operation works), so a layer that refuses everything fails.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any

import fidkit
import pytest
from google.api_core import exceptions
from google.cloud import bigquery

pytestmark = pytest.mark.integration

PROJECT = "envsync-demo"
PARTITION_FILTER_DOC = (
    "https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries"
)
TIME_TRAVEL_DOC = "https://cloud.google.com/bigquery/docs/access-historical-data"
TIME_TRAVEL_WINDOW_DOC = "https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window"
QUOTAS_PARTITIONS_DOC = "https://cloud.google.com/bigquery/quotas#partitioned_tables"
QUOTAS_QUERY_DOC = "https://cloud.google.com/bigquery/quotas#query_jobs"


def refused(bq: Any, sql: str, **params: Any) -> str:
    """Run a query that must fail with a 400; return BigQuery's message (errorResult.message)."""
    with pytest.raises(exceptions.BadRequest) as caught:
        fidkit.run(bq, sql, **params)
    errors = caught.value.errors or [{}]
    return errors[0].get("message", str(caught.value))


def reason_of(error: exceptions.GoogleAPICallError) -> str:
    return (error.errors or [{}])[0].get("reason", "")


def no_filter(ds: str, table: str, columns: str = "'d'") -> str:
    return (
        f"Cannot query over table '{PROJECT}.{ds}.{table}' without a filter over column(s) {columns} "
        "that can be used for partition elimination"
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def created_ms(bq: Any, table: str) -> int:
    return int(bq.get_table(table)._properties["creationTime"])


# --------------------------------------------------------------------------------------------
# require_partition_filter


@pytest.fixture
def rpf(bq: Any, dataset: Callable[..., str]) -> str:
    """A dataset with `t` (DAY-partitioned on d, require_partition_filter) and `s` (plain)."""
    ds = dataset()
    fidkit.run(
        bq,
        f"create table {ds}.t (d date, v int64) partition by d "
        "options (require_partition_filter = true) as "
        "select date '2024-01-01' as d, 1 as v union all select date '2024-01-02', 2 "
        "union all select null, 3",
    )
    fidkit.run(bq, f"create table {ds}.s as select date '2024-01-01' as d, 1 as v")
    return ds


@pytest.mark.parametrize(
    "query",
    [
        "select * from {ds}.t",
        "select * from {ds}.t where true",
        "select * from {ds}.t where d = '2024-01-01' or v = 1",  # OR with another column
        "select * from {ds}.t where d in (select d from {ds}.s)",  # dynamic: no elimination
        "select * from {ds}.s where v in (select v from {ds}.t) and d = '2024-01-01'",  # other block
        "with c as (select * from {ds}.t) select * from c",
        "select * from (select * from {ds}.t limit 10) where d = '2024-01-01'",  # not pushed past LIMIT
        "select * from {ds}.t where date_add(d, interval v day) > '2024-01-01'",  # needs another column
        "select t.* from {ds}.t as t join {ds}.s as s on t.d = s.d",  # join on another table's column
    ],
)
def test_rpf_refuses_a_read_without_an_eligible_filter(bq: Any, rpf: str, query: str) -> None:
    """https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries:
    "There must be at least one predicate that only references a partition
    column for the filter to be considered eligible for partition elimination" -- WHERE (partition_id
    = "foo" OR f = "bar") is not sufficient."""
    assert refused(bq, query.format(ds=rpf)) == no_filter(rpf, "t")


@pytest.mark.parametrize(
    ("query", "rows"),
    [
        ("select v from {ds}.t where d = '2024-01-01'", [1]),
        ("select v from {ds}.t where v > 0 and d = '2024-01-02'", [2]),  # AND with another column
        ("select v from {ds}.t where d >= '1900-01-01' or d is null", [1, 2, 3]),
        ("select v from {ds}.t where d is null or d >= @x", [1, 2, 3]),
        ("select v from {ds}.t where d between '2024-01-01' and '2024-01-31'", [1, 2]),
        ("select v from {ds}.t where d in ('2024-01-02')", [2]),
        ("select v from {ds}.t where d is not null", [1, 2]),
        ("select t.v from {ds}.t as t join {ds}.s as s on t.v = s.v and t.d > '2000-01-01'", [1]),
        ("select v from (select * from {ds}.t) where d = '2024-01-01'", [1]),  # pushed down
        ("with c as (select d as day, v from {ds}.t) select v from c where day = '2024-01-02'", [2]),
        ("select v from {ds}.t for system_time as of current_timestamp() where d = '2024-01-01'", [1]),
    ],
)
def test_rpf_accepts_a_filter_usable_for_partition_elimination(bq: Any, rpf: str, query: str, rows: list[int]) -> None:
    """https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries:
    WHERE partition_id = "foo" and WHERE f = "bar" AND partition_id = "foo"
    satisfy the requirement; a predicate on the partitioning column alone prunes partitions."""
    found = fidkit.run(bq, query.format(ds=rpf), x=dt.date(2000, 1, 1))
    assert sorted(row["v"] for row in found) == rows


def test_rpf_applies_to_dml_reads_not_to_inserts(bq: Any, rpf: str) -> None:
    """https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries:
    DELETE, UPDATE and MERGE read the table (the MERGE's ON clause is where
    the target's filter goes); an INSERT only writes it."""
    assert refused(bq, f"delete from {rpf}.t where true") == no_filter(rpf, "t")
    assert refused(bq, f"update {rpf}.t set v = 9 where v = 1") == no_filter(rpf, "t")
    merge = f"merge {rpf}.t as T using {rpf}.s as S on T.v = S.v {{extra}} when matched then update set v = 10"
    assert refused(bq, merge.format(extra="")) == no_filter(rpf, "t")

    fidkit.run(bq, f"insert into {rpf}.t (d, v) values ('2024-02-01', 4)")
    fidkit.run(bq, f"update {rpf}.t set v = 5 where d = '2024-02-01'")
    fidkit.run(bq, merge.format(extra="and T.d is not null"))
    fidkit.run(bq, f"delete from {rpf}.t where d is null")
    left = fidkit.run(bq, f"select d, v from {rpf}.t where d is not null order by d")
    assert [(str(r["d"]), r["v"]) for r in left] == [("2024-01-01", 10), ("2024-01-02", 2), ("2024-02-01", 5)]


def test_rpf_clone_snapshot_and_copy_jobs_are_not_queries(bq: Any, rpf: str) -> None:
    """https://cloud.google.com/bigquery/docs/table-clones-create and .../table-snapshots-create:
    cloning, snapshotting and copying a table read no query over it, so its partition filter
    requirement does not apply (the emulator runs a clone as SELECT * and used to refuse it)."""
    fidkit.run(bq, f"create table {rpf}.c clone {rpf}.t")
    fidkit.run(bq, f"create snapshot table {rpf}.snap clone {rpf}.t")
    fidkit.run(
        bq,
        f"create table {rpf}.c_as_of clone {rpf}.t for system_time as of @at",
        at=dt.datetime.now(dt.UTC),
    )
    for operation in ("COPY", "CLONE", "SNAPSHOT"):
        config = bigquery.CopyJobConfig(operation_type=operation)
        bq.copy_table(f"{rpf}.t", f"{rpf}.copy_{operation.lower()}", job_config=config).result()
    for name in ("c", "snap", "c_as_of", "copy_copy", "copy_clone", "copy_snapshot"):
        assert bq.get_table(f"{rpf}.{name}").num_rows == 3, name


def test_rpf_metadata_reads_views_and_ddl_are_unaffected(bq: Any, rpf: str) -> None:
    """https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries:
    the requirement is on queries; tables.get, tabledata.list,
    INFORMATION_SCHEMA, CREATE VIEW, ALTER and DROP are not queries over the table."""
    assert bq.get_table(f"{rpf}.t").require_partition_filter is True
    assert len(list(bq.list_rows(f"{rpf}.t"))) == 3
    parts = fidkit.run(bq, f"select partition_id from {rpf}.INFORMATION_SCHEMA.PARTITIONS where table_name = 't'")
    assert parts
    fidkit.run(bq, f"create view {rpf}.v as select * from {rpf}.t")
    fidkit.run(bq, f"alter table {rpf}.t set options (description = 'x')")
    fidkit.run(bq, f"drop table {rpf}.t")


def test_rpf_applies_through_views(bq: Any, rpf: str) -> None:
    """https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries:
    a query over a view reads the view's tables; the filter may come from the outer query (pushed down
    into the view) or from the view itself. Creating the view reads nothing. (The view is not named
    like its column: GoogleSQL would resolve `v` to the view's row, a STRUCT.)"""
    fidkit.run(bq, f"create view {rpf}.vw as select d as day, v from {rpf}.t")
    fidkit.run(bq, f"create view {rpf}.v_recent as select * from {rpf}.t where d >= '2024-01-02'")
    assert refused(bq, f"select v from {rpf}.vw") == no_filter(rpf, "t")
    assert refused(bq, f"select v from {rpf}.vw where v = 1") == no_filter(rpf, "t")
    assert fidkit.run(bq, f"select v from {rpf}.vw where day = '2024-01-01'") == [{"v": 1}]
    assert fidkit.run(bq, f"select v from {rpf}.v_recent") == [{"v": 2}]


def test_rpf_ingestion_time_table_filters_on_the_pseudocolumns(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/docs/querying-partitioned-tables#require_a_partition_filter_in_queries:
    "For ingestion-time partitioned tables, use either the _PARTITIONTIME or
    _PARTITIONDATE pseudocolumn"; BigQuery's message lists the three pseudocolumns."""
    ds = dataset()
    fidkit.run(
        bq,
        f"create table {ds}.ing (v int64) partition by _PARTITIONDATE options (require_partition_filter = true)",
    )
    fidkit.run(bq, f"insert into {ds}.ing (v) values (1)")
    assert refused(bq, f"select v from {ds}.ing where v = 1") == no_filter(
        ds, "ing", "'_PARTITION_LOAD_TIME', '_PARTITIONDATE', '_PARTITIONTIME'"
    )
    assert fidkit.run(bq, f"select v from {ds}.ing where _PARTITIONDATE >= '2000-01-01'") == [{"v": 1}]
    assert fidkit.run(bq, f"select v from {ds}.ing where _PARTITIONTIME >= timestamp '2000-01-01'") == [{"v": 1}]


# --------------------------------------------------------------------------------------------
# Time travel

SNAPSHOT_ERROR = re.compile(
    r"^Invalid snapshot time (?P<at>\d+) for table (?P<table>\S+)@(?P=at)\. "
    r"Cannot read (?P<side>before|after) (?P<bound>\d+)\.$"
)


def snapshot_error(message: str) -> dict[str, str]:
    match = SNAPSHOT_ERROR.match(message)
    assert match, message
    return match.groupdict()


@pytest.fixture
def history(bq: Any, dataset: Callable[..., str]) -> tuple[str, int, int]:
    """Table `h` created with one row (v=1), then a second row (v=2) inserted at a later instant.
    Returns (dataset, creation ms, an instant between the two writes)."""
    ds = dataset()
    fidkit.run(bq, f"create table {ds}.h as select 1 as v")
    created = created_ms(bq, f"{ds}.h")
    time.sleep(1.2)
    between = now_ms()
    time.sleep(0.2)
    fidkit.run(bq, f"insert into {ds}.h values (2)")
    return ds, created, between


def test_time_travel_within_the_window_reads_the_old_version(bq: Any, history: tuple[str, int, int]) -> None:
    """https://cloud.google.com/bigquery/docs/access-historical-data:
    FOR SYSTEM_TIME AS OF reads the table as it was at a point in the time travel
    window; the instant may be a literal, a parameter or a constant expression."""
    ds, _, between = history
    at = dt.datetime.fromtimestamp(between / 1000, dt.UTC)
    forms = [
        (f"select v from {ds}.h for system_time as of timestamp_millis({between})", {}),
        (f"select v from {ds}.h for system_time as of @at", {"at": at}),
        (f"select v from {ds}.h for system_time as of timestamp '{at.isoformat()}'", {}),
    ]
    for sql, params in forms:
        assert [row["v"] for row in fidkit.run(bq, sql, **params)] == [1], sql
    recent = f"select v from {ds}.h for system_time as of timestamp_sub(current_timestamp(), interval 1 millisecond)"
    assert sorted(row["v"] for row in fidkit.run(bq, recent)) == [1, 2]


@pytest.mark.parametrize(
    "statement",
    [
        "select v from {ds}.h for system_time as of {at}",
        "create table {ds}.clone_h clone {ds}.h for system_time as of {at}",
        "create snapshot table {ds}.snap_h clone {ds}.h for system_time as of {at}",
    ],
)
def test_time_travel_before_the_table_was_created_is_refused(
    bq: Any, history: tuple[str, int, int], statement: str
) -> None:
    """https://cloud.google.com/bigquery/docs/access-historical-data:
    "If the timestamp specifies a time before the time travel window or before
    the table was created, then the query fails and returns an error like the following: Invalid
    snapshot time 1601168925462 for table myproject:mydataset.table1@1601168925462. Cannot read before
    1601573410026." -- in queries, CLONE and CREATE SNAPSHOT TABLE alike, however the instant is given."""
    ds, created, _ = history
    for at, params in (
        ("timestamp_sub(current_timestamp(), interval 1 hour)", {}),
        ("@at", {"at": dt.datetime.fromtimestamp((created - 60_000) / 1000, dt.UTC)}),
    ):
        parts = snapshot_error(refused(bq, statement.format(ds=ds, at=at), **params))
        assert parts["table"] == f"{PROJECT}:{ds}.h"
        assert parts["side"] == "before" and int(parts["bound"]) == created
        assert int(parts["at"]) < created


def test_time_travel_in_the_future_is_refused(bq: Any, history: tuple[str, int, int]) -> None:
    """https://cloud.google.com/bigquery/docs/access-historical-data:
    time travel reads history; an instant after now has no version to read."""
    ds, _, _ = history
    message = refused(
        bq, f"select v from {ds}.h for system_time as of timestamp_add(current_timestamp(), interval 1 hour)"
    )
    assert snapshot_error(message)["side"] == "after"


@pytest.mark.parametrize(("hours", "too_old_hours"), [(48, 49), (None, 169)])
def test_time_travel_older_than_the_dataset_window_is_refused(
    bq: Any, dataset: Callable[..., str], hours: int | None, too_old_hours: int
) -> None:
    """https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window
    (default seven days, 168 hours) and https://cloud.google.com/bigquery/docs/access-historical-data: an instant before
    the window is refused even for a table older than the window. The table's creation time is set
    back through tables.patch so that only the window bounds the read."""
    ds = dataset(**({"max_time_travel_hours": hours} if hours else {}))
    fidkit.run(bq, f"create table {ds}.old as select 1 as v")
    week_ago = now_ms() - 200 * 3_600_000
    bq._connection.api_request(
        method="PATCH", path=f"/projects/{PROJECT}/datasets/{ds}/tables/old", data={"creationTime": str(week_ago)}
    )
    before = now_ms()
    at = before - too_old_hours * 3_600_000
    parts = snapshot_error(refused(bq, f"select v from {ds}.old for system_time as of timestamp_millis({at})"))
    window = (hours or 168) * 3_600_000
    assert parts["side"] == "before"
    assert before - window <= int(parts["bound"]) <= now_ms() - window


def test_time_travel_reads_the_version_a_create_or_replace_replaced(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/docs/access-historical-data:
    "After you replace an existing table by using the CREATE OR REPLACE TABLE
    statement, you can use FOR SYSTEM_TIME AS OF to query the previous version of the table." A table
    dropped and created again has no history before its creation."""
    ds = dataset()
    fidkit.run(bq, f"create table {ds}.r as select 'first' as gen")
    time.sleep(1.2)
    between = now_ms()
    time.sleep(0.2)
    fidkit.run(bq, f"create or replace table {ds}.r as select 'second' as gen")
    old = fidkit.run(bq, f"select gen from {ds}.r for system_time as of timestamp_millis({between})")
    assert [row["gen"] for row in old] == ["first"]

    fidkit.run(bq, f"drop table {ds}.r")
    fidkit.run(bq, f"create table {ds}.r as select 'third' as gen")
    parts = snapshot_error(refused(bq, f"select gen from {ds}.r for system_time as of timestamp_millis({between})"))
    assert int(parts["bound"]) == created_ms(bq, f"{ds}.r")


def test_time_travel_decorators_in_copy_jobs(bq: Any, history: tuple[str, int, int]) -> None:
    """https://cloud.google.com/bigquery/docs/access-historical-data
    (restore a table from a point in time): a copy job's source may be
    `table@<ms since epoch>`, `table@-<offset ms>` or `table@0` (the oldest available data); an instant
    before the table's creation is refused with the same error."""
    ds, created, between = history
    bq.copy_table(f"{ds}.h@{between}", f"{ds}.restored").result()
    assert [row["v"] for row in bq.list_rows(f"{ds}.restored")] == [1]
    bq.copy_table(f"{ds}.h@0", f"{ds}.oldest").result()
    assert [row["v"] for row in bq.list_rows(f"{ds}.oldest")] == [1]
    with pytest.raises(exceptions.BadRequest) as caught:
        bq.copy_table(f"{ds}.h@{created - 60_000}", f"{ds}.too_old").result()
    parts = snapshot_error(caught.value.errors[0]["message"])
    assert parts["side"] == "before" and int(parts["bound"]) == created


# --------------------------------------------------------------------------------------------
# Dataset time-travel window


def test_dataset_time_travel_hours_must_be_a_multiple_of_24_from_48_to_168(
    bq: Any, dataset: Callable[..., str]
) -> None:
    """https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window,
    and the DDL reference (schema_option_list: "max_time_travel_hours ...
    must be an integer expressed in multiples of 24 (48, 72, 96, 120, 144, 168) between 48 (2 days) and
    168 (7 days)"): refused on datasets.insert/patch and CREATE/ALTER SCHEMA; the default is 168."""
    name = dataset()
    assert str(bq.get_dataset(name).max_time_travel_hours) == "168"
    for bad in ("50", "24", "192"):
        ds = bigquery.Dataset(f"{PROJECT}.{name}_bad")
        ds._properties["maxTimeTravelHours"] = bad  # the Python client refuses these values itself
        with pytest.raises(exceptions.BadRequest) as caught:
            bq.create_dataset(ds)
        assert "max_time_travel_hours" in caught.value.message and bad in caught.value.message
    with pytest.raises(exceptions.NotFound):
        bq.get_dataset(f"{name}_bad")

    ok = bq.get_dataset(name)
    ok._properties["maxTimeTravelHours"] = "200"
    with pytest.raises(exceptions.BadRequest):
        bq.update_dataset(ok, ["max_time_travel_hours"])
    ok = bq.get_dataset(name)
    ok.max_time_travel_hours = 72
    assert str(bq.update_dataset(ok, ["max_time_travel_hours"]).max_time_travel_hours) == "72"

    assert "max_time_travel_hours" in refused(bq, f"create schema {name}_ddl options (max_time_travel_hours = 50)")
    with pytest.raises(exceptions.NotFound):
        bq.get_dataset(f"{name}_ddl")
    fidkit.run(bq, f"create schema {name}_ddl options (max_time_travel_hours = 96)")
    try:
        assert str(bq.get_dataset(f"{name}_ddl").max_time_travel_hours) == "96"
        assert "max_time_travel_hours" in refused(
            bq, f"alter schema {name}_ddl set options (max_time_travel_hours = 1000)"
        )
        fidkit.run(bq, f"alter schema {name}_ddl set options (max_time_travel_hours = 48)")
        assert str(bq.get_dataset(f"{name}_ddl").max_time_travel_hours) == "48"
    finally:
        bq.delete_dataset(f"{name}_ddl", delete_contents=True, not_found_ok=True)


# --------------------------------------------------------------------------------------------
# Partitions modified per job


def too_many(count: int, what: str = "query") -> str:
    return f"Too many partitions produced by {what}, allowed 4000, {what} produces at least {count} partitions"


DAYS = "select d, 1 as v from unnest(generate_date_array('2000-01-01', date_add('2000-01-01', interval {n} day))) as d"


def test_partitions_per_job_ctas(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/quotas#partitioned_tables:
    "Each job operation (query or load) can affect up to 4,000 partitions.
    BigQuery rejects any query or load job that attempts to modify more than 4,000 partitions." DAY and
    integer-range partitioning; NULL rows go to the __NULL__ partition."""
    ds = dataset()
    fidkit.run(bq, f"create table {ds}.ok partition by d as {DAYS.format(n=3999)}")
    assert bq.get_table(f"{ds}.ok").num_rows == 4000
    assert refused(bq, f"create table {ds}.day partition by d as {DAYS.format(n=4000)}") == too_many(4001)
    with_null = f"create table {ds}.nul partition by d as {DAYS.format(n=3999)} union all select null, 2"
    assert refused(bq, with_null) == too_many(4001)
    ranged = (
        "create table {ds}.{t} partition by range_bucket(x, generate_array(0, 10000, 1)) as "
        "select x from unnest(generate_array(1, {n})) as x"
    )
    fidkit.run(bq, ranged.format(ds=ds, t="r_ok", n=4000))
    assert bq.get_table(f"{ds}.r_ok").range_partitioning.field == "x"
    assert refused(bq, ranged.format(ds=ds, t="r_bad", n=4001)) == too_many(4001)
    for name in ("day", "nul", "r_bad"):
        with pytest.raises(exceptions.NotFound):
            bq.get_table(f"{ds}.{name}")


def test_partitions_per_job_dml_writes_nothing_when_refused(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/quotas#partitioned_tables:
    INSERT, DELETE, UPDATE and MERGE are query jobs; for DELETE/UPDATE the
    partitions are those of the rows the WHERE matches."""
    ds = dataset()
    fidkit.run(bq, f"create table {ds}.t partition by d as {DAYS.format(n=3999)}")
    fidkit.run(bq, f"insert into {ds}.t {DAYS.format(n=0)}")  # one more row, in an existing partition
    assert refused(
        bq, f"insert into {ds}.t select date_add(d, interval 1 day), 2 from {ds}.t union all select null, 3"
    ) == too_many(4001)
    fidkit.run(bq, f"insert into {ds}.t select date_add(d, interval 1 day), 2 from {ds}.t where d > '2000-01-01'")
    # 4,001 partitions now: 2000-01-01 .. 2000-01-01 + 4000 days
    assert refused(bq, f"delete from {ds}.t where true") == too_many(4001)
    assert refused(bq, f"update {ds}.t set v = 7 where v > 0") == too_many(4001)
    fidkit.run(bq, f"create table {ds}.src as select date '2000-01-01' as d, 5 as v")
    merge = f"merge {ds}.t as T using (select d, 9 as v from {ds}.t) as S on false when not matched then insert row"
    assert refused(bq, merge) == too_many(4001)
    counts = fidkit.run(bq, f"select count(*) as n, countif(v = 7) as sevens, countif(v = 9) as nines from {ds}.t")
    assert counts == [{"n": 8000, "sevens": 0, "nines": 0}]
    fidkit.run(bq, f"delete from {ds}.t where d > '2000-01-01'")
    assert fidkit.run(bq, f"select count(*) as n from {ds}.t") == [{"n": 2}]


def test_partitions_per_job_query_destination_and_load_jobs(bq: Any, dataset: Callable[..., str]) -> None:
    """https://cloud.google.com/bigquery/quotas#partitioned_tables:
    query jobs writing a destination table and load jobs are limited; a copy
    job copies a table whatever its number of partitions (the limit names query and load jobs only)."""
    ds = dataset()
    partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="d")
    for n, ok in ((3999, True), (4000, False)):
        config = bigquery.QueryJobConfig(destination=f"{PROJECT}.{ds}.dest_{n}", time_partitioning=partitioning)
        job = bq.query(DAYS.format(n=n), job_config=config, job_retry=None)
        if ok:
            job.result()
        else:
            with pytest.raises(exceptions.BadRequest) as caught:
                job.result()
            assert caught.value.errors[0]["message"] == too_many(4001)

    start = dt.date(2000, 1, 1)
    schema = [bigquery.SchemaField("d", "DATE"), bigquery.SchemaField("v", "INT64")]
    for n, ok in ((4000, True), (4001, False)):
        rows = [{"d": str(start + dt.timedelta(days=i)), "v": i} for i in range(n)]
        config = bigquery.LoadJobConfig(schema=schema, time_partitioning=partitioning)
        job = bq.load_table_from_json(rows, f"{ds}.load_{n}", job_config=config)
        if ok:
            job.result()
            assert bq.get_table(f"{ds}.load_{n}").num_rows == n
        else:
            with pytest.raises(exceptions.BadRequest) as caught:
                job.result()
            assert caught.value.errors[0]["message"] == too_many(4001, "load job")
            with pytest.raises(exceptions.NotFound):
                bq.get_table(f"{ds}.load_{n}")

    fidkit.run(bq, f"insert into {ds}.load_4000 (d, v) values ('2030-01-01', -1)")  # 4,001 partitions
    bq.copy_table(f"{ds}.load_4000", f"{ds}.copied").result()
    fidkit.run(bq, f"create table {ds}.cloned clone {ds}.load_4000")
    assert bq.get_table(f"{ds}.copied").num_rows == bq.get_table(f"{ds}.cloned").num_rows == 4001


# --------------------------------------------------------------------------------------------
# Query parameters


def test_at_most_10000_query_parameters(bq: Any) -> None:
    """https://cloud.google.com/bigquery/quotas#query_jobs:
    "Maximum number of GoogleSQL query parameters: 10,000 parameters. A GoogleSQL
    query can have up to 10,000 parameters." The request is refused with a 400."""

    def config(n: int) -> bigquery.QueryJobConfig:
        return bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(f"p{i}", "INT64", i) for i in range(n)]
        )

    rows = list(bq.query("select @p0 + @p9999 as x", job_config=config(10_000), job_retry=None).result())
    assert rows[0]["x"] == 9999
    with pytest.raises(exceptions.BadRequest) as caught:
        bq.query("select @p0 + @p10000 as x", job_config=config(10_001), job_retry=None).result()
    assert "10,000 parameters" in caught.value.message
    assert reason_of(caught.value) == "invalid"
