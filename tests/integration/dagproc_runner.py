"""Run one DAG run of the repo's dags/ with dag.test() in this process: the body of a `dagproc.DagProcess`
(tests/integration/dagproc.py starts it; not a test module).

    python dagproc_runner.py <dag_id> --result FILE [--conf JSON] [--logical-date ISO|none]

Airflow's home, metadata DB, DAG and plugin folders and the emulator endpoints come from the
environment dagproc.start_dag prepares. The DAG is taken from a DagBag of the DAG folder (import errors
fail the process); dag.test() writes the bundle's DAGs to this home's DB itself, then runs every task
in this process, its logs on stdout. At the end one JSON line goes to stdout and to FILE:
{"dag_id", "run_id", "state", "tasks": {"<task>[<map index>]": state}, "pid", "timings": {seconds}}.
Exit code 0 when the run finished (whatever its state), 3 on DAG import errors; an exception leaves a
traceback and exit code 1. The process ends with os._exit once the result is written (see below).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

RESULT_KEY = "dagproc_result"


def _logical_date(value: str | None) -> dt.datetime | None:
    if value is None or value.lower() == "none":
        return None
    when = dt.datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _write(path: Path, result: dict[str, Any]) -> None:
    line = json.dumps({RESULT_KEY: True, **result}, default=str)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(line + "\n")
    partial.replace(path)  # atomic: a reader sees the whole result or none
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dagproc_runner", description=__doc__.splitlines()[0])
    parser.add_argument("dag_id")
    parser.add_argument("--result", type=Path, required=True, help="where the JSON result line is written")
    parser.add_argument("--conf", default="{}", help="the run's conf (JSON object)")
    parser.add_argument("--logical-date", default=None, help="ISO 8601 (UTC when naive); omitted or none: none")
    args = parser.parse_args(argv)
    began = time.monotonic()
    timings: dict[str, float] = {}
    print(f"dagproc_runner: pid {os.getpid()}, AIRFLOW_HOME={os.environ.get('AIRFLOW_HOME')}", flush=True)

    from airflow.dag_processing.dagbag import DagBag

    timings["import_airflow"] = time.monotonic() - began
    folder = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
    bag = DagBag(dag_folder=folder)
    timings["parse_dags"] = time.monotonic() - began - timings["import_airflow"]
    base = {"dag_id": args.dag_id, "pid": os.getpid()}
    if bag.import_errors or args.dag_id not in bag.dags:
        errors = {str(k): v for k, v in bag.import_errors.items()}
        timings["total"] = time.monotonic() - began
        failed = {"run_id": None, "state": "import_error", "tasks": {}, "errors": errors, "dags": sorted(bag.dags)}
        _write(args.result, {**base, **failed, "timings": timings})
        return 3
    dag = bag.dags[args.dag_id]
    ran = time.monotonic()
    dag_run = dag.test(logical_date=_logical_date(args.logical_date), run_conf=json.loads(args.conf))
    timings["dag_test"] = time.monotonic() - ran
    tasks = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}
    timings["total"] = time.monotonic() - began
    _write(
        args.result,
        {**base, "run_id": dag_run.run_id, "state": str(dag_run.state), "tasks": tasks, "timings": timings},
    )
    return 0


if __name__ == "__main__":
    code = main()
    # The run is over and its result written: skip the interpreter's shutdown, whose garbage collection
    # of the modules Airflow, pandas and pyarrow load took 2.5 s (measured on a 2-core machine).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
