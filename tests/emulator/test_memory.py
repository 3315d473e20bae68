"""The emulator's DuckDB caches stay within a memory limit and answer as before (emulators/bqfidelity/memory.py).

BigQuery's resources do not grow with the jobs a project has run; local-bigquery 0.4.0 kept DuckLake's
catalog of every schema version (one a DDL statement) until DuckDB's default limit, 80 % of the RAM.
These tests run in the emulator's own Python: the limit is set on the emulator's connection, a bad
setting is refused with the value named, and with a small limit a run of DDL statements over a
200-table catalog keeps DuckDB's object cache under it while every answer stays the same as with
DuckDB's default.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from fidkit import in_emulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]


_SETTING = textwrap.dedent(
    """
    import os, sys, tempfile
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="bqfidelity-memory-")
    os.environ["DEFAULT_PROJECT_ID"] = "envsync-demo"
    from bqfidelity import memory
    try:
        memory.install()
    except ValueError as error:
        print("refused:", error)
        sys.exit(0)
    from local_bigquery.engine import database as db
    print("limit:", db.connection().execute("SELECT current_setting('memory_limit')").fetchone()[0])
    db.reset()
    print("after reset:", db.connection().execute("SELECT current_setting('memory_limit')").fetchone()[0])
    """
)

_EVICTION = textwrap.dedent(
    """
    import os, tempfile
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="bqfidelity-memory-")
    os.environ["DEFAULT_PROJECT_ID"] = "envsync-demo"
    from bqfidelity import memory
    if os.environ.get("BQFIDELITY_MEMORY_LIMIT") != "off":
        memory.install()
    from local_bigquery.engine import database as db
    con = db.connection()
    P = '"envsync-demo"."s"'
    con.execute(f"CREATE SCHEMA {P}")
    for i in range(120):
        con.execute(f"CREATE TABLE {P}.t{i} (a INT, b DATE, c VARCHAR, d TIMESTAMP, e DOUBLE, f BOOLEAN)")
    answers, peak = [], 0
    for j in range(60):
        cur = con.cursor()
        cur.execute(f"CREATE OR REPLACE TABLE {P}.x{j % 7} AS SELECT {j} AS a, 'v{j}' AS b")
        cur.execute(f"INSERT INTO {P}.t{j} VALUES ({j}, DATE '2026-11-01', 'r', NULL, 1.5, true)")
        answers.append(cur.execute(
            f"SELECT (SELECT a FROM {P}.x{j % 7}), (SELECT count(*) FROM {P}.t{j}), "
            f"(SELECT count(*) FROM duckdb_tables() WHERE database_name = 'envsync-demo')").fetchone())
        cur.close()
        (used,) = con.execute(
            "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'OBJECT_CACHE'").fetchone()
        peak = max(peak, used)
    print("answers:", answers)
    print("object cache peak MB:", peak // 2**20)
    """
)


def _run(code: str, tmp_path: Path, limit: str | None) -> str:
    done = in_emulator(code, tmp_path, {"BQFIDELITY_MEMORY_LIMIT": limit})
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout


def _line(output: str, key: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith(key + ":"))


def test_the_emulator_connection_gets_the_limit_also_after_a_reset(tmp_path: Path) -> None:
    default = _run(_SETTING, tmp_path, None)
    assert _line(default, "limit") == "3.7 GiB"  # 4GB, as DuckDB prints it
    assert _line(default, "after reset") == "3.7 GiB"
    assert _line(_run(_SETTING, tmp_path, "512MB"), "limit") == "488.2 MiB"


def test_off_keeps_duckdbs_default_and_a_bad_value_is_refused_with_its_name(tmp_path: Path) -> None:
    assert _line(_run(_SETTING, tmp_path, "off"), "limit") not in ("3.7 GiB", "488.2 MiB")
    refused = _line(_run(_SETTING, tmp_path, "lots"), "refused")
    assert "BQFIDELITY_MEMORY_LIMIT='lots'" in refused and "4GB" in refused


def test_ddl_over_a_large_catalog_stays_under_the_limit_with_the_same_answers(tmp_path: Path) -> None:
    """60 schema versions of a 127-table DuckLake catalog: the object cache is evicted, answers unchanged.
    (Measured 2026-11-30: about 52 MB of object cache without a limit, 11 MB with 32MB.)"""
    unbounded = _run(_EVICTION, tmp_path, "off")
    bounded = _run(_EVICTION, tmp_path, "32MB")
    assert _line(bounded, "answers") == _line(unbounded, "answers")
    assert int(_line(bounded, "object cache peak MB")) <= 32
    assert int(_line(unbounded, "object cache peak MB")) > 32  # without the limit the cache only grows
