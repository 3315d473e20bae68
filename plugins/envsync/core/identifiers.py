"""BigQuery's identifier rules and backtick quoting: a leaf that imports nothing from envsync.

Every identifier that reaches SQL text (projects, datasets, tables, columns) is validated against
BigQuery's naming rules here and backtick-quoted; values never are (they are query parameters). The
config validates its names with these rules and the write guard quotes with them, so neither of the
two imports the other for them.
"""

from __future__ import annotations

import re

PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
DATASET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
TABLE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,1023}$")
COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")

_RULES = {
    "project": (PROJECT_RE, "6-30 lowercase letters, digits or '-', starting with a letter"),
    "dataset": (DATASET_RE, "letters, digits and '_', starting with a letter or '_', at most 1024"),
    "table": (TABLE_RE, "letters, digits, '_' and '-', at most 1024"),
    "column": (COLUMN_RE, "letters, digits and '_', starting with a letter or '_', at most 300"),
}


class IdentifierError(ValueError):
    """An identifier does not match BigQuery's naming rules (and so could not be safely quoted)."""


def validate_identifier(kind: str, value: object) -> str:
    pattern, allowed = _RULES[kind]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise IdentifierError(f"illegal {kind} name {value!r}: allowed are {allowed}")
    return value


def quote(*parts: str) -> str:
    """Backtick-quote a validated `project.dataset.table` path (each part validated by position)."""
    kinds = {1: ("table",), 2: ("dataset", "table"), 3: ("project", "dataset", "table")}[len(parts)]
    for kind, part in zip(kinds, parts, strict=False):
        validate_identifier(kind, part)
    return "`" + ".".join(parts) + "`"


def quote_dataset(project: str, dataset: str) -> str:
    """`project.dataset`, validated and quoted, e.g. for <dataset>.INFORMATION_SCHEMA views."""
    return f"`{validate_identifier('project', project)}.{validate_identifier('dataset', dataset)}`"


def quote_column(name: str) -> str:
    return "`" + validate_identifier("column", name) + "`"
