"""Every query job is analyzed by GoogleSQL (ZetaSQL) against the live catalog before it runs.

BigQuery parses and resolves each statement with GoogleSQL before executing anything: an unknown
column, a wrong function signature, a DATE compared with a TIMESTAMP or an undeclared query parameter
fails the job with a 400 ``invalidQuery`` error. local-bigquery translates SQL to DuckDB, which
accepts much that BigQuery refuses (and refuses some of it differently). With this module each
statement a query job runs, dry runs included, goes through ZetaSQL first (``bqfidelity.zsql``),
with the tables it names loaded from the emulator's catalog (nested and repeated fields included),
the job's declared query parameters and its default dataset. A refusal is answered as BigQuery
does: the job fails with ``{"reason": "invalidQuery", "location": "query", "message": <ZetaSQL's
message>}``, and a dry run (synchronous) with HTTP 400.

Statements are analyzed one at a time, when the script interpreter reaches them (hook:
``local_bigquery.sql.script.Interpreter.sql``), so a statement that reads a table created earlier in
the same script sees it. The job's configuration (parameters, legacy SQL) reaches the interpreter in
a context variable set by the wrapped ``runner._query`` (jobs) and ``runner._dry_run`` (dry runs);
SQL the emulator runs for itself (copy jobs, views created through the tables API) is not a query
job's and is not analyzed. Not analyzed, and counted apart (``PASSED``): statement kinds ZetaSQL is
not given enough to judge. A statement that names a table the emulator does not have is left to the
emulator, which answers ``notFound`` as BigQuery does (counted as ``not_found``).

Settings (environment of the emulator process):
- ``BQFIDELITY_CACHE``: directory of the compiled WebAssembly module (``envsync.dev.devstack`` sets
  ``<root>/zetasql``); default ``~/.cache/bqfidelity``. Compiling takes ~25 s and ~1 GB once; with
  the cache, the analyzer is ready in well under a second. It is loaded on the first query.
- ``BQFIDELITY_STATS``: a JSON file rewritten after every statement with the counters (devstack:
  ``<root>/run/analyzer.json``; the test run prints them).
- ``BQFIDELITY_ANALYZER=off``: do not analyze (for debugging the emulator itself).
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("bqfidelity.analyzer")

# Statement kinds run without analysis, and why (the only ones; see README "GoogleSQL analyzer").
PASSED = {
    "table_function": "CREATE TABLE FUNCTION: local-bigquery rewrites its text before it reaches the hook",
    "execute_immediate_using": "EXECUTE IMMEDIATE ... USING: the USING values' types are not declared to the analyzer",
    "temp_function_call": "a call of a temporary function created earlier in the same script",
    "routine_call": "a call of a persistent function or table function (dataset.name): routines are not in the catalog",
    "legacy_sql": "legacy SQL jobs (useLegacySql): not GoogleSQL",
    "unsupported_type": "a query parameter or variable of a type the analyzer cannot be given",
    "analyzer_error": "the analyzer itself failed (logged; it is reloaded for the next statement)",
}

_job: contextvars.ContextVar[_Job | None] = contextvars.ContextVar("bqfidelity_analyzer_job", default=None)
_FUNCTION_NOT_FOUND = re.compile(r"^Function not found: (`[^`]+`|[\w.]+)")
_ROUTINE_NOT_FOUND = re.compile(r"^(?:Function|Table-valued function) not found: `?[\w-]+(?:\.[\w-]+)+`?")


@dataclass
class _Job:
    """What the analysis of a job's statements needs from its configuration."""

    parameters: dict[str, Any] | None  # named: name -> TypeProto
    positional: list[Any] | None  # positional: [TypeProto]
    legacy: bool = False
    unsupported: str | None = None
    temp_functions: set[str] = field(default_factory=set)


