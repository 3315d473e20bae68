"""DAG integrity: every DAG file imports, follows the house policy, and parses fast; no metadata DB.

Model: astronomer/astro-cli `dagintegritytestdefault.py` (DagBag import errors, one test per file,
policy on tags/owner/retries), extended with the params, schedule and parse-time rules of STYLE.md.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
PLUGINS_DIR = REPO_ROOT / "plugins"
SHIPPED_CONFIG = REPO_ROOT / "config" / "envsync.yaml"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
# Tasks allowed fewer than 2 retries, each with the reason (a reviewed exception to STYLE.md rule 2).
RETRY_EXEMPT: dict[tuple[str, str], str] = {}
SUCCESS_ALERTS = {"prod_to_dev_sync", "reseed_environments", "recovery_drill", "staging_cut", "promote_schema"}


def _file_id(path: Path) -> str:
    return path.name


def load_dagbag(path: Path, config: Path | None = None) -> Any:
    """A DagBag over one file or folder, with ENVSYNC_CONFIG set to `config` (or unset) meanwhile."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:
        if config is None:
            mp.delenv("ENVSYNC_CONFIG", raising=False)
        else:
            mp.setenv("ENVSYNC_CONFIG", str(config))
        return DagBag(dag_folder=str(path))


@pytest.fixture(scope="module")
def dagbag() -> Any:
    return load_dagbag(DAGS_DIR)


@pytest.fixture(scope="module")
def shipped_config() -> Any:
    from envsync.core.config import load_config

    return load_config(SHIPPED_CONFIG)


def dags_of(dagbag: Any, path: Path) -> list[Any]:
    return [d for d in dagbag.dags.values() if Path(d.fileloc).resolve() == path.resolve()]


def write_config(tmp_path: Path, mutate: Any) -> Path:
    data = yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / "envsync.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------------- imports


def test_there_are_dag_files() -> None:
    assert DAG_FILES, f"no DAG files in {DAGS_DIR}"


def test_dag_folder_has_no_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}, "\n\n".join(f"{k}:\n{v}" for k, v in dagbag.import_errors.items())
    assert dagbag.dags


@pytest.mark.parametrize("path", DAG_FILES, ids=_file_id)
def test_dag_file_imports(path: Path) -> None:
    bag = load_dagbag(path)
    assert bag.import_errors == {}, "\n\n".join(f"{k}:\n{v}" for k, v in bag.import_errors.items())
    assert len(bag.dags) >= 1, f"{path.name} defines no DAG"
    for dag in bag.dags.values():
        assert Path(dag.fileloc).resolve() == path.resolve()


# ------------------------------------------------------------------------- policy, every DAG


@pytest.mark.parametrize("path", DAG_FILES, ids=_file_id)
def test_dag_policy(dagbag: Any, path: Path) -> None:
    dags = dags_of(dagbag, path)
    assert dags, f"{path.name} is not in the DagBag"
    for dag in dags:
        where = f"{path.name}: {dag.dag_id}"
        assert dag.dag_id == path.stem, f"{where}: dag_id must be the file stem {path.stem!r}"
        assert dag.tags, f"{where}: tags are empty"
        assert dag.catchup is False, f"{where}: catchup must be False"
        assert dag.doc_md and dag.doc_md.strip(), f"{where}: doc_md is missing"
        assert dag.start_date is not None and dag.start_date.tzinfo is not None, f"{where}: static aware start_date"
        default_args = dag.default_args or {}
        owner = default_args.get("owner")
        assert owner and owner != "airflow", f"{where}: default_args owner is {owner!r}"
        assert default_args.get("retries", 0) >= 2, f"{where}: default_args retries {default_args.get('retries')!r} < 2"
        assert dag.tasks, f"{where}: no tasks"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{where}.{task.task_id}: owner {task.owner!r}"
            if (dag.dag_id, task.task_id) not in RETRY_EXEMPT:
                assert task.retries >= 2, f"{where}.{task.task_id}: retries {task.retries} < 2"
        from envsync.observe.alerts import EnvsyncSlackNotifier

        on_failure = [c for c in (dag.on_failure_callback or []) if isinstance(c, EnvsyncSlackNotifier)]
        on_success = [c for c in (dag.on_success_callback or []) if isinstance(c, EnvsyncSlackNotifier)]
        assert [c.kind for c in on_failure] == ["failure"], f"{where}: no Slack alert on failure"
        assert [c.kind for c in on_success] == (["success"] if dag.dag_id in SUCCESS_ALERTS else []), (
            f"{where}: Slack alert on success must be set exactly for {sorted(SUCCESS_ALERTS)}"
        )
        assert {c.slack_webhook_conn_id for c in on_failure + on_success} == {"slack_envsync"}
        for name, param in dag.params.items():
            assert param.schema.get("title"), f"{where}: param {name} has no title"
            assert param.description, f"{where}: param {name} has no description"
            assert param.schema.get("type"), f"{where}: param {name} has no type"


