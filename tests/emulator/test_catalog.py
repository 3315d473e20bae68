"""INFORMATION_SCHEMA views answer the same rows at any size, without a VALUES cell per row (bqfidelity.catalog).

BigQuery: INFORMATION_SCHEMA views are read-only views of a dataset's or region's metadata
(https://cloud.google.com/bigquery/docs/information-schema-intro); PARTITIONS has one row per partition
with its ``partition_id`` (``YYYYMMDDHH`` for HOUR partitioning, ``__NULL__`` for NULL values) and
``total_rows`` (https://cloud.google.com/bigquery/docs/information-schema-partitions).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fidkit import in_emulator, run

P = "envsync-demo"


def test_partitions_of_an_hour_table_list_every_hour_and_the_null_partition(
    bq: Any, dataset: Callable[..., str]
) -> None:
    ds = dataset()
    run(
        bq,
        f"CREATE TABLE `{P}.{ds}.h` (ts TIMESTAMP, n INT64) PARTITION BY TIMESTAMP_TRUNC(ts, HOUR) AS "
        "SELECT ts, 1 AS n FROM UNNEST(GENERATE_TIMESTAMP_ARRAY('2026-05-21 00:00:00', "
        "'2026-05-23 23:00:00', INTERVAL 1 HOUR)) AS ts UNION ALL SELECT NULL, 2 UNION ALL SELECT NULL, 3",
    )
    run(bq, f'CREATE TABLE `{P}.{ds}.u` (s STRING) AS SELECT "it\'s" AS s')
    rows = run(
        bq,
        f"SELECT table_name, partition_id, total_rows FROM `{P}.{ds}.INFORMATION_SCHEMA.PARTITIONS` "
        "ORDER BY table_name, partition_id",
    )
    hourly = [r for r in rows if r["table_name"] == "h"]
    assert len(hourly) == 73
    assert hourly[0] == {"table_name": "h", "partition_id": "2026052100", "total_rows": 1}
    assert hourly[-1] == {"table_name": "h", "partition_id": "__NULL__", "total_rows": 2}
    assert [r for r in rows if r["table_name"] == "u"] == [{"table_name": "u", "partition_id": None, "total_rows": 1}]
    tables = run(
        bq, f"SELECT table_name, table_type, creation_time FROM `{P}.{ds}.INFORMATION_SCHEMA.TABLES` ORDER BY 1"
    )
    assert [(r["table_name"], r["table_type"]) for r in tables] == [("h", "BASE TABLE"), ("u", "BASE TABLE")]
    assert all(r["creation_time"] is not None for r in tables)


_EQUIVALENCE = textwrap.dedent(
    """
    import logging, os, tempfile
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="bqfidelity-catalog-")
    os.environ["DEFAULT_PROJECT_ID"] = "envsync-demo"
    from local_bigquery.engine import database as db
    from local_bigquery.jobs import query
    from local_bigquery.sql.rules import information_schema as infos
    from bqfidelity import catalog

    P = "envsync-demo"
    for sql in [
        "CREATE SCHEMA ds",
        "CREATE SCHEMA other",
        "CREATE TABLE ds.h (ts TIMESTAMP, n INT64) PARTITION BY TIMESTAMP_TRUNC(ts, HOUR) "
        "OPTIONS (description = 'hourly \\"quoted\\" ü') AS "
        "SELECT ts, 1 AS n FROM UNNEST(GENERATE_TIMESTAMP_ARRAY('2026-05-21 00:00:00', "
        "'2026-05-30 23:00:00', INTERVAL 1 HOUR)) AS ts UNION ALL SELECT NULL, 2",
        "CREATE TABLE ds.d (d DATE, x FLOAT64, s STRUCT<a INT64, b ARRAY<STRING>>) PARTITION BY d "
        "CLUSTER BY x OPTIONS (require_partition_filter = TRUE) AS SELECT CURRENT_DATE() AS d, 1.5 AS x, "
        "STRUCT(1 AS a, ['x'] AS b) AS s",
        "CREATE TABLE ds.n_n (s STRING NOT NULL) AS SELECT 'x' AS s",
        "CREATE VIEW ds.v AS SELECT n FROM ds.h",
        "CREATE TABLE other.o (a INT64)",
    ]:
        query.run_ddl(P, sql)
    views = ["PARTITIONS", "TABLES", "COLUMNS", "COLUMN_FIELD_PATHS", "TABLE_OPTIONS", "VIEWS",
             "TABLE_STORAGE", "SCHEMATA", "SCHEMATA_OPTIONS", "ROUTINES", "TABLE_CONSTRAINTS"]
    original = infos._values
    patched = catalog._values(original)
    diffs, json_form = [], []
    for view in views:
        for scope in ("ds", "region-us"):
            bq_sql = f"SELECT * FROM `{scope}`.INFORMATION_SCHEMA.{view}"
            answers = []
            for values in (original, patched):
                infos._values = values
                sql = query.translate_view(P, "ds", bq_sql)
                if values is patched and "unnest(CAST(json(" in sql:
                    json_form.append((view, scope))
                types = db.fetch(f"SELECT typeof(COLUMNS(*)) FROM ({sql}) LIMIT 1")
                rows = db.fetch(f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM ({sql})")
                rows = [r for r in rows if "local" not in r]  # the default dataset: made anew at each query
                answers.append((types, rows))
            if answers[0] != answers[1]:
                diffs.append((view, scope, answers[0][0], answers[1][0], answers[0][1][:3], answers[1][1][:3]))
    infos._values = original
    assert not diffs, diffs
    assert ("PARTITIONS", "ds") in json_form and ("TABLES", "ds") in json_form, json_form
    print("identical", len(json_form))
    """
)


def test_information_schema_rows_and_types_are_local_bigquerys_own(tmp_path: Path) -> None:
    """In the emulator's Python: each view's rows (same order) and column types, with the JSON form and with
    local-bigquery's VALUES list, on tables with HOUR/DAY partitions, a NULL partition, quotes, non-ASCII
    text, floats, nested columns, a view and a second dataset."""
    done = in_emulator(_EQUIVALENCE, tmp_path)
    assert done.returncode == 0 and "identical" in done.stdout, done.stdout + done.stderr[-3000:]
