"""Integration fixtures: a small, exactly known prod on the emulators, and a way to run DAGs."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagproc import DagProcess, start_dag
from testkit import (
    FIRST_DAY,
    LAST_DAY,
    PROD_SQL,
    PROJECT,
    REPO_ROOT,
    SESSION_EDGES,
    bq_client,
    clear_manifests,
    drop_environment_datasets,
    fq,
    query,
)
from webhookkit import webhook  # noqa: F401 (the local Slack webhook fixture, for every test module here)


@pytest.fixture(scope="session")
def prod(emulators: Any) -> dict[str, Any]:
    """Create the test prod once per session: sales (4 tables) and marketing (2 tables, 1 view)."""
    from google.cloud import bigquery

    client = bq_client()
    for name in ("sales", "marketing"):
        dataset = bigquery.Dataset(fq(name))
        dataset.location = "US"
        dataset.description = f"prod {name}"
        dataset.labels = {"team": name}
        client.create_dataset(dataset, exists_ok=True)
    edges = {f"e{i}": e for i, e in enumerate(SESSION_EDGES)}
    for sql in PROD_SQL:
        query(sql.format(p=PROJECT, **edges), first_day=FIRST_DAY, last_day=LAST_DAY)
    return {"project": PROJECT}


@pytest.fixture
def clean_dev(prod: dict[str, Any]) -> Iterator[None]:
    drop_environment_datasets()
    clear_manifests()
    yield


@pytest.fixture
def run_dag(airflow_db: str, emulators: Any) -> Callable[..., Any]:
    """Run a DAG through Airflow in-process (dag.test) and return the finished DagRun."""

    def _run(
        dag_id: str,
        logical_date: dt.datetime | None,
        conf: dict[str, Any] | None = None,
        config_path: Path | None = None,
    ) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        saved = os.environ.get("ENVSYNC_CONFIG")
        if config_path is not None:
            os.environ["ENVSYNC_CONFIG"] = str(config_path)
        try:
            bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
            assert not bag.import_errors, bag.import_errors
            dag = bag.dags[dag_id]
            return dag.test(logical_date=logical_date, run_conf=conf or {})
        finally:
            if saved is None:
                os.environ.pop("ENVSYNC_CONFIG", None)
            else:
                os.environ["ENVSYNC_CONFIG"] = saved

    return _run


@pytest.fixture
def dag_processes(airflow_db_template: Path, emulators: Any, tmp_path: Path) -> Iterator[Callable[..., DagProcess]]:
    """Start DAG runs in OS processes of their own, as other Airflow deployments would (dagproc.py).

    `start(dag_id, *, home=None, conf=None, env=None, logical_date=None, log_path=None)` returns a
    running dagproc.DagProcess at once; `home` (its AIRFLOW_HOME, its own SQLite DB copied from the
    session's template) defaults to a fresh `tmp_path/airflow-<n>`: one deployment per process. The
    process inherits this one's environment (the session's emulators, ENVSYNC_CONFIG, AIRFLOW_CONN_*,
    what monkeypatch set) with `env` on top. Every process still alive at teardown is SIGKILLed with
    its process group.
    """
    started: list[DagProcess] = []

    def start(dag_id: str, *, home: Path | None = None, **kwargs: Any) -> DagProcess:
        home = home or tmp_path / f"airflow-{len(started) + 1}"
        proc = start_dag(dag_id, home=home, template_db=airflow_db_template, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def migrations_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder of schema migrations (sql/migrations' layout), used through ENVSYNC_MIGRATIONS_DIR."""
    path = tmp_path / "migrations"
    path.mkdir()
    monkeypatch.setenv("ENVSYNC_MIGRATIONS_DIR", str(path))
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a copy of config/envsync.yaml with some keys changed; return its path.

    Values use logical names and the kits' emulator projects; on a sandbox they are made real."""
    import sandbox
    import yaml

    def _write(**changes: Any) -> Path:
        data = yaml.safe_load((REPO_ROOT / "config" / "envsync.yaml").read_text())
        for dotted, value in changes.items():
            node = data
            *parents, last = dotted.split("__")
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
        path = tmp_path / "envsync.yaml"
        path.write_text(yaml.safe_dump(sandbox.real_config(data)))
        return path

    return _write
