"""DAG runs in OS processes of their own, as a second Airflow deployment would run them.

`run_dag` (tests/integration/conftest.py) runs a DAG in the pytest process with dag.test(); one run at
a time, and it cannot be killed. `start_dag` starts `python dagproc_runner.py <dag_id>` instead: a
process with its own AIRFLOW_HOME and its own SQLite metadata DB (a copy of a migrated template DB:
no `airflow db migrate` per process), the same emulator endpoints and envsync settings as the test
(inherited from os.environ, overridden by `env`), in its own process group. It runs dag.test() on the
DAG from a DagBag of the repo's dags/ and ends by printing one JSON line: run id, run state, every
task's state (dagproc_runner.py). All its output, task logs included, goes to `log_path`.

    a = start_dag("parity", home=tmp_path / "airflow-a", template_db=template, conf={...})
    b = start_dag("parity", home=tmp_path / "airflow-b", template_db=template, env={"ENVSYNC_CONFIG": ...})
    a.wait_for_log(r"\\[DAG TEST\\] running task")   # a is mid-run
    a.kill()                                         # SIGKILL to its whole process group
    result = b.wait(timeout=120)                     # {"run_id", "state", "tasks", "timings", ...}

In tests use the `dag_processes` fixture (tests/integration/conftest.py): it passes the session's
template DB and kills every process still alive at teardown. Processes not killed by then are killed
when the Python process exits (atexit).

dag.test() in a fresh process with a copied, empty (migrated) DB needs nothing else: it writes the DAG
bundle to the DB itself (DagBundlesManager.sync_bundles_to_db, then sync_bag_to_db of every DAG in
dags/, serialized) before it creates the run. Two homes are two deployments: their run ids, task
instances and `envsync.core.lease.deployment_id()` (a hash of the DB URL unless ENVSYNC_DEPLOYMENT is
set) are their own; the same home run again is the same deployment, its earlier runs in its DB.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().with_name("dagproc_runner.py")
DB_NAME = "airflow.db"
# Not passed on to a DAG process: a deployment is not pytest (Airflow's logging setup re-raises
# errors while PYTEST_CURRENT_TEST is set) and reads no test-mode or other config file.
NOT_INHERITED = ("AIRFLOW__CORE__UNIT_TEST_MODE", "AIRFLOW_CONFIG", "PYTHONHOME", "PYTHONSTARTUP")
NOT_INHERITED_PREFIXES = ("PYTEST_",)

_numbers = itertools.count(1)
_live: set[DagProcess] = set()  # started and not killed: killed at exit


class DagProcessError(RuntimeError):
    """A DAG process ended without its result line, or did not end in time; the message has its log tail."""


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite DB (the backup API: also right while another connection uses it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def process_env(home: Path, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a DAG process: this process's (emulator endpoints, ENVSYNC_* settings, Airflow
    connections given as AIRFLOW_CONN_*), Airflow pointed at `home` and its DB and at the repo's DAGs
    and plugins, then `env` (a None value unsets a variable)."""
    result = {
        key: value
        for key, value in os.environ.items()
        if key not in NOT_INHERITED and not key.startswith(NOT_INHERITED_PREFIXES)
    }
    python_path = [str(REPO_ROOT / "plugins"), *([result["PYTHONPATH"]] if result.get("PYTHONPATH") else [])]
    result.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / DB_NAME}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": os.pathsep.join(python_path),
            "PYTHONUNBUFFERED": "1",  # the log interleaves as it happened
        }
    )
    for key, value in (env or {}).items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


