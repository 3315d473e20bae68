"""Screenshot of the Airflow UI's trigger form of `prod_to_dev_sync`, for the README (docs/trigger-form.png).

Usage (from the repository root):

    .venv/bin/python scripts/screenshot_trigger_form.py [--output docs/trigger-form.png] [--timeout 90]
                                                        [--dag-id prod_to_dev_sync] [--keep-home]

What it does:
1. starts a real, throw-away Airflow cluster with the end-to-end harness (`tests/e2e/cluster.py`:
   a fresh Postgres database, api-server / scheduler / dag-processor on 127.0.0.1, LocalExecutor);
   parsing the DAGs needs only the configuration (ENVSYNC_CONFIG, default config/envsync.yaml), no
   BigQuery emulator;
2. waits until the dag-processor has serialized the DAG;
3. drives headless chromium with Playwright (`tests/e2e/browser.py`: Debian's chromium through
   `executable_path`, $ENVSYNC_CHROMIUM to use another): signs in with the cluster's JWT as the `_token`
   cookie, opens the DAG, clicks "Trigger", expands "Run Parameters", waits until every param's title
   is shown and captures the dialog as a PNG;
4. always stops the browser and the cluster (which drops its database and AIRFLOW_HOME).

Needs: PostgreSQL on 127.0.0.1:5432 accepting the user `postgres` without a password (trust), and
Debian's `chromium` package (plus `fonts-dejavu-core`). About 30-40 s on 2 cores.
Exit status: 0 on success, 1 on a failure (the message names the step, with the cluster's logs), 2 when
a prerequisite is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

from browser import browser, capture_trigger_form, chromium_missing, param_titles, signed_in_context  # noqa: E402 (after the sys.path line above)
from cluster import AirflowCluster, ClusterError, postgres_reachable  # noqa: E402 (after the sys.path line above)

DEFAULT_DAG_ID = "prod_to_dev_sync"
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "trigger-form.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="PNG to write (default: %(default)s)")
    parser.add_argument("--dag-id", default=DEFAULT_DAG_ID)
    parser.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds for the DAG to appear and, again, for the browser steps (default: %(default)s)",
    )
    parser.add_argument("--keep-home", action="store_true", help="keep the cluster's AIRFLOW_HOME (its logs)")
    args = parser.parse_args(argv)

    for reason in (postgres_reachable(), chromium_missing()):
        if reason:
            print(f"error: {reason}", file=sys.stderr)
            return 2

    from playwright.sync_api import Error as PlaywrightError

    started = time.monotonic()
    config = os.environ.get("ENVSYNC_CONFIG") or str(REPO_ROOT / "config" / "envsync.yaml")
    cluster = AirflowCluster(extra_env={"ENVSYNC_CONFIG": config}, keep_home=args.keep_home)
    try:
        cluster.start()
        print(f"cluster {cluster.name} up at {cluster.base_url} in {cluster.timings['start']:.1f}s", flush=True)
        details = cluster.wait_for_dag(args.dag_id, timeout=args.timeout)
        titles = param_titles(details)
        print(f"{args.dag_id} serialized after {time.monotonic() - started:.1f}s; params: {titles}", flush=True)
        with browser() as chromium:
            context = signed_in_context(chromium, cluster.base_url, cluster.token(), height=1200)
            png = capture_trigger_form(context.new_page(), args.dag_id, titles, timeout_ms=args.timeout * 1000)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(png)
        print(f"wrote {args.output} ({len(png) / 1024:.0f} KB) after {time.monotonic() - started:.1f}s", flush=True)
    except (ClusterError, PlaywrightError, OSError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        if args.keep_home:
            print(f"AIRFLOW_HOME kept: {cluster.home}", file=sys.stderr)
        print(f"stopped; total {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
