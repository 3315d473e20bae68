"""DAG runs in processes of their own (tests/integration/dagproc.py), as two Airflow deployments sharing
one BigQuery and one GCS would run them: two `parity` runs (a DAG that only reads the environments)
run at the same time in two processes, each with its own Airflow home and metadata DB, and both
succeed with their own logs; a run killed with SIGKILL mid-run is dead, with its whole process group,
and has no result.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from dagproc import DagProcess, DagProcessError

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.gcp_incompatible]

# dag.test() logs these around a task (airflow/sdk/definitions/dag.py, _run_task)
TASK_STARTED = r"\[DAG TEST\] running task"
TASK_ENDED = r"\[DAG TEST\] end task"


def logged_at(proc: DagProcess, pattern: str) -> dt.datetime:
    """When the process's log first matched `pattern` (the timestamp that starts Airflow's log lines)."""
    line = next(line for line in proc.log_text().splitlines() if re.search(pattern, line))
    return dt.datetime.fromisoformat(line.split()[0])


def test_two_parity_runs_run_at_the_same_time_in_two_processes_and_both_succeed(
    prod: Any, dag_processes: Callable[..., DagProcess]
) -> None:
    began = time.monotonic()
    first = dag_processes("parity", conf={"environments": ["dev"]})
    second = dag_processes("parity", conf={"environments": ["dev"]})
    assert first.pid != second.pid and first.home != second.home
    assert first.alive() and second.alive()

    results = [first.wait(timeout=120), second.wait(timeout=120)]
    for proc, result in zip((first, second), results, strict=True):
        assert result["state"] == "success", (result, proc.log_tail())
        assert result["tasks"] == {"check[-1]": "success"}, result
        assert result["dag_id"] == "parity" and result["pid"] == proc.pid
        assert proc.returncode == 0 and not proc.alive()
        log = proc.log_text()
        assert proc.log_path.is_file() and proc.log_path.is_relative_to(proc.home)
        assert "[DAG TEST] starting task_id=check" in log and result["run_id"] in log
        assert (proc.home / "airflow.db").is_file()
    assert results[0]["run_id"] != results[1]["run_id"]
    # each task began before the other one ended: the two runs ran at the same time
    windows = [(logged_at(proc, TASK_STARTED), logged_at(proc, TASK_ENDED)) for proc in (first, second)]
    assert max(start for start, _ in windows) < min(end for _, end in windows), windows
    print(
        f"two parity runs in {time.monotonic() - began:.1f} s; timings (s): "
        + "; ".join(str({k: round(v, 2) for k, v in r["timings"].items()}) for r in results)
    )


def test_a_run_killed_mid_run_with_sigkill_is_dead_with_its_process_group(
    prod: Any, dag_processes: Callable[..., DagProcess]
) -> None:
    import psutil

    proc = dag_processes("parity", conf={"environments": ["dev"]})
    proc.wait_for_log(TASK_STARTED, timeout=120)
    assert proc.alive() and proc.result() is None

    proc.kill()

    assert not proc.alive() and proc.returncode == -9
    assert not psutil.pid_exists(proc.pid)  # reaped
    with pytest.raises(DagProcessError, match=r"without a result"):
        proc.wait(timeout=5)
    assert "[DAG TEST] running task" in proc.log_text()
    proc.kill()  # again: harmless


def test_an_unknown_dag_ends_the_process_with_the_dags_it_knows(dag_processes: Callable[..., DagProcess]) -> None:
    proc = dag_processes("no_such_dag")
    result = proc.wait(timeout=60)
    assert result["state"] == "import_error" and result["run_id"] is None and result["errors"] == {}
    assert "parity" in result["dags"] and proc.returncode == 3
