"""Benchmark: load time of the envsync page with 1,000 prod tables and 90 days of audit rows.

In one run:
  1. start a fresh private BigQuery + GCS emulator (envsync.dev.devstack);
  2. build the history server-side, each audit table filled by one INSERT ... SELECT over
     GENERATE_ARRAY (tests/uikit.py `seed_scale`): hourly backup_ladder runs with one snapshot action
     per table (--tables x 24 x --days rows), a daily drill (one row per table), weekly dev syncs and
     qa/staging reseeds; --snapshots snapshots per table in backup_sales (empty snapshots: the page
     reads their names) and today's snapshot-job ledger for every table;
  3. read the page's figures --repeat times without the cache (`DashboardReader.read`: the queries of
     sql/dashboard/, in parallel) and render the HTML, then serve it --repeat times through the app with
     its one-minute cache (a FastAPI test client, GET /), and, when chromium is installed, load the HTML
     in headless chromium (Playwright) and time it until the load event;
  4. print the figures (median and worst of the repeats).

    PYTHONPATH=plugins .venv/bin/python bench/bench_ui.py                       # 1,000 tables, 90 days
    PYTHONPATH=plugins .venv/bin/python bench/bench_ui.py --tables 100 --days 30 --snapshots 2

See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for _path in (REPO_ROOT / "plugins", REPO_ROOT / "tests", REPO_ROOT / "tests" / "e2e", BENCH_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

PROJECT = "envsync-benchui"
BUCKET = "envsync-benchui-state"


def _start_emulator() -> tuple[Any, Path]:
    """A fresh private emulator (the sibling benchmark's start, sharing the installed extensions)."""
    from bench_scale import _start_emulator as start

    from envsync.dev import devstack

    return start(devstack)


def _config(tmp: Path) -> Path:
    import yaml

    data = yaml.safe_load((REPO_ROOT / "config" / "envsync.yaml").read_text())
    data.update(project=PROJECT)
    data["prod"]["datasets"] = ["sales"]
    data["state"]["bucket"] = BUCKET
    path = tmp / "envsync.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def build(args: argparse.Namespace, now: dt.datetime) -> dict[str, Any]:
    import uikit
    from google.cloud import bigquery

    from envsync.backups.ladder import snapshot_name
    from envsync.core.clients import bigquery_client, storage_client
    from envsync.core.identifiers import quote

    client, storage = bigquery_client(PROJECT, "US"), storage_client(PROJECT)
    figures: dict[str, Any] = {}
    for name in ("sales", "backup_sales"):
        ds = bigquery.Dataset(f"{PROJECT}.{name}")
        ds.location = "US"
        client.create_dataset(ds, exists_ok=True)
    storage.create_bucket(BUCKET)
    started = time.monotonic()
    uikit.create_audit(client, PROJECT, "envsync_audit")
    rows = uikit.seed_scale(client, PROJECT, "envsync_audit", tables=args.tables, days=args.days, now=now)
    figures["audit_rows"] = rows
    figures["audit_seconds"] = time.monotonic() - started
    print(f"audit rows: {rows} in {figures['audit_seconds']:.1f}s", flush=True)

    started = time.monotonic()
    hour = now.replace(minute=0, second=0, microsecond=0)
    stamps = [hour - dt.timedelta(days=d) for d in range(args.snapshots)]
    names = [snapshot_name(f"t{t:05d}", at) for t in range(args.tables) for at in stamps]
    for start in range(0, len(names), 200):  # a script of CREATE TABLE statements per 200 snapshots
        script = ";\n".join(
            f"create table {quote(PROJECT, 'backup_sales', n)} (id int64)" for n in names[start : start + 200]
        )
        client.query(script, job_retry=None).result()
    figures["snapshot_tables"] = len(names)
    figures["snapshot_seconds"] = time.monotonic() - started
    print(f"backup_sales: {len(names):,} snapshot tables in {figures['snapshot_seconds']:.1f}s", flush=True)
    storage.bucket(BUCKET).blob(f"backup_jobs/sales/{now.date().isoformat()}.json").upload_from_string(
        json.dumps({f"t{t:05d}": 1 + t % 30 for t in range(args.tables)}), content_type="application/json"
    )
    return figures


def measure(args: argparse.Namespace, config_path: Path) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from envsync.core.clients import bigquery_client, storage_client
    from envsync.core.config import load_config
    from envsync.core.manifest import ManifestStore
    from envsync.ui.app import create_app
    from envsync.ui.data import DashboardReader
    from envsync.ui.page import render_page

    config = load_config(config_path)
    reader = DashboardReader(config, bigquery_client(PROJECT, "US"), ManifestStore(storage_client(PROJECT), BUCKET))
    reads, renders, per_query = [], [], []
    board = None
    for _ in range(args.repeat):
        started = time.monotonic()
        board = reader.read()
        reads.append(time.monotonic() - started)
        per_query.append(dict(reader.timings))
        started = time.monotonic()
        html = render_page(board)
        renders.append(time.monotonic() - started)
    html_all = render_page(board, coverage_limit=None)
    assert board is not None
    client = TestClient(create_app(reader.read, auth=lambda: None))
    served = []
    for _ in range(args.repeat):
        started = time.monotonic()
        response = client.get("/")
        served.append(time.monotonic() - started)
        assert response.status_code == 200, response.text[:500]
    figures = {
        "tables_shown": len(board.coverage),
        "drill_runs": len(board.drills),
        "environments": len(board.environments),
        "html_bytes": len(html.encode()),
        "html_all_bytes": len(html_all.encode()),
        "read_seconds": reads,
        "query_seconds": per_query,
        "render_seconds": renders,
        "served_cached_seconds": served[1:],
        "served_first_seconds": served[0],
    }
    from browser import browser, chromium_missing

    if chromium_missing() is None:
        with browser() as chromium:
            page = chromium.new_page(viewport={"width": 1440, "height": 1000})
            for key, document in (("browser_load_seconds", html), ("browser_load_all_seconds", html_all)):
                loads = []
                for _ in range(args.repeat):
                    started = time.monotonic()
                    page.set_content(document, wait_until="load")
                    loads.append(time.monotonic() - started)
                figures[key] = loads
    return figures


from envsync.ui.page import COVERAGE_ROWS  # noqa: E402 (used by the report below; kept next to it)


def _stat(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f}s, worst {max(values):.3f}s" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=1000, help="prod tables (default: %(default)s)")
    parser.add_argument("--days", type=int, default=90, help="days of audit history (default: %(default)s)")
    parser.add_argument(
        "--snapshots", type=int, default=1, help="snapshots per table in backup_sales (default: %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="reads and page loads measured (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    args = parser.parse_args(argv)

    from envsync.dev import devstack

    now = dt.datetime.now(dt.UTC)
    stack, root = _start_emulator()
    try:
        import os

        os.environ["ENVSYNC_CONFIG"] = str(_config(root))
        figures = {
            "tables": args.tables,
            "days": args.days,
            "snapshots_per_table": args.snapshots,
            "date": now.date().isoformat(),
            **build(args, now),
        }
        figures.update(measure(args, Path(os.environ["ENVSYNC_CONFIG"])))
    finally:
        devstack.down(stack)
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nenvsync page, {args.tables:,} tables, {args.days} days of audit rows "
        f"({sum(figures['audit_rows'].values()):,} rows), {figures['snapshot_tables']:,} snapshots:"
    )
    print(f"  figures read (queries, no cache):   {_stat(figures['read_seconds'])}")
    queries = figures["query_seconds"]
    print(
        "  of which each query (median):       "
        + ", ".join(f"{name} {statistics.median(q[name] for q in queries):.2f}s" for name in queries[0])
    )
    print(
        f"  HTML rendered:                      {_stat(figures['render_seconds'])} "
        f"({figures['html_bytes'] / 1024:.0f} KB)"
    )
    print(f"  GET / first (cache empty):          {figures['served_first_seconds']:.3f}s")
    print(f"  GET / cached:                       {_stat(figures['served_cached_seconds'])}")
    if "browser_load_seconds" in figures:
        print(
            f"  chromium load of the page:          {_stat(figures['browser_load_seconds'])} "
            f"(the {COVERAGE_ROWS} tables with the largest gaps drawn)"
        )
        print(
            f"  chromium load, every table drawn:   {_stat(figures['browser_load_all_seconds'])} "
            f"({figures['html_all_bytes'] / 1024:.0f} KB, ?tables=all)"
        )
    print(
        f"  shown: {figures['tables_shown']:,} tables, {figures['drill_runs']} drill runs, "
        f"{figures['environments']} environments"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
