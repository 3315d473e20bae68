"""Benchmark: envsync's dev sync of a prod of many tables (per-table overhead, not data volume).

For each size given with --sizes (default 100 and 1,000 objects), in one run:
  1. start a fresh private BigQuery emulator (envsync.dev.devstack), so no size inherits the other's catalog;
  2. build a prod of `size` objects spread over --datasets prod datasets (default 20), server-side and
     in parallel threads: a fixed mix of DAY-partitioned DATE tables, HOUR-partitioned TIMESTAMP tables
     spanning the window, DAY tables with require_partition_filter, unpartitioned tables with and
     without a DATE column, and views that read tables of two datasets; a few rows per table;
  3. in a fresh subprocess, run envsync's engine the way the prod_to_dev_sync DAG does: plan every
     dataset (`envsync.sync.run.build_plans`, the `plan` task), execute the dataset plans with --workers
     datasets at a time (`sync_dataset`, the mapped task, `max_active_tis_per_dagrun=2`; inside a
     dataset `DatasetSync` keeps `sync.max_concurrent_jobs` jobs in flight), then re-create the views
     (`sync_views`);
  4. print plan time, sync wall time, BigQuery API requests per object (planning and sync apart, counted
     on the HTTP session of the google client), jobs per object, the worker's peak memory increase,
     the emulator's CPU time and its latency of one tables.get once prod is built, and the growth
     between the smallest and the largest size.

The process exits 1 when any object fails (each failure is printed with its error), 0 otherwise.

    PYTHONPATH=plugins .venv/bin/python bench/bench_scale.py                       # 100 and 1,000
    PYTHONPATH=plugins .venv/bin/python bench/bench_scale.py --sizes 100 --hour-span-days 30

See bench/README.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PLUGINS = REPO_ROOT / "plugins"
for _path in (PLUGINS, BENCH_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_sync import PeakRss, _table  # noqa: E402  (the sibling benchmark: RSS sampler, text tables)

RESULT_MARKER = "BENCH_RESULT "
UTC = dt.UTC
DEFAULT_ANCHOR = dt.datetime(2026, 11, 21, 2, tzinfo=UTC)
DATASET_PREFIX = "scale_"
BENCH_LABEL = ("envsync_bench", "scale")
ROWS_PER_TABLE = 40  # DAY / DATE rows per table, one every DAY_STEP days back from the anchor
DAY_STEP = 17  # 40 rows x 17 days: about two years, 9 of them inside a two-quarter window
# "Each job operation (query or load) can affect up to 4,000 partitions."
# https://cloud.google.com/bigquery/quotas#partitioned_tables : an HOUR table is filled in slices of
# at most this many hours (one row per hour), as BigQuery (and the fidelity layer) refuse more per job.
MAX_PARTITIONS_PER_JOB = 4000

# The mix, repeated over the objects of the run in dataset-major order: per 10 objects 3 DAY tables,
# 1 HOUR table, 1 DAY table with require_partition_filter, 2 unpartitioned tables with a DATE column,
# 2 without a date column and 1 view.
KINDS = ("day", "hour", "day_rpf", "flat_date", "flat", "view")
CYCLE = ("day", "hour", "day_rpf", "flat_date", "flat", "view", "day", "flat_date", "flat", "day")
# The envsync action each kind must get (envsync.sync.plan); the unit test checks the planner agrees.
EXPECTED_ACTION = {
    "day": "clone_window",
    "hour": "clone_window",
    "day_rpf": "clone_window",
    "flat_date": "ctas_window",
    "flat": "full_clone",
    "view": "view",
}


class BenchError(RuntimeError):
    """The bench cannot run; the message says why and what to do."""


# ================================================================================= the prod mix (pure)


@dataclass(frozen=True)
class ObjectSpec:
    dataset: str
    name: str
    kind: str  # one of KINDS
    reads: tuple[str, ...] = ()  # views: the "dataset.table" objects they read

    @property
    def key(self) -> str:
        return f"{self.dataset}.{self.name}"


def dataset_names(count: int) -> list[str]:
    if not 1 <= count <= 100:
        raise ValueError(f"--datasets must be between 1 and 100, got {count}")
    return [f"{DATASET_PREFIX}{i:02d}" for i in range(count)]


def table_mix(size: int, datasets: int) -> list[ObjectSpec]:
    """`size` objects over `datasets` prod datasets (as even as possible), kinds from CYCLE.

    A view reads the first readable table of its own dataset and of the next dataset (tables that
    require a partition filter are not read by views: a view probe without a filter would fail)."""
    names = dataset_names(datasets)
    if size < 1:
        raise ValueError(f"sizes must be positive, got {size}")
    if size < datasets:
        raise ValueError(f"a size of {size} objects cannot fill {datasets} datasets; use --datasets {size} or fewer")
    per, extra = divmod(size, datasets)
    layout: list[list[tuple[int, str]]] = []
    index = 0
    for d in range(datasets):
        row = []
        for _ in range(per + (1 if d < extra else 0)):
            row.append((index, CYCLE[index % len(CYCLE)]))
            index += 1
        layout.append(row)

    def readable(d: int) -> str | None:
        return next((f"{names[d]}.{kind}_{i:04d}" for i, kind in layout[d] if kind not in ("view", "day_rpf")), None)

    specs = []
    for d, row in enumerate(layout):
        for i, kind in row:
            reads: tuple[str, ...] = ()
            if kind == "view":
                own, other = readable(d), readable((d + 1) % datasets)
                reads = tuple(dict.fromkeys(r for r in (own, other) if r))
                if not reads:  # a dataset of views only: read any readable table of the run
                    reads = (next(r for r in (readable(k) for k in range(datasets)) if r),)
            specs.append(ObjectSpec(names[d], f"{kind}_{i:04d}", kind, reads))
    return specs


def hour_span_default(window: Any) -> int:
    """Days from the window's start to the end of the anchor's quarter: the window's quarters in full
    (two quarters: 184 days, 4,416 hourly partitions; the hours after the anchor are trimmed)."""
    from envsync.core.window import add_quarters, quarter_start

    end = add_quarters(quarter_start(window.end.date()), 1)
    return (end - window.start.date()).days


def create_statements(
    spec: ObjectSpec, project: str, *, hour_start: dt.datetime, hour_span_days: int, ref_date: dt.date
) -> list[tuple[str, dict[str, Any]]]:
    """The statements (SQL, query parameters) that build one prod object server-side.

    Only validated, backtick-quoted identifiers go into the SQL text; values are query parameters."""
    from envsync.core.identifiers import quote

    target = quote(project, spec.dataset, spec.name)
    rows = {"rows": ROWS_PER_TABLE, "step": DAY_STEP, "ref_date": ref_date}
    select_day = (
        "select id, concat('row ', cast(id as string)) as label,\n"
        "    date_sub(@ref_date, interval id * @step day) as event_date\n"
        "from unnest(generate_array(0, @rows - 1)) as id"
    )
    if spec.kind in ("day", "day_rpf"):
        options = "\noptions (require_partition_filter = true)" if spec.kind == "day_rpf" else ""
        return [(f"create or replace table {target}\npartition by event_date{options}\nas\n{select_day}", rows)]
    if spec.kind == "flat_date":
        return [(f"create or replace table {target}\nas\n{select_day}", rows)]
    if spec.kind == "flat":
        sql = (
            f"create or replace table {target}\nas\nselect id, concat('row ', cast(id as string)) as label,\n"
            "    cast(id as float64) * 1.5 as amount\nfrom unnest(generate_array(0, @rows - 1)) as id"
        )
        return [(sql, {"rows": ROWS_PER_TABLE})]
    if spec.kind == "hour":
        statements: list[tuple[str, dict[str, Any]]] = [
            (
                f"create or replace table {target} (id int64, label string, event_at timestamp)\n"
                "partition by timestamp_trunc(event_at, hour)",
                {},
            )
        ]
        hours = hour_span_days * 24
        for first in range(0, hours, MAX_PARTITIONS_PER_JOB):
            last = min(first + MAX_PARTITIONS_PER_JOB, hours) - 1
            statements.append(
                (
                    f"insert into {target} (id, label, event_at)\n"
                    "select h, concat('hour ', cast(h as string)), timestamp_add(@start, interval h hour)\n"
                    "from unnest(generate_array(@first, @last)) as h",
                    {"start": hour_start, "first": first, "last": last},
                )
            )
        return statements
    if spec.kind == "view":
        # Two reference forms on purpose: `project.dataset.table` and `dataset.table`.
        parts = []
        for n, ref in enumerate(spec.reads):
            dataset, table = ref.split(".")
            source = quote(project, dataset, table) if n % 2 == 0 else quote(dataset, table)
            parts.append(f"select id, label from {source}")
        return [(f"create or replace view {target} as\n" + "\nunion all\n".join(parts), {})]
    raise ValueError(f"unknown object kind {spec.kind!r}; allowed: {KINDS}")


def bench_config(base: dict[str, Any], datasets: list[str]) -> dict[str, Any]:
    """The project's config with the bench's prod datasets (per-table overrides and keep lists of the
    demo datasets do not apply to them)."""
    data = json.loads(json.dumps(base))
    data["prod"]["datasets"] = datasets
    data["tables"] = {}
    data.setdefault("environments", {}).setdefault("dev", {})["keep"] = []
    return data


# ================================================================================= HTTP request counting


def api_method(method: str, url: str) -> str:
    """The BigQuery REST method of an HTTP request (`jobs.insert`, `tables.get`, ...): envsync's own naming
    (`envsync.core.limits.rest_method`, which its pacer uses)."""
    from envsync.core.limits import rest_method

    call = rest_method(method, url)
    return call.method if call is not None else f"{method} other"


class RequestCounter:
    """Counts the HTTP requests of one google client by phase and REST method (retries included)."""

    def __init__(self, client: Any) -> None:
        self.phase = "setup"
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        # requests per (phase, method, second since the counter began): the peak rate per method
        self.per_second: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self._began = time.monotonic()
        self._lock = threading.Lock()
        session = client._http  # the AuthorizedSession every API call of the client goes through
        original = session.request

        def request(*args: Any, **kwargs: Any) -> Any:
            method = kwargs.get("method", args[0] if args else "?")
            url = kwargs.get("url", args[1] if len(args) > 1 else "")
            name = api_method(str(method).upper(), str(url))
            second = int(time.monotonic() - self._began)
            with self._lock:
                self.counts[(self.phase, name)] += 1
                self.per_second[(self.phase, name, second)] += 1
            return original(*args, **kwargs)

        session.request = request

    def total(self, phase: str) -> int:
        return sum(n for (p, _), n in self.counts.items() if p == phase)

    def peak_per_second(self) -> dict[str, int]:
        """The most requests of each method in any one second, over planning and sync."""
        peak: dict[str, int] = {}
        for (_, method, _), n in self.per_second.items():
            peak[method] = max(peak.get(method, 0), n)
        return dict(sorted(peak.items(), key=lambda x: -x[1]))

    def by_method(self, phase: str) -> dict[str, int]:
        return dict(sorted(((m, n) for (p, m), n in self.counts.items() if p == phase), key=lambda x: -x[1]))


# ================================================================================= worker side


class _PlanOnly(Exception):
    """Ends the worker's run after the plan (--plan-only)."""


