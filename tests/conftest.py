"""Shared test setup: an isolated Airflow home/DB, and the local BigQuery + GCS emulators.

The environment is set at import time, before any test module imports airflow, because Airflow
reads its configuration once, on first import. AIRFLOW__CORE__UNIT_TEST_MODE stays unset: it loads
a config that switches cron schedules to CronDataIntervalTimetable (see AIRFLOW.md).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

if "airflow" in sys.modules:  # pragma: no cover - a guard, not a code path
    raise RuntimeError(
        "airflow was imported before tests/conftest.py could point it at a temporary home; "
        "do not import airflow from pytest plugins or from outside the tests"
    )

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="envsync-tests-airflow-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)

for _var in ("AIRFLOW__CORE__UNIT_TEST_MODE", "AIRFLOW_CONFIG", "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
    os.environ.pop(_var, None)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
)

from envsync import devstack  # noqa: E402  (plugins/ is on sys.path via pytest.ini)


# Counter files of the BigQuery emulators started by this test run (see pytest_terminal_summary).
_ANALYZER_STATS: list[Path] = []


def _link_shared_extensions(root: Path) -> None:
    """Point <root>/home/.duckdb at the repo's extension cache (installed once, ~150 MB), and
    <root>/zetasql at the repo's compiled GoogleSQL analyzer (compiled once, ~25 s), if usable.

    Falls back to nothing: devstack.up then installs or compiles them under <root> itself.
    """
    shared = devstack.Stack(root=REPO_ROOT / ".devstack")
    _ANALYZER_STATS.append(devstack.Stack(root=root).analyzer_stats)
    try:
        devstack.ensure_extensions(shared)
    except (devstack.DevstackError, OSError):
        return
    (root / "home").mkdir(parents=True, exist_ok=True)
    link = root / "home" / ".duckdb"
    if not link.exists():
        link.symlink_to(shared.home / ".duckdb", target_is_directory=True)
    try:
        devstack.ensure_analyzer_cache(shared)
    except (devstack.DevstackError, OSError):
        return
    link = root / "zetasql"
    if not link.exists():
        link.symlink_to(shared.analyzer_cache, target_is_directory=True)


def analyzer_totals(paths: list[Path]) -> dict[str, Any] | None:
    """The GoogleSQL analyzer's counters summed over the emulators' counter files (None: none ran)."""
    totals: dict[str, Any] = {
        "analyzed": 0, "refused": 0, "not_found": 0, "passed": 0, "distinct": set(), "ms": 0.0, "cpu_ms": 0.0,
    }
    found = False
    for path in dict.fromkeys(paths):
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found = True
        for key in ("analyzed", "refused", "not_found"):
            totals[key] += int(stats.get(key) or 0)
        totals["passed"] += sum((stats.get("passed") or {}).values())
        totals["ms"] += float(stats.get("ms_per_statement") or 0) * int(stats.get("analyzed") or 0)
        totals["cpu_ms"] += float(stats.get("cpu_ms_per_statement") or 0) * int(stats.get("analyzed") or 0)
        totals["distinct"] |= set(stats.get("distinct") or [])
    return totals if found else None


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how much SQL the emulators' GoogleSQL analyzer checked (every query job goes through it)."""
    totals = analyzer_totals(_ANALYZER_STATS)
    if totals is None:
        return
    terminalreporter.write_sep("-", "GoogleSQL analyzer")
    terminalreporter.write_line(
        f"GoogleSQL analyzer: {totals['analyzed']} statements analyzed ({len(totals['distinct'])} distinct), "
        f"{totals['refused']} refused; {totals['passed']} passed through unanalyzed, "
        f"{totals['not_found']} naming a missing table left to the emulator"
    )
    if totals["analyzed"]:
        terminalreporter.write_line(
            f"GoogleSQL analyzer: {totals['ms'] / totals['analyzed']:.1f} ms a statement "
            f"({totals['cpu_ms'] / totals['analyzed']:.1f} ms CPU), catalog lookups included"
        )


@pytest.fixture
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., devstack.Stack]]:
    """Factory of devstack.Stack objects on free ports in fresh temp roots; all are stopped at teardown.

    Keyword arguments override Stack fields (e.g. venv=..., gcs_port=...). The stack is NOT started.
    """
    stacks: list[devstack.Stack] = []

    def factory(**overrides: Any) -> devstack.Stack:
        root = overrides.pop("root", None) or tmp_path_factory.mktemp("devstack")
        _link_shared_extensions(root)
        fields: dict[str, Any] = {
            "root": root,
            "bq_port": devstack.free_port(),
            "grpc_port": devstack.free_port(),
            "gcs_port": devstack.free_port(),
        }
        fields.update(overrides)
        stack = devstack.Stack(**fields)
        stacks.append(stack)
        return stack

    yield factory
    for stack in stacks:
        devstack.down(stack)


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Stack]:
    """Running BigQuery + GCS emulators for the session (empty data dirs, free ports).

    Sets BIGQUERY_EMULATOR_HOST / STORAGE_EMULATOR_HOST in os.environ while the session runs. The
    emulator's project is "envsync-demo" (config/envsync.yaml); tests create their own datasets and
    buckets.
    """
    root = tmp_path_factory.mktemp("emulators")
    _link_shared_extensions(root)
    stack = devstack.Stack(
        root=root,
        bq_port=devstack.free_port(),
        grpc_port=devstack.free_port(),
        gcs_port=devstack.free_port(),
    )
    devstack.up(stack, timeout=120)
    saved = {key: os.environ.get(key) for key in stack.env()}
    os.environ.update(stack.env())
    try:
        yield stack
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        devstack.down(stack)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A fresh Airflow metadata DB (SQLite in the session's temp AIRFLOW_HOME); returns its URL.

    Needed by dag.test() and anything else that touches the metadata DB.
    """
    from airflow.utils.db import resetdb

    resetdb()
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