class Stats:
    """Counters of one emulator, written as JSON to BQFIDELITY_STATS after each statement; a restarted
    emulator (a stack whose virtual clock moved) goes on from the counts the file holds."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.accepted = 0
        self.refused = 0
        self.not_found = 0
        self.passed: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.distinct: set[str] = set()
        self._distinct_sorted: list[str] = []  # the same hashes, kept sorted as they arrive (see _write)
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # CPU time of the analyzing thread: what a statement costs on a quiet machine
        self.parts: Counter[str] = Counter()  # seconds of accepted statements by step
        self.refusals: list[dict[str, str]] = []
        self.load: dict[str, Any] = {}
        self._resume()

    def _resume(self) -> None:
        """Start from the counts an earlier process of this emulator left in the file, if any."""
        try:
            data = json.loads(self.path.read_text()) if self.path is not None else None
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or "totals" not in data:
            return
        self.accepted, self.refused, self.not_found = data["accepted"], data["refused"], data["not_found"]
        self.passed.update(data["passed"])
        self.kinds.update(data["kinds"])
        self._distinct_sorted = sorted(data["distinct"])
        self.distinct = set(self._distinct_sorted)
        self.seconds, self.cpu_seconds = data["totals"]["seconds"], data["totals"]["cpu_seconds"]
        self.parts.update(data["totals"]["step_seconds"])
        self.refusals = data["refusals"]

    def record(
        self,
        sql: str,
        outcome: str,
        seconds: float = 0.0,
        kind: str = "",
        message: str = "",
        parts: dict[str, float] | None = None,
        cpu_seconds: float = 0.0,
    ) -> None:
        with self.lock:
            self.parts.update(parts or {})
            if outcome in ("accepted", "refused"):
                digest = hashlib.sha256(sql.strip().encode()).hexdigest()[:16]
                if digest not in self.distinct:
                    self.distinct.add(digest)
                    bisect.insort(self._distinct_sorted, digest)
                self.seconds += seconds
                self.cpu_seconds += cpu_seconds
            if outcome == "accepted":
                self.accepted += 1
                self.kinds[kind] += 1
            elif outcome == "refused":
                self.refused += 1
                self.refusals = [*self.refusals[-49:], {"message": message, "sql": sql.strip()[:500]}]
            elif outcome == "not_found":
                self.not_found += 1
            else:
                self.passed[outcome] += 1
            self._write()

    def as_dict(self) -> dict[str, Any]:
        analyzed = self.accepted + self.refused
        return {
            "analyzed": analyzed,
            "accepted": self.accepted,
            "refused": self.refused,
            "not_found": self.not_found,
            "passed": dict(self.passed),
            "kinds": dict(self.kinds),
            "distinct": list(self._distinct_sorted),
            "ms_per_statement": round(1000 * self.seconds / analyzed, 2) if analyzed else None,
            "cpu_ms_per_statement": round(1000 * self.cpu_seconds / analyzed, 2) if analyzed else None,
            "ms_by_step": {k: round(1000 * v / self.accepted, 2) for k, v in self.parts.items()}
            if self.accepted
            else {},
            "load": self.load,
            "refusals": self.refusals,
            "totals": {"seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "step_seconds": dict(self.parts)},
        }

    def _encoded(self) -> str:
        """The counters as JSON: indented, with the ``distinct`` hashes on one line at the end.

        The file is rewritten after every statement and ``distinct`` grows with every new statement
        the emulator runs (thousands in a long run): ``json.dumps(..., indent=1)`` runs Python's own
        encoder over every item, 120 ms a write at 15,000 hashes (2026-11-30), under the lock every
        statement takes. The list alone goes through the C encoder (no indent) and is kept sorted
        as it grows, so a write stays about a millisecond; the JSON read back is the same.
        """
        data = self.as_dict()
        distinct = data.pop("distinct")
        head = json.dumps(data, indent=1)
        return f'{head[:-2]},\n "distinct": {json.dumps(distinct)}\n}}\n'

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(self._encoded())
            tmp.replace(self.path)
        except OSError as error:  # counters must never fail a job
            log.warning("could not write %s: %s", self.path, error)


_stats = Stats(Path(os.environ["BQFIDELITY_STATS"]) if os.environ.get("BQFIDELITY_STATS") else None)
_analyzer = None
_analyzer_lock = threading.Lock()


def cache_dir() -> Path:
    configured = os.environ.get("BQFIDELITY_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "bqfidelity"


def analyzer():  # GoogleSQL, imported lazily
    """The process's GoogleSQL analyzer, loaded on first use (from the cache, or compiled into it)."""
    global _analyzer
    if _analyzer is None:
        with _analyzer_lock:
            if _analyzer is None:
                from bqfidelity.zsql.googlesql import GoogleSQL

                instance = GoogleSQL(cache_dir())
                engine = instance.engine
                _stats.load = {
                    "module": engine.loaded_from,
                    "module_seconds": round(engine.load_seconds, 2),
                    "ready_seconds": round(instance.start_seconds, 2),
                }
                log.info(
                    "GoogleSQL analyzer ready in %.2f s (module %s in %.2f s)",
                    instance.start_seconds,
                    engine.loaded_from,
                    engine.load_seconds,
                )
                _analyzer = instance
    return _analyzer


