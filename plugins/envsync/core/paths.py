"""Where envsync finds its files: SQL templates, seeds, migrations and the config.

In a clone of the repository they sit next to the package (`<repo>/sql`, `<repo>/config`). In a
managed Airflow they sit elsewhere: Cloud Composer mounts the bucket's `dags/`, `plugins/` and `data/`
folders apart (`/home/airflow/gcs/{dags,plugins,data}`), so envsync's files live under `data/`. One
variable moves them all, others move one each:

    ENVSYNC_HOME            the folder holding sql/ and config/ (default: the repository root)
    ENVSYNC_SQL_DIR         the SQL templates (default: $ENVSYNC_HOME/sql)
    ENVSYNC_CONFIG          the config file (default: $ENVSYNC_HOME/config/envsync.yaml)
    ENVSYNC_MIGRATIONS_DIR  the schema migrations (default: <SQL dir>/migrations)

`seeds.dir` in the config is absolute or relative to ENVSYNC_HOME. A missing file is an error naming
the path searched and the variable that moves it.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "ENVSYNC_HOME"
REPO_ROOT = Path(__file__).resolve().parents[3]


class MissingFile(FileNotFoundError):
    """A file envsync needs is not where it was looked for; the message names the path and the setting."""


def home() -> Path:
    """The folder holding envsync's sql/ and config/ (ENVSYNC_HOME, default the repository root)."""
    value = os.environ.get(HOME_ENV)
    return Path(value) if value else REPO_ROOT


def under_home(path: str | os.PathLike[str]) -> Path:
    """`path` itself when absolute, else relative to home()."""
    given = Path(path)
    return given if given.is_absolute() else home() / given


def require(path: Path, what: str, setting: str) -> Path:
    """`path` when it exists; else MissingFile naming it, what it is, and how to point envsync elsewhere."""
    if not path.exists():
        raise MissingFile(f"{what} not found: {path} does not exist (set {setting} to where it is)")
    return path
