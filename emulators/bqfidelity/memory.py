"""The emulator's DuckDB caches are bounded: its memory does not grow with every job it has run.

This module changes no answer of the emulator, only how much memory it keeps.

What local-bigquery 0.4.0 does: one DuckDB connection (``engine.database._connect``) with DuckDB's
default ``memory_limit``, 80 % of the machine's RAM. DuckDB keeps two caches in that budget and
evicts from them only when the budget is reached:
- DuckLake's catalog of each schema version: every CREATE, DROP, ALTER or RENAME of a table starts a
  new schema version, and the next statement that names a table of the project loads the whole
  catalog of the project for it (every table with its columns) and caches it (``duckdb_memory()``
  tag ``OBJECT_CACHE``). Measured (2026-11-30, DuckDB 1.5.5, DuckLake catalog of 1,000 tables of 5
  columns): 5.8 MB more resident memory for each DDL statement; versions older than the current one
  are only read again by time travel.
- The contents of the Parquet files DuckLake reads (``enable_external_file_cache``).
A 1,000-table sync (about 4,000 jobs, most of them DDL) ended with 13.8 GB resident in the emulator;
on a machine shared with other test runs that memory is taken from them.

What this module does: it sets the connection's ``memory_limit`` (``BQFIDELITY_MEMORY_LIMIT``,
default ``4GB``; ``off`` keeps DuckDB's default) so that DuckDB evicts the least recently used
entries of these caches (old schema versions first) instead. Query execution spills to DuckDB's
temporary directory past the limit, as it does past the default one (the 100-object bench_scale run
ends at 0.75 GB resident). The limit bounds DuckDB's caches only: what the process keeps besides
them still grows with the jobs run (5.0 GB resident after 1,000 prod objects and 1,170 sync jobs).

BigQuery's resources do not depend on how many jobs ran before; neither should the test bed's memory.
"""

from __future__ import annotations

import functools
import logging
import os
import re

log = logging.getLogger("bqfidelity.memory")

DEFAULT_LIMIT = "4GB"
_LIMIT = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)


def limit() -> str | None:
    """The memory limit to set (None: keep DuckDB's default); refuses a value DuckDB would misread."""
    value = os.environ.get("BQFIDELITY_MEMORY_LIMIT", DEFAULT_LIMIT).strip()
    if value.lower() in ("off", "default", ""):
        return None
    if not _LIMIT.match(value):
        raise ValueError(f"BQFIDELITY_MEMORY_LIMIT={value!r} is not a memory size: use e.g. 4GB, 2048MB, or off")
    return value.replace(" ", "")


def install() -> None:
    """Wrap ``engine.database._connect`` (cached: one connection a process) to set the limit."""
    from local_bigquery.engine import database

    value = limit()
    if value is None:
        log.info("DuckDB memory_limit left at its default (BQFIDELITY_MEMORY_LIMIT=off)")
        return
    original = database._connect.__wrapped__

    @functools.cache
    @functools.wraps(original)
    def _connect():  # duckdb.DuckDBPyConnection
        con = original()
        con.execute(f"SET memory_limit = '{value}'")
        return con

    database._connect = _connect
