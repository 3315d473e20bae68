"""Fidelity layer for the local BigQuery emulator (local-bigquery 0.4.0): BigQuery's table rules and metadata.

local-bigquery translates BigQuery SQL to DuckDB. It gets the grammar right but not every rule and
piece of metadata that real BigQuery keeps or enforces. envsync is only ever run against real
BigQuery, so the local test bed must answer as BigQuery would; this package patches the emulator,
in its own process, before it serves. It is started by ``python -m bqfidelity serve ...`` (the
same arguments as ``local-bigquery serve``), which is what ``envsync.dev.devstack`` and the compose
stack run. Nothing here is imported by envsync itself.

Each module patches one family of behaviours and names the BigQuery documentation it follows:
- ``lookups``: table lookups read the one object they name (DuckLake metadata), not every table of
  the catalog, so the emulator's cost per request does not grow with the catalog; INFORMATION_SCHEMA.TABLES
  comes from the table listing; a module missing from the environment is not searched for on every
  result (answers unchanged).
- ``memory``: the emulator's DuckDB caches (DuckLake's catalog of every schema version, Parquet
  files) are bounded by a memory limit, so its memory does not grow with the jobs run (answers unchanged).
- ``catalog``: an INFORMATION_SCHEMA view's rows reach DuckDB as one JSON literal instead of a VALUES
  list of every cell walked by every translation rule (PARTITIONS of 22,000 rows: 9 s → 0.4 s; answers
  unchanged).
- ``metadata``: CLONE / SNAPSHOT / copy jobs keep the source's schema (modes, descriptions),
  partitioning, clustering and ``require_partition_filter``; clone/snapshot chain depth.
- ``rules``: partition filters, time-travel bounds, ``max_time_travel_hours``, partitions per job,
  parameters per query.
- ``columns``: a column's COLLATE and DEFAULT in CREATE TABLE are kept in its schema.
- ``structs``: ``STRUCT(col, ...)`` names its fields after the columns.
- ``aggregates``: ``ARRAY_AGG(... IGNORE NULLS ... LIMIT n)`` drops the NULLs before the limit.
- ``storage``: load jobs expand wildcard source URIs on the GCS emulator.
- ``conflicts``: a statement idempotent by its own words (CREATE ... IF NOT EXISTS, DROP ... IF EXISTS,
  ADD / DROP COLUMN IF [NOT] EXISTS) that loses a race to another job's commit (DuckLake's "Transaction
  conflict") is run again and finds the other job's result, as on BigQuery; other conflicts stay errors.
- ``analyzer``: every query is analyzed by GoogleSQL (ZetaSQL) against the live catalog first.
- ``latency``: only with a latency file (``BQFIDELITY_LATENCY_FILE``, ``serve --latency-file PATH``,
  ``devstack.Stack.latency_file``): every job stays RUNNING for the file's number of seconds (re-read at
  every job; missing, empty or 0: none) before it runs, ``jobs.insert`` answers it RUNNING, and
  ``jobs.cancel`` meanwhile ends it DONE with reason ``stopped``, having run nothing: as BigQuery's
  asynchronous jobs, so that tests can cancel a job or kill its client while the job still runs.
- ``ratelimits``: BigQuery's rate limits at its figures (API requests per user per method, table and
  dataset metadata updates per 10 s, the query queue, concurrent snapshot jobs), refused with its
  errors; ``BQFIDELITY_RATE_LIMITS`` (``devstack.Stack.rate_limits``) scales them down or turns them off.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger("bqfidelity")

# Modules with an ``install()`` that patches local-bigquery; applied in this order.
MODULES = (
    "lookups",
    "memory",
    "catalog",
    "metadata",
    "rules",
    "columns",
    "structs",
    "aggregates",
    "storage",
    "conflicts",  # before ratelimits: a statement run again is counted once
    "analyzer",
    "latency",
    "ratelimits",  # after latency: its job wrapper is the outermost (a held job is running, not queued)
)

_installed = False


def install() -> list[str]:
    """Apply every patch once; returns the names of the modules applied."""
    global _installed
    applied: list[str] = []
    if _installed:
        return applied
    for name in MODULES:
        try:
            module = importlib.import_module(f"bqfidelity.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"bqfidelity.{name}":
                continue
            raise
        module.install()
        applied.append(name)
    _installed = True
    return applied
