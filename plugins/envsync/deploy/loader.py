"""
### envsync release loader

The only envsync file of the live `dags/` folder (shipped in the bundle as `dags/envsync_dags.py`). It
reads `data/envsync/CURRENT.json` from the mounted data folder (Cloud Composer maps `gs://<bucket>/data`
to `/home/airflow/gcs/data`; `ENVSYNC_COMPOSER_DATA` moves it), puts that release's `plugins/` first on
`sys.path`, points envsync at the release's files (`ENVSYNC_HOME`, `ENVSYNC_SQL_DIR`,
`ENVSYNC_MIGRATIONS_DIR`) and at the environment's deployed config (`ENVSYNC_CONFIG`), and defines the
release's DAGs, each tagged `envsync:<release>` so the REST API shows which release Airflow serves.

A deploy uploads a release completely before one write of CURRENT.json switches to it, so this file
only ever sees whole releases. No CURRENT.json (nothing deployed yet) defines no DAG; a release folder
without its MANIFEST.json (not fully synced to this worker yet) is an import error naming it. A DAG file
of the release that fails to import is logged and reported as a warning; the other DAGs stay defined.

Standard library only until the release is on `sys.path`: this file is parsed before envsync is
importable. It reads one small local file at parse time (no network, no Airflow Variable).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

log = logging.getLogger("envsync.deploy.loader")

DATA_ENV = "ENVSYNC_COMPOSER_DATA"
DEFAULT_DATA = "/home/airflow/gcs/data"
CURRENT = "data/envsync/CURRENT.json"  # object names in the bucket; data/ is the mount's root
THIS_FILE = "envsync_dags.py"
MODULE_PREFIX = "envsync_release_dags_"
RELEASE_TAG = "envsync:"


def mounted(data_root: Path, name: str) -> Path:
    """The local path of bucket object `name` (data/...) under the mounted data folder."""
    if not name.startswith("data/"):
        raise ValueError(f"{name!r} is not under the bucket's data/ folder")
    return data_root / name.removeprefix("data/")


def read_current(data_root: Path) -> dict[str, Any] | None:
    path = mounted(data_root, CURRENT)
    if not path.is_file():
        return None
    current: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return current


def activate(current: dict[str, Any], data_root: Path) -> Path:
    """Put the release's plugins first on sys.path and point envsync at its files; returns its folder."""
    release = mounted(data_root, str(current["prefix"]))
    if not (release / "MANIFEST.json").is_file():
        raise RuntimeError(
            f"envsync release {current.get('release')} is not complete at {release} (no MANIFEST.json): the "
            f"bucket's {current['prefix']}/ has not reached this machine yet, or {DATA_ENV} is wrong"
        )
    plugins = str(release / "plugins")
    if sys.path[:1] != [plugins]:
        if plugins in sys.path:
            sys.path.remove(plugins)
        sys.path.insert(0, plugins)
    for name in [n for n in sys.modules if n == "envsync" or n.startswith("envsync.")]:
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if not origin.startswith(plugins + os.sep):  # another copy (an older release, the plugins folder)
            del sys.modules[name]
    home = release / "data" / "envsync"
    os.environ["ENVSYNC_HOME"] = str(home)
    os.environ["ENVSYNC_SQL_DIR"] = str(home / "sql")
    os.environ["ENVSYNC_MIGRATIONS_DIR"] = str(home / "sql" / "migrations")
    os.environ["ENVSYNC_CONFIG"] = str(mounted(data_root, str(current["config"])))
    os.environ["ENVSYNC_RELEASE"] = str(current["release"])
    return release


def load_dags(release: Path, tag: str) -> tuple[dict[str, DAG], dict[str, str]]:
    """Import every DAG file of the release; returns (dag_id -> DAG, file -> error)."""
    dags: dict[str, DAG] = {}
    errors: dict[str, str] = {}
    for path in sorted((release / "dags").glob("*.py")):
        if path.name == THIS_FILE:
            continue
        name = MODULE_PREFIX + path.stem
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except Exception:
            sys.modules.pop(name, None)
            errors[path.name] = traceback.format_exc()
            continue
        for value in vars(module).values():
            if isinstance(value, DAG):
                value.tags.add(tag)
                dags[value.dag_id] = value
    return dags, errors


def main(namespace: dict[str, Any]) -> None:
    data_root = Path(os.environ.get(DATA_ENV) or DEFAULT_DATA)
    current = read_current(data_root)
    if current is None:
        log.warning("no envsync release is live: %s does not exist", mounted(data_root, CURRENT))
        return
    release = activate(current, data_root)
    dags, errors = load_dags(release, RELEASE_TAG + str(current["release"]))
    for file, error in errors.items():
        log.error("envsync release %s: %s failed to import:\n%s", current["release"], file, error)
        warnings.warn(f"envsync release {current['release']}: {file} failed to import: {error}", stacklevel=1)
    namespace.update(dags)
    log.info("envsync release %s: %d DAGs from %s", current["release"], len(dags), release)


if __name__ != "envsync.deploy.loader":  # Airflow parses this file as dags/envsync_dags.py
    main(globals())
