"""Shared test setup: an isolated Airflow home/DB, and the local BigQuery + GCS emulators (or, under
`make test-gcp`, a real GCP sandbox project instead: see tests/sandbox.py).

The environment is set at import time, before any test module imports airflow, because Airflow
reads its configuration once, on first import. AIRFLOW__CORE__UNIT_TEST_MODE stays unset: it loads
a config that switches cron schedules to CronDataIntervalTimetable (see AIRFLOW.md).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
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

import sandbox  # noqa: E402  (tests/ is on sys.path: this conftest's folder)

from envsync.dev import devstack  # noqa: E402  (plugins/ is on sys.path via pytest.ini)


def pytest_configure(config: pytest.Config) -> None:
    """Under `make test-gcp`: check the sandbox project before any test is collected; on a problem
    stop at once with one message (pytest exit code 4), having created nothing."""
    if not sandbox.ON_GCP:
        return
    try:
        sandbox.start_gcp_session()
    except sandbox.SandboxError as error:
        raise pytest.UsageError(str(error)) from None
    import signal

    def _interrupt(signum: int, frame: Any) -> None:  # SIGTERM unwinds like Ctrl-C: clean-up still runs
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _interrupt)


def pytest_report_header(config: pytest.Config) -> str | None:
    if sandbox.ON_GCP:
        return (
            f"test-gcp: project {sandbox.sandbox_project()}, run prefix {sandbox.RUN_PREFIX} (every dataset "
            "and bucket of this run starts with it and is deleted at the end)"
        )
    if sandbox.NAMESPACED:
        return f"emulators, run prefix {sandbox.RUN_PREFIX} in project {sandbox.EMULATOR_SANDBOX_PROJECT}"
    return None


from ciskips import SKIP_ALLOWLIST, allowed_skips, on_ci, unlisted_skips  # noqa: E402  (tests/ is on sys.path)

_SKIPPED: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The season test first: it is the longest by far (minutes, one worker), and pytest-xdist's
    worksteal hands each worker a contiguous share of the collection, so a season collected late
    ran alone at the end of `make test` while the other worker had nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("season") is None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember every skipped test and its reason (on the xdist controller too: workers send reports)."""
    if report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        _SKIPPED[report.nodeid] = str(reason).removeprefix("Skipped: ")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, an unlisted skip fails the run. After every fixture's teardown: delete what this run
    created on the sandbox project."""
    if on_ci() and getattr(session.config, "workerinput", None) is None:
        if unlisted_skips(_SKIPPED, allowed_skips()):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if not sandbox.ON_GCP:
        return
    done = sandbox.finish()
    if done is not None and done.left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _skips_summary(terminalreporter: Any) -> None:
    if not on_ci() or getattr(terminalreporter.config, "workerinput", None) is not None:
        return
    unlisted = unlisted_skips(_SKIPPED, allowed_skips())
    if not unlisted:
        return
    terminalreporter.write_sep("-", "skips under CI", red=True)
    for test, reason in sorted(unlisted.items()):
        terminalreporter.write_line(
            f"SKIPPED under CI and not in tests/{SKIP_ALLOWLIST.name}: {test}: {reason}", red=True
        )
    terminalreporter.write_line(
        f"CI=true: every test must run; provision what they need (.ci/run) or list them with the reason in "
        f"tests/{SKIP_ALLOWLIST.name}",
        red=True,
    )


def _sandbox_summary(terminalreporter: Any) -> None:
    done = sandbox.current()
    if done is not None and done.done:
        terminalreporter.write_line(done.summary(), red=bool(done.left), yellow=bool(done.leaked))


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
        "analyzed": 0,
        "refused": 0,
        "not_found": 0,
        "passed": 0,
        "distinct": set(),
        "ms": 0.0,
        "cpu_ms": 0.0,
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


# Where the season test (tests/integration/test_season.py) leaves its figure, and when this run began:
# the summary shows the figure of a season played by this run (on any xdist worker).
SEASON_FIGURE = REPO_ROOT / ".devstack" / "season.json"
_SESSION_STARTED = time.time()


def _season_summary(terminalreporter: Any) -> None:
    try:
        if SEASON_FIGURE.stat().st_mtime < _SESSION_STARTED:
            return
        summary = json.loads(SEASON_FIGURE.read_text())["summary"]
    except (OSError, ValueError, KeyError):
        return
    terminalreporter.write_sep("-", "season")
    terminalreporter.write_line(summary)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """test-gcp's clean-up line; the season's figure; how much SQL the emulators' GoogleSQL analyzer
    checked (every query job)."""
    _sandbox_summary(terminalreporter)
    _skips_summary(terminalreporter)
    _season_summary(terminalreporter)
    paths = list(_ANALYZER_STATS)
    if not paths and getattr(terminalreporter.config, "workerinput", None) is None:
        # the controller of an xdist run: the workers' emulators ran under its base temp directory
        with contextlib.suppress(OSError, ValueError):
            base = terminalreporter.config._tmp_path_factory.getbasetemp()
            # resolved: pytest also links each temp directory as <name>current
            paths = sorted(
                {
                    p.resolve()
                    for pattern in ("*/emulators*/run/analyzer.json", "*/devstack*/run/analyzer.json")
                    for p in base.glob(pattern)
                }
            )
    totals = analyzer_totals(paths)
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


def _stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., devstack.Stack]]:
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


@pytest.fixture
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., devstack.Stack]]:
    """Stacks of one test (`_stacks`): stopped when the test ends."""
    yield from _stacks(tmp_path_factory)


@pytest.fixture(scope="module")
def make_module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., devstack.Stack]]:
    """Stacks shared by the tests of one module (`_stacks`): stopped when the module ends."""
    yield from _stacks(tmp_path_factory)


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Stack | None]:
    """Running BigQuery + GCS emulators for the session (empty data dirs, free ports).

    Sets BIGQUERY_EMULATOR_HOST / STORAGE_EMULATOR_HOST in os.environ while the session runs. The
    emulator's project is "envsync-demo" (config/envsync.yaml); tests create their own datasets and
    buckets. Under `make test-gcp` nothing is started (yields None): the clients go to the sandbox
    project. With run prefixes (sandbox.NAMESPACED), ENVSYNC_CONFIG points at the shipped config made
    real for the main namespace while the session runs.
    """
    if sandbox.ON_GCP:
        with _namespaced_config():
            yield None
        return
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
        if sandbox.NAMESPACED:
            with _namespaced_config(), _emulator_rehearsal():
                yield stack
        else:
            yield stack
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        devstack.down(stack)


@contextlib.contextmanager
def _namespaced_config() -> Iterator[None]:
    import yaml

    data = yaml.safe_load((REPO_ROOT / "config" / "envsync.yaml").read_text())
    path = _AIRFLOW_HOME / "envsync-sandbox.yaml"
    path.write_text(yaml.safe_dump(sandbox.real_config(data)))
    saved = os.environ.get("ENVSYNC_CONFIG")
    os.environ["ENVSYNC_CONFIG"] = str(path)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("ENVSYNC_CONFIG", None)
        else:
            os.environ["ENVSYNC_CONFIG"] = saved


@contextlib.contextmanager
def _emulator_rehearsal() -> Iterator[None]:
    """test-gcp's preflight and clean-up on the emulators; there every dataset must carry the run prefix."""
    from envsync.core.clients import bigquery_client, storage_client

    project = sandbox.EMULATOR_SANDBOX_PROJECT
    session = sandbox.preflight(bigquery_client(project), storage_client(project), project, sandbox.RUN_PREFIX)
    sandbox.register(session)
    try:
        yield
    finally:
        sandbox.cleanup(session)
        problems = session.left + session.leaked
        assert not problems, session.summary()


# A copy of the session's metadata DB as resetdb left it (migrated, empty): see airflow_db_template.
AIRFLOW_DB_TEMPLATE = _AIRFLOW_HOME / "template" / "airflow.db"


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A fresh Airflow metadata DB (SQLite in the session's temp AIRFLOW_HOME); returns its URL.

    Needed by dag.test() and anything else that touches the metadata DB.
    """
    import sqlite3

    from airflow.utils.db import resetdb

    resetdb()
    AIRFLOW_DB_TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(_AIRFLOW_HOME / "airflow.db")) as source,
        contextlib.closing(sqlite3.connect(AIRFLOW_DB_TEMPLATE)) as copy,
    ):
        source.backup(copy)  # before any test writes to the DB
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session")
def airflow_db_template(airflow_db: str) -> Path:
    """A migrated, empty Airflow metadata DB (SQLite file) to copy, not to open: the session's DB as
    resetdb left it. DAG processes of their own (tests/integration/dagproc.py) each start on a copy."""
    return AIRFLOW_DB_TEMPLATE