def worker(
    anchor: dt.datetime, window_quarters: int | None, workers: int, run_id: str, plan_only: bool = False
) -> dict[str, Any]:
    """Runs in the child process: imports, baseline, plan, sync (as the DAG's tasks do), measure;
    `plan_only`: the plan alone."""
    from google.cloud import bigquery  # noqa: F401 (imported before the baseline only)

    from envsync.bigquery.jobs import JobRunner
    from envsync.core import limits
    from envsync.core.clients import bigquery_client
    from envsync.core.config import load_config
    from envsync.core.guard import GuardedBigQuery, WriteGuard
    from envsync.core.window import new_cut, quarter_window
    from envsync.sync.run import RunInfo, build_plans, sync_dataset, sync_views

    config = load_config()
    limits.configure(config.rate_limits.rates())  # as the DAG's tasks do
    client = bigquery_client(config.project, config.location)
    counter = RequestCounter(client)
    quarters = window_quarters or config.environments.dev.window_quarters
    window = quarter_window(anchor, quarters)
    out: dict[str, Any] = {"window": window.as_dict(), "error": None, "tables": []}

    with PeakRss() as rss:
        try:
            # --- the `plan` task: discover prod and the dev datasets, plan every object
            counter.phase = "plan"
            started = time.monotonic()
            plans = build_plans(config, client, datasets=list(config.prod.datasets), tables=[], window=window)
            out["plan_seconds"] = round(time.monotonic() - started, 3)
            out["plan_json_bytes"] = len(json.dumps([p.to_dict() for p in plans]))
            out["peak_after_plan"] = max(rss.peak, rss._process.memory_info().rss)
            if plan_only:
                raise _PlanOnly

            # --- the mapped `sync_dataset` tasks, `workers` at a time, then `sync_views`
            run = RunInfo("prod_to_dev_sync", run_id, "sync_dataset", new_cut(), window)
            counter.phase = "sync"
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataset") as pool:
                per_dataset = list(pool.map(lambda plan: sync_dataset(config, client, plan, run), plans))
            out["tables_seconds"] = round(time.monotonic() - started, 3)
            views_started = time.monotonic()
            bq = GuardedBigQuery(client, WriteGuard.from_config(config), config.location)
            runner = JobRunner(
                bq, dag_id=run.dag_id, run_id=run.run_id, task_id="sync_views", timeout=config.sync.job_timeout_seconds
            )
            views = sync_views(config, bq, runner, run, plans)
            out["views_seconds"] = round(time.monotonic() - views_started, 3)
            out["sync_seconds"] = round(time.monotonic() - started, 3)
            results = [r for rows in per_dataset for r in rows] + views
        except _PlanOnly:
            results = []
        except Exception as error:  # one readable line, not a stack trace
            out["error"] = f"{type(error).__name__}: {error}"
            results = []
    out.update(
        rss_after_imports=rss.baseline,
        peak_rss_sampled=rss.peak,
        ru_maxrss=PeakRss.ru_maxrss(),
        requests={phase: counter.total(phase) for phase in ("plan", "sync")},
        requests_by_method={phase: counter.by_method(phase) for phase in ("plan", "sync")},
        peak_per_second=counter.peak_per_second(),
        retries=limits.RETRIES.as_dict(),
        paced_ms=limits.pacer().waited.as_dict(),
        tables=[{k: r.get(k) for k in ("table", "action", "status", "jobs", "seconds", "error")} for r in results],
    )
    return out