# ------------------------------------------------------------------------- prod_to_dev_sync


@pytest.fixture(scope="module")
def sync_dag(dagbag: Any) -> Any:
    return dagbag.dags["prod_to_dev_sync"]


def test_prod_to_dev_sync_schedule(sync_dag: Any) -> None:
    from airflow.sdk import CronTriggerTimetable

    timetable = sync_dag.timetable
    assert isinstance(timetable, CronTriggerTimetable)
    assert timetable.expression == "0 2 * * 6"
    assert getattr(timetable.timezone, "name", str(timetable.timezone)) == "UTC"
    assert sync_dag.max_active_runs == 1
    assert sync_dag.catchup is False


def test_prod_to_dev_sync_tasks(sync_dag: Any) -> None:
    assert set(sync_dag.task_ids) == {"plan", "sync_dataset", "sync_views", "migrate", "report", "parity"}
    assert sync_dag.get_task("plan").downstream_task_ids == {"sync_dataset"}
    assert sync_dag.get_task("sync_dataset").downstream_task_ids == {"sync_views"}
    assert sync_dag.get_task("sync_views").downstream_task_ids == {"migrate"}
    assert sync_dag.get_task("migrate").downstream_task_ids == {"report"}
    assert sync_dag.get_task("report").downstream_task_ids == {"parity"}
    assert sync_dag.get_task("sync_views").trigger_rule == "all_done"
    assert sync_dag.get_task("report").trigger_rule == "all_done"
    assert sync_dag.get_task("parity").trigger_rule == "all_success"


@pytest.mark.parametrize("dag_id", ["prod_to_dev_sync", "reseed_environments", "prod_copy", "promote_schema"])
def test_every_refresh_ends_with_the_parity_of_what_it_refreshed(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    ends = [t for t in dag.tasks if not t.downstream_task_ids]
    assert [t.task_id for t in ends] == ["parity"]
    assert type(ends[0]).__name__ == "RefreshParityOperator"
    assert ends[0].upstream_task_ids == {"report"}


def test_parity_dag(dagbag: Any, shipped_config: Any) -> None:
    from airflow.sdk import CronTriggerTimetable

    from envsync.environments.parity import ENVIRONMENTS

    dag = dagbag.dags["parity"]
    assert isinstance(dag.timetable, CronTriggerTimetable) and dag.timetable.expression == "0 6 * * *"
    assert dag.task_ids == ["check"] and dag.max_active_runs == 1
    params = dag.params.dump()
    assert params["environments"] == list(ENVIRONMENTS)
    assert params["datasets"] == list(shipped_config.prod.datasets)


def test_parity_flags_qa_and_staging_after_the_reseed_schedule_plus_a_day(dagbag: Any) -> None:
    import datetime as dt

    from envsync.environments.parity import MAX_AGE, RESEED_SCHEDULE

    timetable = dagbag.dags["reseed_environments"].timetable
    assert timetable.expression == RESEED_SCHEDULE == "0 3 * * 0"  # weekly
    assert MAX_AGE["qa"] == MAX_AGE["staging"] == dt.timedelta(days=7) + dt.timedelta(days=1)
    assert MAX_AGE["dev"] == dt.timedelta(days=8)


def test_prod_to_dev_sync_params(sync_dag: Any, shipped_config: Any) -> None:
    params = sync_dag.params
    assert set(params) == {"datasets", "tables", "window_quarters", "dry_run"}

    datasets = params.get_param("datasets")
    assert datasets.schema["type"] == "array"
    assert datasets.schema["items"]["enum"] == list(shipped_config.prod.datasets)
    assert datasets.value == list(shipped_config.prod.datasets)

    tables = params.get_param("tables")
    assert tables.schema["type"] == "array"
    assert tables.value == []

    window = params.get_param("window_quarters")
    assert window.schema["type"] == "integer"
    assert (window.schema["minimum"], window.schema["maximum"]) == (1, 8)
    assert window.value == shipped_config.environments.dev.window_quarters

    dry_run = params.get_param("dry_run")
    assert dry_run.schema["type"] == "boolean"
    assert dry_run.value is False

    assert params.validate() == {
        "datasets": list(shipped_config.prod.datasets),
        "tables": [],
        "window_quarters": shipped_config.environments.dev.window_quarters,
        "dry_run": False,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("window_quarters", 9),
        ("window_quarters", 0),
        ("window_quarters", "3"),
        ("window_quarters", 2.5),
        ("datasets", ["finance"]),
        ("datasets", []),
        ("datasets", ["sales", "sales"]),
        ("tables", ["bad name"]),
        ("tables", ["sales.orders`; drop table x"]),
        ("tables", "orders"),
        ("dry_run", "yes"),
    ],
)
def test_prod_to_dev_sync_param_schema_rejects_bad_values(sync_dag: Any, name: str, value: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(sync_dag.params)
    with pytest.raises(ParamValidationError, match=f"param {name}"):
        params[name] = value
        params.validate()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("window_quarters", 8),
        ("window_quarters", 1),
        ("datasets", ["marketing"]),
        ("tables", ["orders", "sales.orders-2"]),
        ("dry_run", True),
    ],
)
def test_prod_to_dev_sync_param_schema_accepts_good_values(sync_dag: Any, name: str, value: Any) -> None:
    params = copy.deepcopy(sync_dag.params)
    params[name] = value
    assert params.validate()[name] == value