def _reset() -> None:
    """Drop the analyzer after a failure of its own (e.g. a WebAssembly trap); the next statement loads a new one."""
    global _analyzer
    with _analyzer_lock:
        _analyzer = None


# ------------------------------------------------------------------------------------ the job


def _job_of(config: Any) -> _Job:
    """Parameters of a query job's configuration, as GoogleSQL types."""
    from bqfidelity.zsql import types

    job = _Job(parameters={}, positional=None, legacy=bool(getattr(config, "useLegacySql", False)))
    given = list(getattr(config, "queryParameters", None) or [])
    positional = (getattr(config, "parameterMode", None) or "").upper() == "POSITIONAL" or any(
        not p.name for p in given
    )
    try:
        kinds = [types.parameter_type(p.parameterType or {"type": "STRING"}) for p in given]
    except types.UnsupportedType as error:
        job.unsupported = str(error)
        return job
    if positional and given:
        job.parameters, job.positional = None, kinds
    else:
        job.parameters = {p.name: kind for p, kind in zip(given, kinds, strict=False)}
    return job


@contextlib.contextmanager
def _analyzing(config: Any):
    token = _job.set(_job_of(config) if config is not None else None)
    try:
        yield
    finally:
        _job.reset(token)


# ------------------------------------------------------------------------------------ a statement


def _lookup(interpreter: Any):
    """Table lookup for GoogleSQL: a flattened name as written -> TableDef from the emulator's catalog."""
    from local_bigquery.catalog import tables
    from local_bigquery.engine import types as engine_types

    from bqfidelity.zsql.googlesql import TableDef

    context = interpreter.context

    def lookup(parts: list[str]) -> TableDef | None:
        if len(parts) == 1 and parts[0].casefold() in context.temporary:
            return _temporary(interpreter, parts[0], engine_types)
        if len(parts) == 1:
            if not context.dataset_id:
                return None
            reference = (context.project_id, context.dataset_id, parts[0])
        elif len(parts) == 2:
            reference = (context.project_id, *parts)
        elif len(parts) == 3:
            reference = tuple(parts)
        else:
            return None
        try:
            table = tables.load(*reference)
        except Exception:  # missing dataset/table, invalid name: not found for GoogleSQL
            return None
        partitioning = table.timePartitioning
        ingestion = partitioning is not None and not partitioning.field
        return TableDef(fields=tables.fields(table), ingestion_time=ingestion)

    return lookup


def _temporary(interpreter: Any, name: str, engine_types: Any):
    from bqfidelity.zsql.googlesql import TableDef

    try:
        relation = interpreter.cursor.sql(f'SELECT * FROM temp.main."{name}" LIMIT 0')
    except Exception:
        return None
    return TableDef(fields=[engine_types.field(n, t) for n, t in zip(relation.columns, relation.types, strict=False)])


def _variables(interpreter: Any) -> dict[str, Any]:
    """The script's variables in scope (name -> TypeProto), declared to GoogleSQL as constants."""
    from local_bigquery.engine import types as engine_types
    from local_bigquery.sql.rules.parameters import VALUE

    from bqfidelity.zsql import types

    variables = {}
    for name, table in (interpreter.context.variables or {}).items():
        relation = interpreter.cursor.sql(f"SELECT {VALUE} FROM {table} LIMIT 0")
        variables[name] = types.field_type(engine_types.field(name, relation.types[0]))
    return variables


