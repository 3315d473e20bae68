"""The schema of a table as of T, on the emulator as on BigQuery.

https://cloud.google.com/bigquery/docs/access-historical-data: FOR SYSTEM_TIME AS OF "references the
version of the table that was current at that timestamp" -- its columns included: a column added
later is not there, and a clone as of T has the columns of T.
https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobStatistics2 (schema): "The schema of
the results. Present only for successful dry run of non-legacy SQL queries." envsync reads prod's
schema as of T from such a dry run (envsync.bigquery.timetravel.schema_as_of).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import fidkit

PROJECT = "envsync-demo"


def test_a_dry_run_as_of_t_returns_the_columns_of_t_and_a_clone_as_of_t_has_them(
    bq: Any, dataset: Callable[..., str]
) -> None:
    from envsync.bigquery.timetravel import schema_as_of
    from envsync.core.guard import TableRef

    ds = dataset()
    fidkit.run(bq, f"create table {ds}.t (id int64 not null, name string)")
    fidkit.run(bq, f"insert into {ds}.t (id, name) values (1, 'a')")
    time.sleep(1.1)
    cut = dt.datetime.now(dt.UTC)
    time.sleep(1.1)
    fidkit.run(bq, f"alter table {ds}.t add column extra string")
    fidkit.run(bq, f"insert into {ds}.t (id, name, extra) values (2, 'b', 'x')")
    assert [f.name for f in bq.get_table(f"{ds}.t").schema] == ["id", "name", "extra"]

    then = schema_as_of(bq, TableRef(PROJECT, ds, "t"), cut, keep_all="true", location="US")
    assert [(f["name"], f["type"]) for f in then] == [("id", "INTEGER"), ("name", "STRING")]
    now = schema_as_of(bq, TableRef(PROJECT, ds, "t"), dt.datetime.now(dt.UTC), keep_all="true", location="US")
    assert [f["name"] for f in now] == ["id", "name", "extra"]

    fidkit.run(bq, f"create table {ds}.c clone {ds}.t for system_time as of @cut", cut=cut)
    assert [(f.name, f.mode) for f in bq.get_table(f"{ds}.c").schema] == [("id", "REQUIRED"), ("name", "NULLABLE")]
    assert fidkit.run(bq, f"select * from {ds}.c") == [{"id": 1, "name": "a"}]
