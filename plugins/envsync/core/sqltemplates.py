"""Load the templated SQL under sql/ (one statement or script per file).

Only identifiers are filled in here (already validated and backtick-quoted by the caller through
envsync.core.guard); every value is a query parameter (@cut, @window_start, ...) bound at run time.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from envsync.core.paths import HOME_ENV, MissingFile, home

SQL_DIR_ENV = "ENVSYNC_SQL_DIR"


def sql_dir() -> Path:
    """The SQL templates' folder: ENVSYNC_SQL_DIR, else $ENVSYNC_HOME/sql (envsync.core.paths)."""
    return Path(os.environ.get(SQL_DIR_ENV) or home() / "sql")


@lru_cache(maxsize=64)
def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingFile(
            f"SQL template not found: {path} does not exist (set {SQL_DIR_ENV} or {HOME_ENV} to the folder "
            "holding envsync's sql/)"
        ) from None


def render(name: str, **identifiers: str) -> str:
    """Render sql/<name>.sql with pre-quoted identifiers; comment lines are dropped."""
    text = _read(str(sql_dir() / f"{name}.sql"))
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return body.format(**identifiers).strip()