# ================================================================================= parent side


def _start_emulator(devstack: Any, latency: float = 0.0) -> tuple[Any, Path]:
    root = Path(tempfile.mkdtemp(prefix="envsync-bench-scale-"))
    shared = REPO_ROOT / ".devstack"
    if (shared / "home" / ".duckdb").is_dir():  # reuse the installed DuckDB extensions (~150 MB)
        (root / "home").mkdir(parents=True)
        (root / "home" / ".duckdb").symlink_to(shared / "home" / ".duckdb", target_is_directory=True)
    if any((shared / "zetasql").glob("zetasql-*.cwasm")):  # reuse the compiled analyzer (25 s, 1 GB)
        (root / "zetasql").symlink_to((shared / "zetasql").resolve(), target_is_directory=True)
    latency_file = root / "latency"
    latency_file.write_text("0")  # no latency while prod is built; run_size sets --latency for the sync
    stack = devstack.Stack(
        root=root,
        bq_port=devstack.free_port(),
        grpc_port=devstack.free_port(),
        gcs_port=devstack.free_port(),
        latency_file=latency_file,
    )
    print(f"   starting a fresh BigQuery emulator on {stack.bq_url} (data in {root}) ...", flush=True)
    try:
        devstack.up(stack, timeout=120)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    os.environ.update(stack.env())
    return stack, root


