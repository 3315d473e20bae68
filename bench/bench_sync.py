"""Benchmark: envsync's server-side prod -> dev sync against the naive pandas round trip.

For each size given with --rows, in one run:
  1. generate the deterministic demo prod of that size (envsync.dev.demo, server-side);
  2. sync it to dev with envsync (`envsync.sync.run.run_sync`), in a subprocess of its own;
  3. drop dev again and sync it the naive way, in another subprocess: every table read whole into
     pandas (`client.query("select * ...").to_dataframe()`), the window applied in pandas, and the
     result loaded with `load_table_from_dataframe`;
  4. print wall time, the worker's peak memory increase over its RSS after imports, BigQuery jobs per
     table, the rows that ended up in dev, and the wall-time ratio naive / envsync.

Each approach runs in its own process, so the memory figures are not polluted by the other approach
or by the generator. The bench starts its own BigQuery emulator through envsync.dev.devstack (on free
ports, in a temporary directory) and stops it at the end; with --no-emulator (or when envsync.dev.devstack
is missing) it uses whatever BIGQUERY_EMULATOR_HOST points at, or real BigQuery through the Airflow
connection when that is unset.

    PYTHONPATH=plugins .venv/bin/python bench/bench_sync.py --rows 100000 1000000

See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS = REPO_ROOT / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

RESULT_MARKER = "BENCH_RESULT "
APPROACHES = ("envsync", "naive")
UTC = dt.UTC


class BenchError(RuntimeError):
    """The bench cannot run; the message says why and what to do."""


# ================================================================================= worker side


class PeakRss:
    """Samples this process's RSS in a thread; also reads ru_maxrss (the kernel's high-water mark)."""

    def __init__(self, interval: float = 0.005) -> None:
        import threading

        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @staticmethod
    def ru_maxrss() -> int:
        import resource

        # Linux reports kilobytes, macOS bytes.
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return value if sys.platform == "darwin" else value * 1024


def _date_columns(table: Any) -> list[tuple[str, str]]:
    return [(f.name, f.field_type) for f in table.schema if f.field_type in ("DATE", "DATETIME", "TIMESTAMP")]


def _naive_view_sql(sql: str, project: str, mapping: dict[str, str]) -> str:
    """What a hand-written script does to a view: replace `dataset.` by `dev_dataset.` in the text."""
    import re

    for prod, dev in mapping.items():
        sql = re.sub(rf"(?<![\w-]){re.escape(project)}\.{prod}\.", f"{project}.{dev}.", sql)
        sql = re.sub(rf"(?<![\w.-]){prod}\.", f"{dev}.", sql)
    return sql


def naive_sync(config: Any, client: Any, window: Any) -> list[dict[str, Any]]:
    """The approach users write by hand: everything through pandas in the worker."""
    from google.cloud import bigquery

    from envsync.core.identifiers import quote

    project = config.project
    mapping = {ds: config.dev_dataset(ds) for ds in config.prod.datasets}
    results: list[dict[str, Any]] = []
    for dataset in config.prod.datasets:
        dev = bigquery.Dataset(f"{project}.{mapping[dataset]}")
        dev.location = config.location
        client.create_dataset(dev, exists_ok=True)
        items = list(client.list_tables(f"{project}.{dataset}"))
        # Views last: they read the tables this loop is about to create.
        for item in sorted(items, key=lambda i: (i.table_type == "VIEW", i.table_id)):
            name = item.table_id
            if config.override(dataset, name).exclude:
                continue
            started = time.monotonic()
            row: dict[str, Any] = {"table": f"{dataset}.{name}", "rows": None, "jobs": 0, "status": "ok"}
            try:
                table = client.get_table(f"{project}.{dataset}.{name}")
                target = f"{project}.{mapping[dataset]}.{name}"
                if table.table_type == "VIEW":
                    row["action"] = "view"
                    view = bigquery.Table(target)
                    view.view_query = _naive_view_sql(table.view_query, project, mapping)
                    client.delete_table(target, not_found_ok=True)
                    client.create_table(view)
                else:
                    column = config.override(dataset, name).date_column
                    if column is None and table.time_partitioning is not None:
                        column = table.time_partitioning.field
                    if column is None and len(_date_columns(table)) == 1:
                        column = _date_columns(table)[0][0]
                    frame = client.query(f"select * from {quote(project, dataset, name)}", job_retry=None).to_dataframe(
                        create_bqstorage_client=False
                    )
                    row["jobs"] += 1
                    if column is not None:
                        kind = next(f.field_type for f in table.schema if f.name == column)
                        low, high = window.bounds(kind)
                        values = frame[column]
                        if kind == "DATE":
                            values = values.astype("datetime64[us]")
                            low, high = dt.datetime.combine(low, dt.time()), dt.datetime.combine(high, dt.time())
                        frame = frame[(values >= low) & (values < high)]
                        row["action"] = f"pandas window on {column}"
                    else:
                        row["action"] = "pandas full copy"
                    job_config = bigquery.LoadJobConfig(
                        schema=table.schema,
                        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                        time_partitioning=table.time_partitioning,
                        clustering_fields=table.clustering_fields,
                    )
                    client.load_table_from_dataframe(frame, target, job_config=job_config).result()
                    row["jobs"] += 1
                    row["rows"] = len(frame)
                    del frame
            except Exception as error:  # report per table, like envsync does
                row["status"] = "failed"
                row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
            row["seconds"] = round(time.monotonic() - started, 3)
            results.append(row)
    return results


def worker(approach: str, anchor: dt.datetime, window_quarters: int | None, run_id: str) -> dict[str, Any]:
    """Runs in the child process: import everything, take the baseline, sync, measure."""
    # Both approaches import the same libraries before the baseline, so the figures compare the work.
    import db_dtypes  # noqa: F401 (imported for the baseline only)
    import pandas  # noqa: F401 (imported for the baseline only)
    import pyarrow  # noqa: F401 (imported for the baseline only)
    from google.cloud import bigquery  # noqa: F401 (imported for the baseline only)

    from envsync.core.clients import bigquery_client
    from envsync.core.config import load_config
    from envsync.core.window import quarter_window

    run_sync = None
    missing = None
    try:
        from envsync.sync.run import run_sync
    except ImportError as error:
        missing = f"envsync.sync.run.run_sync is not available ({error})"

    config = load_config()
    client = bigquery_client(config.project, config.location)
    quarters = window_quarters or config.environments.dev.window_quarters
    window = quarter_window(anchor, quarters)
    out: dict[str, Any] = {"approach": approach, "window": window.as_dict(), "tables": [], "error": None}
    if approach == "envsync" and run_sync is None:
        out["error"] = f"{missing}: the envsync half of the bench cannot run yet"
        return out

    with PeakRss() as rss:
        started = time.monotonic()
        try:
            if approach == "envsync":
                summary = run_sync(config, client, anchor=anchor, run_id=run_id, window_quarters=quarters)
                tables = summary["tables"]
            else:
                tables = naive_sync(config, client, window)
        except Exception as error:  # one readable line, not a stack trace
            out["error"] = f"{type(error).__name__}: {error}"
            tables = []
        seconds = time.monotonic() - started
    out.update(
        seconds=round(seconds, 3),
        rss_after_imports=rss.baseline,
        peak_rss_sampled=rss.peak,
        ru_maxrss=PeakRss.ru_maxrss(),
        tables=[
            {k: t.get(k) for k in ("table", "action", "rows", "jobs", "status", "seconds", "error")} for t in tables
        ],
    )
    return out


# ================================================================================= parent side


def _start_emulator(use_env: bool) -> tuple[Any, Any, Path | None]:
    """Start a private emulator with envsync.dev.devstack; returns (devstack module, stack, root)."""
    if not use_env:
        try:
            from envsync.dev import devstack
        except ImportError:
            devstack = None
        if devstack is not None:
            root = Path(tempfile.mkdtemp(prefix="envsync-bench-"))
            shared = REPO_ROOT / ".devstack" / "home" / ".duckdb"
            if shared.is_dir():  # reuse the repo's installed DuckDB extensions (~150 MB)
                (root / "home").mkdir(parents=True)
                (root / "home" / ".duckdb").symlink_to(shared, target_is_directory=True)
            stack = devstack.Stack(
                root=root,
                bq_port=devstack.free_port(),
                grpc_port=devstack.free_port(),
                gcs_port=devstack.free_port(),
            )
            print(f"starting the BigQuery emulator on {stack.bq_url} (data in {root}) ...", flush=True)
            try:
                devstack.up(stack, timeout=120)
            except BaseException:
                shutil.rmtree(root, ignore_errors=True)
                raise
            os.environ.update(stack.env())
            return devstack, stack, root
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        print(f"using the BigQuery emulator at {os.environ['BIGQUERY_EMULATOR_HOST']}", flush=True)
    else:
        print("BIGQUERY_EMULATOR_HOST is not set: using real BigQuery (Airflow connection / ADC)", flush=True)
    return None, None, None


def _run_worker(approach: str, args: argparse.Namespace, anchor: dt.datetime, run_id: str) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        approach,
        "--anchor",
        anchor.isoformat(),
        "--run-id",
        run_id,
    ]
    if args.window_quarters:
        command += ["--window-quarters", str(args.window_quarters)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            result = json.loads(line[len(RESULT_MARKER) :])
            result["process_seconds"] = round(wall, 3)
            return result
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return {"approach": approach, "tables": [], "error": f"worker exited with code {proc.returncode}:\n{tail}"}


def _drop_dev(client: Any, config: Any) -> None:
    for dataset in config.prod.datasets:
        name = config.dev_dataset(dataset)
        if not name.startswith(config.environments.dev.prefix) or name in config.prod.datasets:
            raise BenchError(f"refusing to drop {name}: not a dev dataset")
        client.delete_dataset(f"{config.project}.{name}", delete_contents=True, not_found_ok=True)


def _dev_rows(client: Any, config: Any) -> dict[str, int | None]:
    """Rows of every table now in dev (None for views), keyed by the prod name.

    Counted with count(*): table metadata (num_rows) is not reliable after DML on the emulator.
    """
    from google.api_core.exceptions import NotFound

    from envsync.core.identifiers import quote

    out: dict[str, int | None] = {}
    for dataset in config.prod.datasets:
        try:
            items = list(client.list_tables(f"{config.project}.{config.dev_dataset(dataset)}"))
        except NotFound:
            continue
        for item in items:
            if item.table_type == "VIEW":
                out[f"{dataset}.{item.table_id}"] = None
                continue
            sql = f"select count(*) as n from {quote(config.project, item.dataset_id, item.table_id)}"
            out[f"{dataset}.{item.table_id}"] = int(next(iter(client.query(sql, job_retry=None).result()))["n"])
    return out


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def _copied(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects an approach had to copy: envsync also reports `exclude: true` tables (not copied)."""
    return [t for t in tables if t.get("status") not in ("excluded", "skipped")]


