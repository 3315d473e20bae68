"""How long each DAG file takes to parse, as Airflow's DAG processor parses it over and over.

    PYTHONPATH=plugins .venv/bin/python bench/bench_parse.py [--repeat 5]

Each file is executed in a fresh interpreter that has already imported `airflow.sdk` (the DAG
processor has it loaded), after one unmeasured warm-up parse of every file (bytecode written), and
the median of `--repeat` parses is printed against the budget of 1.0 s per file (Airflow's
`dagbag_import_timeout` defaults to 30 s; envsync keeps top-level code cheap: no BigQuery, GCS,
pandas or sqlglot import at parse time, which tests/dags asserts). Exit code 0; a file over the
budget is printed as OVER.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 1.0
SCRIPT = """
import importlib.util, json, sys, time
import airflow.sdk
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
start = time.perf_counter()
spec.loader.exec_module(module)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="parses per file (median printed)")
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("ENVSYNC_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "plugins"), env.get("PYTHONPATH", "")]))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    files = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    warm = "import runpy, sys\nfor path in sys.argv[1:]:\n    runpy.run_path(path)"
    subprocess.run([sys.executable, "-c", warm, *map(str, files)], env=env, cwd=ROOT, capture_output=True, check=False)
    print(f"{'DAG file':28} {'median s':>9} {'max s':>7}  budget {BUDGET_SECONDS:.1f} s")
    for path in files:
        times = []
        for _ in range(args.repeat):
            proc = subprocess.run(
                [sys.executable, "-c", SCRIPT, str(path)], env=env, cwd=ROOT, capture_output=True, text=True, check=True
            )
            times.append(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])
        median = statistics.median(times)
        flag = "" if median < BUDGET_SECONDS else "  OVER"
        print(f"{path.name:28} {median:9.3f} {max(times):7.3f}{flag}")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