# What the emulator's DuckLake catalog of the project holds once the emulator is stopped (the file is
# locked while it runs): read with the emulator's own DuckDB, as a plain DuckDB database file.
_DUCKLAKE_FIGURES = """
import json, sys
import duckdb
path, since = sys.argv[1], sys.argv[2]
con = duckdb.connect(path, read_only=True)
[(before,)] = con.execute(
    "SELECT coalesce(max(schema_version), 0) FROM ducklake_snapshot WHERE snapshot_time < $1::TIMESTAMPTZ",
    [since]).fetchall()
[(after,)] = con.execute("SELECT max(schema_version) FROM ducklake_snapshot").fetchall()
[(live, dropped)] = con.execute(
    "SELECT count(DISTINCT table_id) FILTER (WHERE end_snapshot IS NULL), "
    "count(DISTINCT table_id) FILTER (WHERE table_id NOT IN "
    "(SELECT table_id FROM ducklake_table WHERE end_snapshot IS NULL)) FROM ducklake_table").fetchall()
print(json.dumps({"schema_versions_before_sync": before, "schema_versions_in_sync": after - before,
                  "live_tables": live, "dropped_tables": dropped}))
"""


def _ducklake_figures(stack: Any, since: dt.datetime) -> dict[str, Any]:
    """Schema versions the sync made and live / dropped tables in the project's DuckLake catalog at the
    end (every schema version makes the emulator rebuild that catalog: bench/README.md)."""
    path = stack.root / "bigquery" / f"{stack.project}.ducklake"
    try:
        done = subprocess.run(
            [str(stack.venv / "bin" / "python"), "-c", _DUCKLAKE_FIGURES, str(path), since.isoformat()],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        print(f"   (no DuckLake figures: {error})", flush=True)
        return {}


def _emulator_process(stack: Any) -> Any:
    import psutil

    try:
        record = json.loads(stack.pid_file("bigquery").read_text())
        return psutil.Process(int(record["pid"]))
    except (OSError, ValueError, KeyError, psutil.Error):
        return None


def _cpu_seconds(proc: Any) -> float | None:
    if proc is None:
        return None
    try:
        times = proc.cpu_times()
        return times.user + times.system
    except Exception:
        return None


def _ensure_prod_dataset(client: Any, project: str, dataset: str, location: str) -> None:
    """Create a bench prod dataset; refuse one that holds tables the bench did not create."""
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    ref = f"{project}.{dataset}"
    try:
        existing = client.get_dataset(ref)
    except NotFound:
        new = bigquery.Dataset(ref)
        new.location = location
        new.description = "envsync bench_scale prod (generated)"
        new.labels = {BENCH_LABEL[0]: BENCH_LABEL[1]}
        client.create_dataset(new)
        return
    if existing.labels.get(BENCH_LABEL[0]) != BENCH_LABEL[1] and list(client.list_tables(ref, max_results=1)):
        raise BenchError(
            f"refusing to write into {ref}: it holds tables and has no label "
            f"{BENCH_LABEL[0]}={BENCH_LABEL[1]} (not created by this bench)"
        )


def build_prod(
    client: Any,
    config: Any,
    specs: list[ObjectSpec],
    *,
    hour_start: dt.datetime,
    hour_span_days: int,
    ref_date: dt.date,
    threads: int,
) -> None:
    """Create every prod object server-side: tables in parallel, then the views (they read the tables)."""
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    for dataset in dict.fromkeys(s.dataset for s in specs):
        _ensure_prod_dataset(client, config.project, dataset, config.location)

    def create(spec: ObjectSpec) -> None:
        for sql, params in create_statements(
            spec, config.project, hour_start=hour_start, hour_span_days=hour_span_days, ref_date=ref_date
        ):
            job_config = bigquery.QueryJobConfig(
                query_parameters=to_query_parameters(params), labels={BENCH_LABEL[0]: BENCH_LABEL[1]}
            )
            try:
                client.query(
                    sql,
                    job_config=job_config,
                    location=config.location,
                    job_retry=None,
                    retry=bigquery.DEFAULT_RETRY.with_deadline(120),
                ).result()
            except Exception as error:
                raise BenchError(f"creating prod {spec.kind} {spec.key} failed: {error}") from error

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="setup") as pool:
        list(pool.map(create, [s for s in specs if s.kind != "view"]))
        list(pool.map(create, [s for s in specs if s.kind == "view"]))