def _jobs_summary(tables: list[dict[str, Any]]) -> str:
    jobs = [int(t.get("jobs") or 0) for t in tables]
    if not jobs:
        return "-"
    return f"{sum(jobs) / len(jobs):.1f} ({min(jobs)}-{max(jobs)})"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def _summary_rows(size: int, results: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    envsync_seconds = (results.get("envsync") or {}).get("seconds")
    for approach, r in results.items():
        if r.get("error") and r.get("seconds") is None:
            rows.append([f"{size:,}", approach, "-", "-", "-", "-", "-", "-", "-", "not run"])
            continue
        peak = max(r.get("peak_rss_sampled") or 0, r.get("ru_maxrss") or 0)
        increase = peak - (r.get("rss_after_imports") or 0)
        copied = _copied(r["tables"])
        ok = sum(1 for t in copied if t.get("status") == "ok")
        rows_in_dev = sum(int(t.get("rows") or 0) for t in r["tables"])
        ratio = "-"
        if approach == "naive" and envsync_seconds:
            ratio = f"{r['seconds'] / envsync_seconds:.1f}x"
        status = "ok" if not r.get("error") and ok == len(copied) else "FAILED"
        rows.append(
            [
                f"{size:,}",
                approach,
                f"{r['seconds']:.2f}",
                _mb(r.get("rss_after_imports")),
                _mb(increase),
                _jobs_summary(r["tables"]),
                f"{ok}/{len(copied)}",
                f"{rows_in_dev:,}",
                ratio,
                status,
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="demo prod sizes (rows of sales.orders), one run per size (default: %(default)s)",
    )
    parser.add_argument(
        "--ref-date",
        type=dt.date.fromisoformat,
        default=None,
        help="last day of the demo data (default: envsync.dev.demo's 2026-11-21)",
    )
    parser.add_argument(
        "--anchor",
        type=dt.datetime.fromisoformat,
        default=None,
        help="anchor A of the window, ISO with time zone (default: ref date 02:00 UTC)",
    )
    parser.add_argument("--window-quarters", type=int, default=None, help="default: the config's dev window")
    parser.add_argument("--approaches", nargs="+", choices=APPROACHES, default=list(APPROACHES))
    parser.add_argument(
        "--no-emulator",
        action="store_true",
        help="do not start an emulator; use BIGQUERY_EMULATOR_HOST or real BigQuery",
    )
    parser.add_argument("--details", action="store_true", help="also print a per-table table")
    parser.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    parser.add_argument("--worker", choices=APPROACHES, help=argparse.SUPPRESS)
    parser.add_argument("--run-id", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.anchor is not None and args.anchor.tzinfo is None:
        parser.error("--anchor needs a time zone, e.g. 2026-11-21T02:00:00+00:00")

    if args.worker:  # child process
        result = worker(args.worker, args.anchor, args.window_quarters, args.run_id)
        print(RESULT_MARKER + json.dumps(result, default=str), flush=True)
        return 0

    from envsync.core.clients import bigquery_client
    from envsync.core.config import ConfigError, load_config
    from envsync.dev import demo

    try:
        sizes = [demo.validate_rows(n) for n in args.rows]
    except ValueError as error:
        parser.error(f"--rows: {error}")
    ref_date = args.ref_date or demo.DEFAULT_REF_DATE
    anchor = args.anchor or dt.datetime.combine(ref_date, dt.time(2), tzinfo=UTC)
    try:
        config = load_config()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    devstack = stack = root = None
    all_results: list[dict[str, Any]] = []
    summary: list[list[str]] = []
    details: list[list[str]] = []
    failed = False
    try:
        devstack, stack, root = _start_emulator(args.no_emulator)
        client = bigquery_client(config.project, config.location)
        for size in sizes:
            print(f"\n== {size:,} rows: generating the demo prod ...", flush=True)
            started = time.monotonic()
            created = demo.create_demo_prod(client, config.project, config.location, size, ref_date)
            generate_seconds = time.monotonic() - started
            print(
                f"   generated {sum(v for k, v in created.items()):,} rows in {len(created)} objects "
                f"in {generate_seconds:.1f} s",
                flush=True,
            )
            results: dict[str, dict[str, Any]] = {}
            dev_rows: dict[str, dict[str, int | None]] = {}
            for approach in args.approaches:
                _drop_dev(client, config)
                run_id = f"bench_{size}_{approach}_{dt.datetime.now(UTC):%Y%m%dT%H%M%S%f}"
                print(f"   {approach}: syncing prod -> dev in a fresh process ...", flush=True)
                result = _run_worker(approach, args, anchor, run_id)
                results[approach] = result
                if result.get("error"):
                    failed = True
                    print(f"   {approach}: {result['error']}", flush=True)
                else:
                    print(f"   {approach}: {result['seconds']:.2f} s", flush=True)
                failed |= any(t.get("status") != "ok" for t in _copied(result["tables"]))
                dev_rows[approach] = _dev_rows(client, config)
            _drop_dev(client, config)
            if len(dev_rows) == 2 and all(not r.get("error") for r in results.values()):
                a, b = dev_rows["envsync"], dev_rows["naive"]
                diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
                if diff:
                    failed = True
                    print(f"   WARNING: dev differs between approaches (envsync, naive): {diff}", flush=True)
                else:
                    print(f"   dev is identical in row counts after both approaches ({len(a)} objects)", flush=True)
            summary.extend(_summary_rows(size, results))
            for approach, r in results.items():
                for t in r["tables"]:
                    details.append(
                        [
                            f"{size:,}",
                            approach,
                            t["table"],
                            str(t.get("action")),
                            "-" if t.get("rows") is None else f"{t['rows']:,}",
                            str(t.get("jobs")),
                            f"{t.get('seconds') or 0:.2f}",
                            str(t.get("status")) + (f": {t['error']}" if t.get("error") else ""),
                        ]
                    )
            all_results.append(
                {"rows": size, "generate_seconds": round(generate_seconds, 3), "demo_rows": created, "results": results}
            )
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        if devstack is not None:
            print("\nstopping the emulator ...", flush=True)
            devstack.down(stack)
            shutil.rmtree(root, ignore_errors=True)

    window = next((r["window"] for s in all_results for r in s["results"].values() if r.get("window")), None)
    print(f"\nwindow: {window}  anchor: {anchor.isoformat()}\n")
    print(
        _table(
            [
                "size",
                "approach",
                "wall s",
                "RSS after imports MB",
                "peak increase MB",
                "jobs/table avg (min-max)",
                "tables ok",
                "rows in dev",
                "naive/envsync",
                "status",
            ],
            summary,
            right={0, 2, 3, 4, 7, 8},
        )
    )
    if args.details:
        print()
        print(
            _table(
                ["size", "approach", "table", "action", "rows", "jobs", "seconds", "status"],
                details,
                right={0, 4, 5, 6},
            )
        )
    if args.json:
        args.json.write_text(json.dumps(all_results, indent=2, default=str))
        print(f"\nresults written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
