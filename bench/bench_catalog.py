"""Probe of the emulator's per-catalog costs (issue 26, the test bed at scale); prints figures, changes nothing.

    .venv-emulators/bin/python bench/bench_catalog.py                 # both parts
    .venv-emulators/bin/python bench/bench_catalog.py --part ddl      # DuckLake only
    .venv-emulators/bin/python bench/bench_catalog.py --part partitions --without catalog

Runs in the emulator's own Python (re-executes itself there with the repo's DuckDB extensions when started
from another interpreter), in process, on a temporary data directory:

- ``ddl``: DuckDB + DuckLake as the emulator attaches them: a CTAS of 8 columns plus a count, 30 times,
  next to 200 live tables, 2,000 live tables, and 200 live + 1,800 dropped tables (the neighbours are
  created in one transaction, so the setup itself does not rebuild the catalog per table). Prints the
  milliseconds per CTAS+count and the time of DuckLake's catalog query (``BuildCatalogForSnapshot``'s
  table query, run on the metadata database) at each size.
- ``partitions``: local-bigquery with the fidelity layer (``--without MODULE`` leaves modules out): the
  measured dataset holds 5 HOUR tables of ``--hours`` hourly partitions (default 4,416: two quarters),
  every other dataset 1 HOUR table and 2 small tables (built in one CTAS each: the ``rules`` module, which
  limits a job to 4,000 partitions, and the analyzer are left out); times the translation and run of
  ``INFORMATION_SCHEMA.PARTITIONS`` and ``.TABLES`` of the measured dataset at 5 and at 50 datasets.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EMULATOR_PYTHON = REPO / ".venv-emulators" / "bin" / "python"


def _reexec() -> None:
    if Path(sys.prefix).resolve() == (REPO / ".venv-emulators").resolve() or not EMULATOR_PYTHON.exists():
        return
    env = {**os.environ, "HOME": str(REPO / ".devstack" / "home"), "PYTHONPATH": str(REPO / "emulators")}
    env.pop("VIRTUAL_ENV", None)
    raise SystemExit(subprocess.call([str(EMULATOR_PYTHON), __file__, *sys.argv[1:]], env=env))


# ------------------------------------------------------------------------------------------- ddl


def _catalog_query_ms(con, meta: str) -> float:
    [(snap,)] = con.execute(f"SELECT max(snapshot_id) FROM {meta}.ducklake_snapshot").fetchall()
    sql = (
        f"SELECT tbl.table_id, table_name, col.column_id, column_name, column_type FROM {meta}.ducklake_table tbl "
        f"LEFT JOIN {meta}.ducklake_column col USING (table_id) WHERE {snap} >= tbl.begin_snapshot "
        f"AND ({snap} < tbl.end_snapshot OR tbl.end_snapshot IS NULL) AND (({snap} >= col.begin_snapshot "
        f"AND ({snap} < col.end_snapshot OR col.end_snapshot IS NULL)) OR column_id IS NULL) ORDER BY table_id"
    )
    start = time.perf_counter()
    for _ in range(5):
        con.execute(sql).fetchall()
    return (time.perf_counter() - start) / 5 * 1000


def ddl_case(root: Path, live: int, dropped: int, repeats: int = 30) -> tuple[float, float]:
    import duckdb

    path = root / f"ddl_{live}_{dropped}"
    path.mkdir()
    con = duckdb.connect(config={"TimeZone": "UTC"})
    con.execute(f"ATTACH 'ducklake:{path}/p.ducklake' AS p (DATA_PATH '{path}/data/', DATA_INLINING_ROW_LIMIT 0)")
    con.execute("CREATE SCHEMA p.a; CREATE SCHEMA p.b")
    columns = ", ".join(f"c{i} INT" for i in range(8))
    con.execute("BEGIN")
    for i in range(live + dropped):
        con.execute(f"CREATE TABLE p.{'ab'[i % 2]}.t{i} ({columns})")
    con.execute("COMMIT")
    if dropped:
        con.execute("BEGIN")
        for i in range(live, live + dropped):
            con.execute(f"DROP TABLE p.{'ab'[i % 2]}.t{i}")
        con.execute("COMMIT")
    con.execute("SELECT count(*) FROM p.a.t0").fetchall()
    start = time.perf_counter()
    for k in range(repeats):
        con.execute(
            f"CREATE TABLE p.a.x{k} AS SELECT range AS c0, 1 c1, 2 c2, 3 c3, 4 c4, 5 c5, 6 c6, 7 c7 FROM range(10)"
        )
        con.execute(f"SELECT count(*) FROM p.a.x{k}").fetchall()
    per = (time.perf_counter() - start) / repeats * 1000
    query = _catalog_query_ms(con, "__ducklake_metadata_p")
    con.close()
    return per, query


def run_ddl(root: Path) -> None:
    print("DuckLake: CTAS (8 columns) + count, 30 times, next to N tables")
    print("| live | dropped | ms per CTAS+count | catalog table query ms |")
    print("|---:|---:|---:|---:|")
    for live, dropped in ((200, 0), (2000, 0), (200, 1800)):
        per, query = ddl_case(root, live, dropped)
        print(f"| {live:,} | {dropped:,} | {per:.0f} | {query:.1f} |", flush=True)


# ------------------------------------------------------------------------------------ partitions

PROJECT = "bench-catalog"


def _emulator(data_dir: Path, without: list[str]):
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "Unsupported property" of every CTAS translated
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["DEFAULT_PROJECT_ID"] = PROJECT
    import bqfidelity

    bqfidelity.MODULES = tuple(m for m in bqfidelity.MODULES if m not in {"analyzer", "latency", "rules", *without})
    if "catalog" not in bqfidelity.MODULES and "catalog" not in without:
        bqfidelity.MODULES = (*bqfidelity.MODULES, "catalog")
    applied = bqfidelity.install()
    from local_bigquery.jobs import query

    return query, applied


def run_partitions(root: Path, without: list[str], hours: int, sizes: list[int]) -> None:
    query, applied = _emulator(root / "bq", without)
    from local_bigquery.engine import database

    print(f"INFORMATION_SCHEMA of one dataset (5 HOUR tables of {hours:,} partitions); fidelity modules: {applied}")
    print("| datasets | PARTITIONS rows | PARTITIONS s | TABLES s |")
    print("|---:|---:|---:|---:|")
    made = 0
    hour_table = (
        "CREATE TABLE {ds}.{t} (ts TIMESTAMP, n INT64) PARTITION BY TIMESTAMP_TRUNC(ts, HOUR) AS "
        "SELECT ts, 1 AS n FROM UNNEST(GENERATE_TIMESTAMP_ARRAY('2026-05-21 00:00:00', "
        f"TIMESTAMP_ADD('2026-05-21 00:00:00', INTERVAL {hours - 1} HOUR), INTERVAL 1 HOUR)) AS ts"
    )
    for size in sizes:
        for i in range(made, size):
            ds = f"ds{i}"
            query.run_ddl(PROJECT, f"CREATE SCHEMA {ds}")
            for t in [f"h{k}" for k in range(5 if i == 0 else 1)]:
                query.run_ddl(PROJECT, hour_table.format(ds=ds, t=t))
            if i:
                query.run_ddl(PROJECT, f"CREATE TABLE {ds}.d (d DATE) PARTITION BY d AS SELECT CURRENT_DATE() AS d")
                query.run_ddl(PROJECT, f"CREATE TABLE {ds}.u (s STRING) AS SELECT 'x' AS s")
        made = size
        figures = []
        for view, columns in (
            ("PARTITIONS", "table_name, partition_id, total_rows"),
            ("TABLES", "table_name, table_type, UNIX_MICROS(creation_time) AS created"),
        ):
            start = time.perf_counter()
            sql = query.translate_view(PROJECT, "ds0", f"SELECT {columns} FROM ds0.INFORMATION_SCHEMA.{view}")
            rows = database.fetch(sql)
            figures.append((len(rows), time.perf_counter() - start))
        print(f"| {size} | {figures[0][0]:,} | {figures[0][1]:.2f} | {figures[1][1]:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("ddl", "partitions", "all"), default="all")
    parser.add_argument("--without", nargs="*", default=[], help="fidelity modules left out (e.g. catalog)")
    parser.add_argument("--hours", type=int, default=4416)
    parser.add_argument("--datasets", type=int, nargs="+", default=[5, 50])
    args = parser.parse_args()
    _reexec()
    root = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    try:
        if args.part in ("ddl", "all"):
            run_ddl(root)
        if args.part in ("partitions", "all"):
            run_partitions(root, args.without, args.hours, sorted(args.datasets))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
