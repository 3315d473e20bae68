"""Load the templated SQL under sql/ (one statement or script per file).

Only identifiers are filled in here (already validated and backtick-quoted by the caller through
envsync.core.guard); every value is a query parameter (@cut, @window_start, ...) bound at run time.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

SQL_DIR_ENV = "ENVSYNC_SQL_DIR"
DEFAULT_SQL_DIR = Path(__file__).resolve().parents[3] / "sql"


def sql_dir() -> Path:
    return Path(os.environ.get(SQL_DIR_ENV) or DEFAULT_SQL_DIR)


@lru_cache(maxsize=64)
def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def render(name: str, **identifiers: str) -> str:
    """Render sql/<name>.sql with pre-quoted identifiers; comment lines are dropped."""
    text = _read(str(sql_dir() / f"{name}.sql"))
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return body.format(**identifiers).strip()