def _dev_objects(client: Any, config: Any) -> set[str]:
    """Objects now in the dev datasets, as prod keys (`dataset.table`)."""
    from google.api_core.exceptions import NotFound

    found = set()
    for dataset in config.prod.datasets:
        try:
            found |= {
                f"{dataset}.{t.table_id}" for t in client.list_tables(f"{config.project}.{config.dev_dataset(dataset)}")
            }
        except NotFound:
            continue
    return found


def _run_worker(args: argparse.Namespace, anchor: dt.datetime, run_id: str, env: dict[str, str]) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--anchor",
        anchor.isoformat(),
        "--run-id",
        run_id,
        "--workers",
        str(args.workers),
    ]
    if args.window_quarters:
        command += ["--window-quarters", str(args.window_quarters)]
    if args.plan_only:
        command.append("--plan-only")
    started = time.monotonic()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            result = json.loads(line[len(RESULT_MARKER) :])
            result["process_seconds"] = round(time.monotonic() - started, 3)
            return result
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return {"tables": [], "error": f"worker exited with code {proc.returncode}:\n{tail}"}


def _lookup_latency(client: Any, project: str, spec: ObjectSpec, calls: int = 10) -> float:
    """Median milliseconds of one tables.get on the freshly built prod: the emulator's cost of a
    single table lookup at this catalog size (it grows with the catalog, see bench/README.md)."""
    import statistics

    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        client.get_table(f"{project}.{spec.key}")
        seconds.append(time.perf_counter() - started)
    return round(1000 * statistics.median(seconds), 1)


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        load = os.getloadavg()
        return f"load average: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}"


