"""The DAGs run from a Cloud Composer-shaped tree: DAGs, plugins and envsync's files in separate folders.

Composer mounts its bucket's `dags/`, `plugins/` and `data/` folders at /home/airflow/gcs/{dags,plugins,data}
(https://cloud.google.com/composer/docs/composer-3/cloud-storage). envsync finds its SQL, seeds,
migrations and config through ENVSYNC_HOME (envsync.core.paths), so a tree laid out that way parses
and renders without the repository; a file missing there is an error naming the path searched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"dags": sorted(bag.dag_ids), "errors": {k: v.splitlines()[-1] for k, v in bag.import_errors.items()}}
if not bag.import_errors:
    import envsync
    from envsync.core.config import config_path, load_config
    from envsync.core.sqltemplates import render, sql_dir
    from envsync.environments.seeds import seeds_root
    from envsync.migrations.ledger import migrations_dir
    config = load_config()
    out.update(
        package=envsync.__file__,
        sql_dir=str(sql_dir()),
        config=str(config_path()),
        seeds=str(seeds_root(config)),
        migrations=str(migrations_dir()),
        rendered=render("rehearsal/create_table_like", target="`p-ject.d.t`", source="`p-ject.d.s`"),
    )
print(json.dumps(out))
"""


def composer_tree(root: Path) -> Path:
    """Copy the repository's DAGs, package and files into Composer's layout under `root`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "dags", root / "dags", ignore=ignore)
    shutil.copytree(REPO_ROOT / "plugins", root / "plugins", ignore=ignore)
    data = root / "data" / "envsync"
    shutil.copytree(REPO_ROOT / "sql", data / "sql", ignore=ignore)
    (data / "config").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "config" / "envsync.yaml", data / "config" / "envsync.yaml")
    return root


def parse(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVSYNC_")}
    env.update(
        PYTHONPATH=str(root / "plugins"),
        AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(root / "plugins"),
        ENVSYNC_HOME=str(root / "data" / "envsync"),
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(root / "dags")],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dags_parse_and_find_their_files_in_a_composer_tree(tmp_path: Path) -> None:
    root = composer_tree(tmp_path / "gcs")
    found = parse(root)
    assert found["errors"] == {}
    expected = sorted(p.stem for p in (REPO_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    assert found["dags"] == expected
    data = root / "data" / "envsync"
    assert found["package"].startswith(str(root / "plugins"))  # not the repository's copy
    assert found["sql_dir"] == str(data / "sql")
    assert found["config"] == str(data / "config" / "envsync.yaml")
    assert found["seeds"] == str(data / "sql" / "seeds")
    assert found["migrations"] == str(data / "sql" / "migrations")
    assert found["rendered"].endswith("like `p-ject.d.s`")


def test_a_missing_config_names_the_path_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envsync.core.config import ConfigError, load_config

    monkeypatch.setenv("ENVSYNC_HOME", str(tmp_path))
    monkeypatch.delenv("ENVSYNC_CONFIG", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(tmp_path / "config" / "envsync.yaml") in str(info.value)
    assert "ENVSYNC_CONFIG" in str(info.value) and "ENVSYNC_HOME" in str(info.value)


@pytest.mark.parametrize("name", ["rehearsal/create_table_like"])
def test_a_missing_sql_template_names_the_path_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from envsync.core.paths import MissingFile
    from envsync.core.sqltemplates import _read, render

    monkeypatch.setenv("ENVSYNC_HOME", str(tmp_path))
    monkeypatch.delenv("ENVSYNC_SQL_DIR", raising=False)
    _read.cache_clear()
    with pytest.raises(MissingFile) as info:
        render(name, target="`p-ject.d.t`", source="`p-ject.d.s`")
    assert str(tmp_path / "sql" / f"{name}.sql") in str(info.value)
    assert "ENVSYNC_SQL_DIR" in str(info.value) and "ENVSYNC_HOME" in str(info.value)
