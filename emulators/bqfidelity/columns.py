"""Column collation and default values in CREATE TABLE are kept, as BigQuery keeps them.

What BigQuery does:
- ``name STRING COLLATE 'und:ci'`` (also ``ARRAY<STRING COLLATE 'und:ci'>``) gives the column a
  collation specification, shown as ``collation`` in the table's schema; ``'und:ci'`` compares
  case-insensitively and ``''`` is the default (binary) collation
  (https://cloud.google.com/bigquery/docs/reference/standard-sql/collation-concepts).
- ``name TYPE DEFAULT expr`` records ``defaultValueExpression`` in the schema
  (https://cloud.google.com/bigquery/docs/default-values).

What local-bigquery 0.4.0 does: it hands ``COLLATE 'und:ci'`` to DuckDB, which refuses the string
(``Syntax error: Unexpected und:ci``; and its DuckLake storage has no collations), and it creates a
column's DEFAULT in DuckDB but drops it from the table's schema. This module leaves the collation out
of the DuckDB table (a gap left: comparisons on the emulator stay case-sensitive) and records both
options in the stored schema of top-level columns, so a table's definition reads back as on BigQuery.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from sqlglot import exp

log = logging.getLogger("bqfidelity.columns")

SUPPORTED = ("und:ci", "")


def _name(literal: exp.Expression | None) -> str | None:
    return literal.this if isinstance(literal, exp.Literal) and literal.is_string else None


def _check(name: str) -> None:
    from local_bigquery.errors import BigQueryError

    if name.lower() not in SUPPORTED:
        raise BigQueryError("invalidQuery", f"Collation '{name}' is not supported; use 'und:ci' or ''")


def collation(node: exp.Expression, context) -> exp.Expression:  # local-bigquery's rule signature
    """A column's collation left out of the DuckDB table (a node rule of the DuckDB translation)."""
    if isinstance(node, exp.ColumnDef) and node.args.get("constraints"):
        kept = []
        for constraint in node.args["constraints"]:
            kind = constraint.args.get("kind")
            if isinstance(kind, exp.CollateColumnConstraint) and (name := _name(kind.this)) is not None:
                _check(name)
                continue
            kept.append(constraint)
        node.set("constraints", kept)
    if isinstance(node, exp.DataType) and (name := _name(node.args.get("collate"))) is not None:
        _check(name)
        node.set("collate", None)
    return node


def _options(column: exp.ColumnDef) -> dict:
    found: dict = {}
    for constraint in column.args.get("constraints") or []:
        kind = constraint.args.get("kind")
        if isinstance(kind, exp.CollateColumnConstraint) and _name(kind.this):
            found["collation"] = _name(kind.this)
        elif isinstance(kind, exp.DefaultColumnConstraint):
            found["defaultValueExpression"] = kind.this.sql("bigquery")
    kind = column.args.get("kind")
    if isinstance(kind, exp.DataType) and kind.this == exp.DataType.Type.ARRAY and kind.expressions:
        element = kind.expressions[0]
        if isinstance(element, exp.DataType) and _name(element.args.get("collate")):
            found["collation"] = _name(element.args.get("collate"))
    return found


def _recorded(original: Callable) -> Callable:
    @functools.wraps(original)
    def _fields(schema: exp.Expression, evaluate) -> list[dict]:
        fields = original(schema, evaluate)
        by_name = {field["name"].casefold(): field for field in fields}
        for column in schema.expressions if isinstance(schema, exp.Schema) else []:
            if not isinstance(column, exp.ColumnDef) or not (extra := _options(column)):
                continue
            if column.name.casefold() in by_name:
                by_name[column.name.casefold()].update(extra)
            else:
                fields.append({"name": column.name} | extra)
        return fields

    return _fields


def install() -> None:
    """Patch local-bigquery in this process (idempotent through bqfidelity.install)."""
    from local_bigquery.catalog import ddl as catalog_ddl
    from local_bigquery.sql import rules as sql_rules

    sql_rules.NODE_RULES.append(collation)
    catalog_ddl._fields = _recorded(catalog_ddl._fields)
    log.info("columns: COLLATE and DEFAULT of column definitions")