def test_prod_to_dev_sync_tables_param_rejects_a_trailing_newline(sync_dag: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(sync_dag.params)
    with pytest.raises(ParamValidationError):
        params["tables"] = ["orders\n"]


def test_params_follow_another_config(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["prod"]["datasets"] = ["sales", "marketing", "finance"]
        data["environments"]["dev"]["window_quarters"] = 5

    bag = load_dagbag(DAGS_DIR / "prod_to_dev_sync.py", write_config(tmp_path, mutate))
    assert bag.import_errors == {}
    dag = bag.dags["prod_to_dev_sync"]
    assert dag.params.get_param("window_quarters").value == 5
    assert dag.params.get_param("datasets").schema["items"]["enum"] == ["sales", "marketing", "finance"]


# ------------------------------------------------------------------------- promote_schema


@pytest.fixture(scope="module")
def promote_dag(dagbag: Any) -> Any:
    return dagbag.dags["promote_schema"]


def test_promote_schema_is_manual_with_plan_promote_report_parity(promote_dag: Any) -> None:
    assert type(promote_dag.timetable).__name__ == "NullTimetable"  # schedule=None: manual only
    assert promote_dag.max_active_runs == 1
    assert set(promote_dag.task_ids) == {"plan", "promote", "report", "parity"}
    assert promote_dag.get_task("plan").downstream_task_ids == {"promote"}
    assert promote_dag.get_task("promote").downstream_task_ids == {"report"}
    assert promote_dag.get_task("report").downstream_task_ids == {"parity"}
    assert promote_dag.get_task("report").trigger_rule == "all_done"
    # only a promotion that succeeded is checked (a refused or failed one is reported by `report`)
    assert promote_dag.get_task("parity").trigger_rule == "all_success"
    assert promote_dag.get_task("parity").environments is None  # the target, from the run's manifest


def test_promote_schema_params(promote_dag: Any) -> None:
    params = promote_dag.params
    assert set(params) == {"target", "through", "lane", "dry_run", "confirm"}
    assert params.get_param("target").schema["enum"] == ["qa", "staging", "prod"]
    assert params.get_param("lane").schema["enum"] == ["normal", "hotfix"]
    assert params.get_param("dry_run").schema["type"] == "boolean"
    assert params.validate() == {"target": "qa", "through": "", "lane": "normal", "dry_run": False, "confirm": ""}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("target", "dev"),
        ("target", "PROD"),
        ("through", "3a"),
        ("through", "1; drop"),
        ("through", 3),
        ("lane", "fast"),
        ("dry_run", "yes"),
    ],
)
def test_promote_schema_param_schema_rejects_bad_values(promote_dag: Any, name: str, value: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(promote_dag.params)
    with pytest.raises(ParamValidationError, match=f"param {name}"):
        params[name] = value
        params.validate()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("target", "prod"),
        ("through", "12"),
        ("lane", "hotfix"),
        ("dry_run", True),
        ("confirm", "apply schema migrations 1 to prod"),
    ],
)
def test_promote_schema_param_schema_accepts_good_values(promote_dag: Any, name: str, value: Any) -> None:
    params = copy.deepcopy(promote_dag.params)
    params[name] = value
    assert params.validate()[name] == value


