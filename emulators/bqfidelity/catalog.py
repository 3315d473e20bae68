"""INFORMATION_SCHEMA views reach DuckDB as one JSON literal, not a VALUES list of every row: cheap at any size.

This module changes no answer of the emulator, only what an INFORMATION_SCHEMA query costs.

What local-bigquery 0.4.0 does: a query naming an INFORMATION_SCHEMA view (``sql/rules/information_schema.py``)
computes the view's rows in Python and puts them into the statement as a ``VALUES`` list, one sqlglot
node per cell (``_values``). Every translation of the statement then copies that tree and walks every
node through every node rule (``translate._rewrite``), generates DuckDB SQL of it, and DuckDB parses and
binds one constant expression per cell. ``INFORMATION_SCHEMA.PARTITIONS`` of a dataset holding 5 HOUR
tables of 4,416 partitions is about 22,000 rows of 6 cells: measured 2026-12-07 (bench/bench_catalog.py),
that is where the 12 s each dataset took in envsync's planning went (253 s for the 20 datasets of the
1,000-object bench_scale), not in counting the partitions (one GROUP BY a table, milliseconds).

What this module does instead, with the same rows: the same rows (same order) are encoded as one JSON
array of arrays of strings, and the view's source becomes ``(SELECT r[1] AS col1, ... FROM (SELECT
unnest(CAST(json('<rows>') AS VARCHAR[][])) AS r)) AS v``, carried as one opaque node (``exp.Var``: the
node rules never look into it, the generator writes it verbatim). The outer ``SELECT CAST(v.col AS type)``
of local-bigquery is kept as it is, so each column gets the type it had. A cell goes into the JSON only
when its value there, cast to the column's type, is the value the VALUES cell had: integers
(their decimal text, which is what CAST(n AS STRING) gives), text without a backslash (the VALUES literal of
a text with one may be read as an escape: a stored ``\u00fc`` became ``ü``),
booleans (``true``/``false``), NULL, and the
``CAST('...' AS TIMESTAMPTZ)`` of a timestamp column (its text, cast to the column's TIMESTAMP). Any other
cell (a float, a nested value, a timestamp in a STRING column...) keeps local-bigquery's VALUES list for
the whole view, as does a view without rows.

BigQuery's INFORMATION_SCHEMA views are plain views
(https://cloud.google.com/bigquery/docs/information-schema-intro); their cost does not depend on how many
nodes a translator makes of them.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("bqfidelity.catalog")

# The types a JSON text cell is cast to in the outer SELECT when it stands for a timestamp literal.
_TIMESTAMP_KINDS = {"TIMESTAMP"}


class _Unsupported(Exception):
    """A cell whose value would not survive the JSON form unchanged."""


def _cell(value: Any, kind: str) -> str | None:
    """The text a cell becomes in the JSON rows (None: NULL), or _Unsupported."""
    from sqlglot import exp

    if value is None or isinstance(value, exp.Null):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and "\\" not in value:
        return value  # a backslash: local-bigquery's literal may be read as an escape (\u00fc), keep VALUES
    if (
        isinstance(value, exp.Cast)
        and kind.upper() in _TIMESTAMP_KINDS
        and isinstance(value.this, exp.Literal)
        and value.this.is_string
        and value.to.this in (exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMP)
    ):
        return value.this.this
    raise _Unsupported(type(value).__name__)


def _json_source(names: list[str], rows: list[list], kinds: list[str]) -> Any:
    """The view's rows as one opaque DuckDB subquery aliased ``v`` with the columns ``names``."""
    from local_bigquery.engine.database import quote
    from sqlglot import exp

    cells = [[_cell(value, kind) for value, kind in zip(row, kinds, strict=True)] for row in rows]
    text = json.dumps(cells, ensure_ascii=False, separators=(",", ":")).replace("'", "''")
    columns = ", ".join(f"r[{i}] AS {quote(name)}" for i, name in enumerate(names, start=1))
    sql = f"SELECT {columns} FROM (SELECT unnest(CAST(json('{text}') AS VARCHAR[][])) AS r)"
    return exp.Subquery(this=exp.Var(this=sql), alias=exp.TableAlias(this=exp.to_identifier("v")))


def _values(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _values(columns: list[str], rows: list[list]) -> Any:
        from sqlglot import exp

        specs = [column.partition(" ") for column in columns]
        names = [name for name, _, _ in specs]
        kinds = [kind for _, _, kind in specs]
        if not rows or any(len(row) != len(names) for row in rows):
            return original(columns, rows)
        try:
            source = _json_source(names, rows, kinds)
        except _Unsupported:
            return original(columns, rows)
        return exp.select(
            *(
                exp.alias_(exp.cast(exp.column(name), kind or "STRING", dialect="bigquery"), name)
                for name, _, kind in specs
            )
        ).from_(source)

    return _values


def install() -> None:
    from local_bigquery.sql.rules import information_schema

    information_schema._values = _values(information_schema._values)