def run_size(
    size: int,
    args: argparse.Namespace,
    base_config: dict[str, Any],
    anchor: dt.datetime,
    ref_date: dt.date,
    devstack: Any,
) -> dict[str, Any]:
    import yaml

    from envsync.core.clients import bigquery_client
    from envsync.core.config import load_config, parse_config
    from envsync.core.window import quarter_window

    datasets = dataset_names(args.datasets)
    specs = table_mix(size, args.datasets)
    data = bench_config(base_config, datasets)
    parse_config(data, "bench config")  # fail here, with the config's own message, not in the worker
    workdir = Path(tempfile.mkdtemp(prefix="envsync-bench-scale-config-"))
    config_path = workdir / "envsync.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    os.environ["ENVSYNC_CONFIG"] = str(config_path)
    config = load_config(config_path)
    quarters = args.window_quarters or config.environments.dev.window_quarters
    window = quarter_window(anchor, quarters)
    hour_span_days = args.hour_span_days or hour_span_default(window)
    kinds = collections.Counter(s.kind for s in specs)
    out: dict[str, Any] = {
        "size": size,
        "datasets": args.datasets,
        "kinds": dict(kinds),
        "hour_span_days": hour_span_days,
        "uptime_before": _uptime(),
    }
    stack = root = sync_started = None
    try:
        if devstack is not None:
            stack, root = _start_emulator(devstack, args.latency)
        client = bigquery_client(config.project, config.location)
        print(
            f"   building prod: {size:,} objects in {args.datasets} datasets "
            f"({', '.join(f'{kinds[k]} {k}' for k in KINDS)}; HOUR tables span {hour_span_days} days = "
            f"{hour_span_days * 24:,} hourly partitions) ...",
            flush=True,
        )
        started = time.monotonic()
        build_prod(
            client,
            config,
            specs,
            hour_start=window.start,
            hour_span_days=hour_span_days,
            ref_date=anchor.date(),
            threads=args.setup_threads,
        )
        out["setup_seconds"] = round(time.monotonic() - started, 3)
        print(
            f"   prod built in {out['setup_seconds']:.1f} s; syncing prod -> dev in a fresh process "
            f"({args.workers} dataset(s) at a time) ...",
            flush=True,
        )
        out["tables_get_ms"] = _lookup_latency(client, config.project, specs[0])
        emulator = _emulator_process(stack) if stack is not None else None
        cpu_before = _cpu_seconds(emulator)
        if stack is not None and args.latency:
            # BigQuery's jobs are asynchronous: jobs.insert answers RUNNING and the client polls
            Path(stack.latency_file).write_text(str(args.latency))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))}
        sync_started = dt.datetime.now(UTC)
        run_id = f"bench_scale_{size}_{sync_started:%Y%m%dT%H%M%S%f}"
        result = _run_worker(args, anchor, run_id, env)
        cpu_after = _cpu_seconds(emulator)
        out["emulator_cpu_seconds"] = (
            round(cpu_after - cpu_before, 1) if cpu_before is not None and cpu_after is not None else None
        )
        if emulator is not None:
            try:
                out["emulator_rss"] = emulator.memory_info().rss
            except Exception:
                out["emulator_rss"] = None
        out.update(result)
        expected = {s.key for s in specs}
        done = not result.get("error") and not args.plan_only
        out["missing_in_dev"] = sorted(expected - _dev_objects(client, config)) if done else []
    finally:
        out["uptime_after"] = _uptime()
        if stack is not None:
            print("   stopping the emulator ...", flush=True)
            devstack.down(stack)
            if sync_started is not None:
                out["ducklake"] = _ducklake_figures(stack, sync_started)
            shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def figures(r: dict[str, Any]) -> dict[str, Any]:
    """The per-size figures the summary prints (None where the worker did not get that far)."""
    objects = r["size"]
    tables = [t for t in r.get("tables", []) if t.get("status") not in ("excluded", "skipped", "dropped")]
    jobs = [int(t.get("jobs") or 0) for t in tables]
    peak = max(r.get("peak_rss_sampled") or 0, r.get("ru_maxrss") or 0)
    requests = r.get("requests") or {}
    failed = [t for t in tables if t.get("status") != "ok"]
    return {
        "objects": objects,
        "plan_seconds": r.get("plan_seconds"),
        "sync_seconds": r.get("sync_seconds"),
        "plan_requests_per_object": requests.get("plan", 0) / objects if requests else None,
        "sync_requests_per_object": requests.get("sync", 0) / objects if requests else None,
        "jobs": sum(jobs),
        "jobs_per_object": sum(jobs) / len(jobs) if jobs else None,
        "jobs_min_max": (min(jobs), max(jobs)) if jobs else None,
        "peak_increase": peak - r["rss_after_imports"] if r.get("rss_after_imports") else None,
        "plan_peak_increase": (r["peak_after_plan"] - r["rss_after_imports"]) if r.get("peak_after_plan") else None,
        "ok": len(tables) - len(failed),
        "synced": len(tables),
        "failed": failed,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[dict[str, Any]], details: bool, *, growth_lines: bool = True) -> bool:
    """Print the summary, failures and growth; True when every object of every size synced."""
    rows = []
    ok = True
    for r in results:
        f = figures(r)
        good = not r.get("error") and not f["failed"] and f["synced"] == r["size"] and not r.get("missing_in_dev")
        ok &= good
        rows.append(
            [
                f"{r['size']:,}",
                f"{r['datasets']}",
                _fmt(r.get("setup_seconds"), ".1f"),
                _fmt(f["plan_seconds"], ".2f"),
                _fmt(f["sync_seconds"], ".1f"),
                _fmt(f["plan_requests_per_object"], ".2f"),
                _fmt(f["sync_requests_per_object"], ".2f"),
                "-"
                if f["jobs_per_object"] is None
                else f"{f['jobs_per_object']:.2f} ({f['jobs_min_max'][0]}-{f['jobs_min_max'][1]})",
                _mb(f["plan_peak_increase"]),
                _mb(f["peak_increase"]),
                _fmt(r.get("emulator_cpu_seconds"), ".0f"),
                f"{f['ok']:,}/{r['size']:,}",
                "ok" if good else "FAILED",
            ]
        )
    print()
    print(
        _table(
            [
                "objects",
                "datasets",
                "setup s",
                "plan s",
                "sync wall s",
                "plan req/obj",
                "sync req/obj",
                "jobs/obj avg (min-max)",
                "plan peak +MB",
                "peak +MB",
                "emulator CPU s",
                "ok",
                "status",
            ],
            rows,
            right=set(range(12)),
        )
    )
    for r in results:
        print(
            f"\n{r['size']:,} objects: HOUR span {r['hour_span_days']} days; "
            f"tables {r.get('tables_seconds', '-')} s + views {r.get('views_seconds', '-')} s; "
            f"plan JSON {(r.get('plan_json_bytes') or 0) / 1024:,.0f} KB; emulator tables.get "
            f"{r.get('tables_get_ms', '-')} ms (median, idle, after setup); RSS after imports "
            f"{_mb(r.get('rss_after_imports'))} MB; emulator RSS {_mb(r.get('emulator_rss'))} MB"
        )
        if lake := r.get("ducklake"):
            jobs = figures(r)["jobs"]
            print(
                f"   emulator's DuckLake catalog: {lake['schema_versions_in_sync']:,} schema versions made by "
                f"the sync ({lake['schema_versions_in_sync'] / jobs if jobs else 0:.2f} per job; "
                f"{lake['schema_versions_before_sync']:,} before it), {lake['live_tables']:,} live and "
                f"{lake['dropped_tables']:,} dropped tables at the end"
            )
        print(f"   uptime before: {r['uptime_before']}\n   uptime after:  {r['uptime_after']}")
        if r.get("peak_per_second"):
            print("   peak requests per second, per method (BigQuery's limit per user per method): " + peak_line(r))
            print(
                f"   refusals by BigQuery's rate or quota limits, retried: {sum((r.get('retries') or {}).values())}"
                f" {r.get('retries') or ''}; envsync's pacing waited (ms): {r.get('paced_ms') or 0}"
            )
        if r.get("error"):
            print(f"   ERROR: {r['error']}")
        for t in figures(r)["failed"]:
            print(f"   FAILED {t['table']} ({t['action']}): {t.get('error')}")
        if r.get("missing_in_dev"):
            print(f"   MISSING in dev: {r['missing_in_dev'][:20]}{' ...' if len(r['missing_in_dev']) > 20 else ''}")
        if details and r.get("requests_by_method"):
            for phase, methods in r["requests_by_method"].items():
                print(
                    f"   {phase} requests per object: "
                    + ", ".join(f"{m} {n / r['size']:.2f}" for m, n in methods.items())
                )
            by_action: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
            for t in r.get("tables", []):
                by_action[t.get("action")].append(t)
            for action, items in sorted(by_action.items()):
                print(
                    f"   {action}: {len(items)} objects, "
                    f"jobs {sum(int(t.get('jobs') or 0) for t in items) / len(items):.2f}"
                    f" each, {sum(float(t.get('seconds') or 0) for t in items) / len(items):.2f} s each"
                )
    if growth_lines:
        growth(results)
    return ok