# ------------------------------------------------------------------------- an invalid config


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d["environments"]["dev"].update(window_quarters=9), "environments.dev.window_quarters"),
        (lambda d: d["environments"]["dev"].update(windw=2), "environments.dev.windw"),
        (lambda d: d["state"].update(bucket="Bad_Bucket!"), "state.bucket"),
    ],
    ids=["window_quarters", "unknown-key", "bucket"],
)
def test_invalid_config_is_one_readable_import_error(tmp_path: Path, mutate: Any, key: str) -> None:
    config = write_config(tmp_path, mutate)
    bag = load_dagbag(DAGS_DIR / "prod_to_dev_sync.py", config)
    assert bag.dags == {}
    assert len(bag.import_errors) == 1, bag.import_errors
    ((where, text),) = bag.import_errors.items()
    assert where.endswith("prod_to_dev_sync.py")
    assert "ConfigError" in text
    assert key in text
    assert str(config) in text
    assert "errors.pydantic.dev" not in text
    assert "pydantic_core" not in text
    assert "During handling of the above exception" not in text
    assert "The above exception was the direct cause" not in text


def test_missing_config_is_one_readable_import_error(tmp_path: Path) -> None:
    bag = load_dagbag(DAGS_DIR / "prod_to_dev_sync.py", tmp_path / "missing.yaml")
    assert len(bag.import_errors) == 1
    text = next(iter(bag.import_errors.values()))
    assert "does not exist" in text and "ENVSYNC_CONFIG" in text


# ------------------------------------------------------------------------- parse time

HEAVY_MODULES = ("google.cloud.bigquery", "google.cloud.storage", "pandas", "sqlglot")

# One fresh interpreter parses every DAG file in turn and reports, per file, the heavy modules its parse
# imported (a module already imported by an earlier file is charged to that earlier file, so a heavy
# import anywhere fails the test of the first file that makes it).
_PARSE_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    import airflow.sdk  # loaded by the DAG processor anyway; not part of the file's own cost
    heavy_names = json.loads(sys.argv[1])
    report = {}
    for number, path in enumerate(sys.argv[2:]):
        before = set(sys.modules)
        spec = importlib.util.spec_from_file_location(f"dag_under_test_{number}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        new = set(sys.modules) - before
        report[path] = sorted(h for h in heavy_names if h in new)
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def parse_report() -> dict[str, list[str]]:
    env = dict(os.environ)
    env.pop("ENVSYNC_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS_DIR), env.get("PYTHONPATH", "")]))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_DIR))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PLUGINS_DIR))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE_SCRIPT, json.dumps(HEAVY_MODULES), *map(str, DAG_FILES)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", DAG_FILES, ids=_file_id)
def test_dag_file_parses_without_heavy_imports(path: Path, parse_report: dict[str, list[str]]) -> None:
    # The parse time itself (budget 1 s a file) is measured by bench/bench_parse.py, not asserted
    # here: a wall-clock limit fails on a loaded machine and proves nothing on a quiet one.
    heavy = parse_report[str(path)]
    assert heavy == [], f"{path.name} imports {heavy} at parse time"


def test_the_parse_check_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check above can fail: a DAG file importing sqlglot at parse time is reported."""
    bad = tmp_path / "bad_dag.py"
    bad.write_text("import sqlglot  # a heavy import at parse time\n")
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE_SCRIPT, json.dumps(HEAVY_MODULES), str(bad)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {str(bad): ["sqlglot"]}