class DagProcess:
    """One DAG run in a process of its own (a process group: `pid` is also its group id)."""

    def __init__(self, dag_id: str, home: Path, log_path: Path, result_path: Path, popen: subprocess.Popen) -> None:
        self.dag_id = dag_id
        self.home = home
        self.log_path = log_path
        self.result_path = result_path
        self.popen = popen
        self.started = time.monotonic()

    def __repr__(self) -> str:
        state = "alive" if self.alive() else f"exit {self.popen.returncode}"
        return f"DagProcess({self.dag_id!r}, pid {self.pid}, {state}, log {self.log_path})"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code (-9: SIGKILL), None while the process runs."""
        return self.popen.poll()

    def log_text(self) -> str:
        """Everything the process wrote so far (stdout and stderr, task logs included)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().rstrip().splitlines()[-lines:]) or "(the log is empty)"

    def result(self) -> dict[str, Any] | None:
        """The run's result line, once the runner wrote it (None before, or when it never will)."""
        try:
            return json.loads(self.result_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _members(self) -> list[psutil.Process]:
        """Live (not zombie) processes of this process group: the runner and anything it started."""
        members = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == self.pid and proc.status() != psutil.STATUS_ZOMBIE:
                    members.append(proc)
        return members

    def alive(self) -> bool:
        """True while the runner, or any process of its group, still runs."""
        return self.popen.poll() is None or bool(self._members())

    def wait(self, timeout: float = 300) -> dict[str, Any]:
        """Wait for the process to end; its result: {"dag_id", "run_id", "state", "tasks": {"<task>[<map
        index>]": state}, "pid", "timings"} ("state" "import_error" with "errors" when the DAGs do not
        import). Raises DagProcessError, with the log tail, when it does not end within `timeout` (it is
        left running) or ends without a result (killed, crashed)."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DagProcessError(
                f"{self!r} still runs after {timeout:g} s; end of its log:\n{self.log_tail()}"
            ) from None
        result = self.result()
        if result is None:
            raise DagProcessError(
                f"{self!r} ended (exit {self.popen.returncode}) without a result; end of its log:\n{self.log_tail()}"
            )
        return result

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 120) -> re.Match[str]:
        """Wait until the log matches `pattern` (a regular expression); the match. Raises DagProcessError
        when the process ends first or `timeout` passes."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            ended = self.popen.poll() is not None
            if found := regex.search(self.log_text()):
                return found
            if ended or time.monotonic() > deadline:
                why = f"ended (exit {self.popen.returncode})" if ended else f"still runs after {timeout:g} s"
                raise DagProcessError(
                    f"{self!r} {why} and its log never matched {regex.pattern!r}; end of its log:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def kill(self, timeout: float = 10) -> None:
        """SIGKILL the whole process group, reap the runner, and wait until no process of the group
        is left (DagProcessError if one survives `timeout`). Harmless when it already ended."""
        if self.popen.poll() is None or self._members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        deadline = time.monotonic() + timeout
        while (left := self._members()) and time.monotonic() < deadline:
            for proc in left:  # members that left the group (setsid) still get the signal
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            time.sleep(0.05)
        _live.discard(self)
        if self.popen.poll() is None or left:
            raise DagProcessError(f"{self!r}: pids {[p.pid for p in left] or [self.pid]} survive SIGKILL")


def start_dag(
    dag_id: str,
    *,
    home: Path,
    conf: dict[str, Any] | None = None,
    env: Mapping[str, str | None] | None = None,
    logical_date: dt.datetime | None = None,
    template_db: Path | None = None,
    log_path: Path | None = None,
    python: str | Path = sys.executable,
) -> DagProcess:
    """Start one run of `dag_id` (dag.test, conf `conf`, logical date `logical_date`: None is a run
    without one, as a manual trigger) in a process of its own, and return at once.

    `home` is the process's AIRFLOW_HOME (created when missing); its metadata DB is `home/airflow.db`,
    copied from `template_db` (a migrated Airflow DB, e.g. the `airflow_db_template` fixture's) unless
    the home already has one: a home run again keeps its DB and earlier runs, as a deployment does.
    The environment is this process's with Airflow pointed at `home` and the repo, then `env` (see
    process_env). Output goes to `log_path` (default `home/dagproc-<n>-<dag_id>.log`), the result line
    also to `<log_path>.result.json`.
    """
    home = Path(home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    db = home / DB_NAME
    if not db.exists():
        if template_db is None:
            raise DagProcessError(f"{home} has no {DB_NAME}: pass template_db (a migrated Airflow DB)")
        copy_sqlite(Path(template_db), db)
    number = next(_numbers)
    log_path = Path(log_path or home / f"dagproc-{number}-{dag_id}.log").absolute()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    result_path = log_path.with_name(log_path.name + ".result.json")
    result_path.unlink(missing_ok=True)
    cmd = [str(python), str(RUNNER), dag_id, "--result", str(result_path), "--conf", json.dumps(conf or {})]
    cmd += ["--logical-date", logical_date.isoformat() if logical_date is not None else "none"]
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=str(home),
            env=process_env(home, env),
            start_new_session=True,  # its own process group: kill() reaches whatever it starts
        )
    proc = DagProcess(dag_id, home, log_path, result_path, popen)
    _live.add(proc)
    return proc


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.kill(timeout=5)