def method_limit(method: str) -> int:
    """BigQuery's documented requests per second per user for `method` (envsync.core.limits)."""
    from envsync.core import limits

    return {"tables.insert": limits.TABLES_INSERT_PER_SECOND, "jobs.get": limits.JOBS_GET_PER_SECOND}.get(
        method, limits.API_REQUESTS_PER_SECOND
    )


def peak_line(r: dict[str, Any]) -> str:
    peaks = r.get("peak_per_second") or {}
    over = [m for m, n in peaks.items() if n > method_limit(m)]
    return ", ".join(f"{m} {n}/s ({method_limit(m)})" for m, n in peaks.items()) + (
        f"; OVER THE LIMIT: {over}" if over else "; all under the limits: met"
    )


def growth(results: list[dict[str, Any]]) -> None:
    """Compare the smallest and the largest size against the targets of the benchmark."""
    done = [r for r in results if r.get("sync_seconds")]
    if len(done) < 2:
        return
    small, large = figures(min(done, key=lambda r: r["size"])), figures(max(done, key=lambda r: r["size"]))
    scale = large["objects"] / small["objects"]
    print(f"\ngrowth {small['objects']:,} -> {large['objects']:,} objects ({scale:.0f}x):")

    def line(name: str, a: float | None, b: float | None, verdict: str) -> None:
        if a is None or b is None:
            return
        print(f"   {name:<28} {a:10.2f} -> {b:10.2f}  ({b / a if a else float('inf'):.2f}x)  {verdict}")

    for key, name in (
        ("plan_requests_per_object", "plan API requests / object"),
        ("sync_requests_per_object", "sync API requests / object"),
        ("jobs_per_object", "jobs / object"),
    ):
        a, b = small[key], large[key]
        if a is not None and b is not None:
            line(name, a, b, "constant: met" if b <= a * 1.05 else "constant: MISSED")
    a, b = small["sync_seconds"], large["sync_seconds"]
    line("sync wall s", a, b, f"<= {1.1 * scale:.1f}x: " + ("met" if b <= 1.1 * scale * a else "MISSED"))
    line("plan s", small["plan_seconds"], large["plan_seconds"], "")
    a, b = small["peak_increase"], large["peak_increase"]
    if a is not None and b is not None:
        print(
            f"   {'worker peak increase MB':<28} {a / 2**20:10.0f} -> {b / 2**20:10.0f}  "
            f"(+{(b - a) / 2**20:.0f} MB)  <= +100 MB: {'met' if b <= 100 * 2**20 else 'MISSED'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100, 1000],
        help="prod objects (tables and views) per run, one run per size (default: %(default)s)",
    )
    parser.add_argument(
        "--datasets", type=int, default=20, help="prod datasets the objects spread over (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="dataset syncs at a time, like the DAG's mapped sync_dataset tasks "
        "(max_active_tis_per_dagrun=2; default: %(default)s)",
    )
    parser.add_argument(
        "--setup-threads", type=int, default=4, help="threads creating the prod objects (default: %(default)s)"
    )
    parser.add_argument(
        "--hour-span-days",
        type=int,
        default=None,
        help="days of hourly rows in each HOUR table from the window's start "
        "(default: the window's quarters in full, 184 days = 4,416 partitions for two quarters)",
    )
    parser.add_argument(
        "--anchor",
        type=dt.datetime.fromisoformat,
        default=DEFAULT_ANCHOR,
        help="anchor A of the window, ISO with time zone (default: %(default)s)",
    )
    parser.add_argument("--window-quarters", type=int, default=None, help="default: the config's dev window")
    parser.add_argument(
        "--no-emulator",
        action="store_true",
        help="do not start emulators; use BIGQUERY_EMULATOR_HOST (one prod for all sizes)",
    )
    parser.add_argument("--details", action="store_true", help="requests per REST method, jobs and seconds per action")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds every sync job stays RUNNING before it runs (BigQuery-like asynchronous jobs: "
        "jobs.insert answers RUNNING and the client polls); default 0",
    )
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help="build prod and plan the sync, then stop: the planning figures of large sizes in minutes",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.anchor.tzinfo is None:
        parser.error("--anchor needs a time zone, e.g. 2026-11-21T02:00:00+00:00")
    if args.workers < 1 or args.setup_threads < 1:
        parser.error("--workers and --setup-threads must be at least 1")
    if args.hour_span_days is not None and not 1 <= args.hour_span_days <= 800:
        parser.error(f"--hour-span-days must be between 1 and 800, got {args.hour_span_days}")

    if args.worker:  # child process
        result = worker(args.anchor, args.window_quarters, args.workers, args.run_id, args.plan_only)
        print(RESULT_MARKER + json.dumps(result, default=str), flush=True)
        return 0

    import yaml

    from envsync.core.config import config_path

    try:
        for size in args.sizes:
            table_mix(size, args.datasets)
    except ValueError as error:
        parser.error(str(error))
    base = yaml.safe_load(config_path().read_text())
    devstack = None
    if not args.no_emulator:
        try:
            from envsync.dev import devstack
        except ImportError:
            devstack = None
    if devstack is None:
        if not os.environ.get("BIGQUERY_EMULATOR_HOST"):
            print(
                "error: no emulator: envsync.dev.devstack is missing and BIGQUERY_EMULATOR_HOST is not set "
                "(this bench creates hundreds of prod tables; it does not run on real BigQuery)",
                file=sys.stderr,
            )
            return 2
        if len(args.sizes) > 1:
            print("error: --no-emulator runs one size only (the prods of several sizes would mix)", file=sys.stderr)
            return 2
        print(f"using the BigQuery emulator at {os.environ['BIGQUERY_EMULATOR_HOST']}", flush=True)

    results = []
    try:
        for size in sorted(args.sizes):
            print(f"\n== {size:,} objects", flush=True)
            results.append(run_size(size, args, base, args.anchor, args.anchor.date(), devstack))
            r = results[-1]
            print(
                f"   {r.get('error') or ('plan done' if args.plan_only else 'sync done')}: "
                f"plan {r.get('plan_seconds', '-')} s, "
                f"sync {r.get('sync_seconds', '-')} s",
                flush=True,
            )
            if len(args.sizes) > 1:  # a long run keeps the figures of the sizes already done
                report([r], args.details, growth_lines=False)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2, default=str))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.plan_only:
        for r in results:
            plan = r.get("requests_by_method", {}).get("plan", {})
            methods = ", ".join(f"{m} {n}" for m, n in sorted(plan.items()))
            grew = (r.get("peak_after_plan") or 0) - (r.get("rss_after_imports") or 0)
            print(
                f"{r['size']:,} objects: setup {r.get('setup_seconds')} s, plan {r.get('plan_seconds')} s, "
                f"{r.get('requests', {}).get('plan')} requests ({methods}), emulator CPU "
                f"{r.get('emulator_cpu_seconds')} s, worker peak after plan +{_mb(grew)} MB"
                + (f"; error: {r['error']}" if r.get("error") else "")
            )
        return 1 if any(r.get("error") for r in results) else 0
    ok = report(results, args.details)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"\nresults written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