def check(interpreter: Any, statement: Any) -> None:
    """Analyze a statement the interpreter is about to run; raise BigQuery's error when refused."""
    job = _job.get()
    if job is None:
        return
    sql = statement.text
    if statement.kind == "TABLE_FUNCTION":
        _stats.record(sql, "table_function")
        return
    if job.legacy:
        _stats.record(sql, "legacy_sql")
        return
    if job.unsupported:
        _stats.record(sql, "unsupported_type")
        return
    declared = set(job.parameters or {}) if job.positional is None else {f"p{i}" for i in range(len(job.positional))}
    if set(interpreter.context.parameters) - declared:
        _stats.record(sql, "execute_immediate_using")
        return

    from local_bigquery.errors import BigQueryError

    from bqfidelity.zsql import types
    from bqfidelity.zsql.googlesql import AnalysisError

    started, cpu = time.monotonic(), time.thread_time()
    try:
        engine = analyzer()
        constants = _variables(interpreter) if interpreter.context.variables else None
        analysis = engine.analyze(sql, _lookup(interpreter), job.parameters, job.positional, constants)
    except types.UnsupportedType:
        _stats.record(sql, "unsupported_type")
        return
    except AnalysisError as error:
        seconds = time.monotonic() - started
        if error.table_not_found:
            _stats.record(sql, "not_found")
            return
        called = _FUNCTION_NOT_FOUND.match(error.message)
        if called and called.group(1).strip("`").casefold() in job.temp_functions:
            _stats.record(sql, "temp_function_call")
            return
        if _ROUTINE_NOT_FOUND.match(error.message):
            _stats.record(sql, "routine_call")
            return
        _stats.record(sql, "refused", seconds, message=error.message, cpu_seconds=time.thread_time() - cpu)
        log.info("GoogleSQL refused: %s | %s", error.message, " ".join(sql.split())[:300])
        raise BigQueryError("invalidQuery", error.message) from None
    except Exception:  # a failing analyzer must not fail the job
        log.exception("GoogleSQL analyzer failed; statement run unanalyzed: %s", " ".join(sql.split())[:300])
        _reset()
        _stats.record(sql, "analyzer_error")
        return
    _stats.record(
        sql,
        "accepted",
        time.monotonic() - started,
        analysis.kind,
        parts=analysis.seconds,
        cpu_seconds=time.thread_time() - cpu,
    )
    if statement.kind == "TEMP_FUNCTION":
        job.temp_functions.add(_function_name(sql))


def _function_name(sql: str) -> str:
    match = re.search(r"(?is)\bFUNCTION\s+(?:IF\s+NOT\s+EXISTS\s+)?`?([\w.]+)`?", sql)
    return match.group(1).casefold() if match else ""


# ------------------------------------------------------------------------------------ install


def install() -> None:
    """Hook local-bigquery: query jobs and dry runs carry their configuration to the interpreter,
    which analyzes each statement before running it."""
    if os.environ.get("BQFIDELITY_ANALYZER", "").lower() in ("off", "0", "false", "no"):
        log.warning("GoogleSQL analyzer disabled (BQFIDELITY_ANALYZER=%s)", os.environ["BQFIDELITY_ANALYZER"])
        return
    from local_bigquery.jobs import runner
    from local_bigquery.sql import script

    original_sql = script.Interpreter.sql
    original_query = runner._query
    original_dry_run = runner._dry_run

    def sql(self: Any, statement: Any) -> Any:
        check(self, statement)
        return original_sql(self, statement)

    def query(job: Any, session: Any, running: Any) -> Any:
        with _analyzing(job.configuration.query):
            return original_query(job, session, running)

    def dry_run(project_id: str, configuration: Any) -> Any:
        with _analyzing(configuration.query):
            return original_dry_run(project_id, configuration)

    script.Interpreter.sql = sql
    runner._query = query
    runner._dry_run = dry_run
    _stats._write()
