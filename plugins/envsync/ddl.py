"""BigQuery DDL fragments rendered from prod's table metadata (column definitions, partitioning,
clustering), so a derived table keeps prod's types, modes, partitioning and clustering.

Only validated, backtick-quoted identifiers and integers taken from table metadata end up here.
"""

from __future__ import annotations

from typing import Any

from envsync.discovery import TableInfo
from envsync.guard import quote_column
from envsync.verify import TYPE_ALIASES


def column_type_sql(field: dict[str, Any]) -> str:
    kind = field["type"].upper()
    kind = TYPE_ALIASES.get(kind, kind)
    if kind == "STRUCT":
        inner = ", ".join(column_def(sub) for sub in field.get("fields") or [])
        kind = f"STRUCT<{inner}>"
    elif kind in ("NUMERIC", "BIGNUMERIC") and field.get("precision"):
        precision = int(field["precision"])
        scale = int(field.get("scale") or 0)
        kind = f"{kind}({precision}, {scale})"
    elif kind in ("STRING", "BYTES") and field.get("maxLength"):
        kind = f"{kind}({int(field['maxLength'])})"
    if (field.get("mode") or "").upper() == "REPEATED":
        return f"ARRAY<{kind}>"
    return kind


def column_def(field: dict[str, Any]) -> str:
    not_null = " NOT NULL" if (field.get("mode") or "").upper() == "REQUIRED" else ""
    return f"{quote_column(field['name'])} {column_type_sql(field)}{not_null}"


def partition_clause(info: TableInfo) -> str:
    if info.partitioning and info.partitioning.get("field"):
        col_name = info.partitioning["field"]
        unit = info.partitioning["type"].upper()
        column = info.column(col_name) or {"type": "TIMESTAMP"}
        col = quote_column(col_name)
        kind = column["type"].upper()
        if kind == "DATE":
            return f"partition by {col}" if unit == "DAY" else f"partition by date_trunc({col}, {unit})"
        if kind == "DATETIME":
            return f"partition by datetime_trunc({col}, {unit})"
        return f"partition by timestamp_trunc({col}, {unit})"
    if info.range_partitioning:
        rp = info.range_partitioning
        return (
            f"partition by range_bucket({quote_column(rp['field'])}, generate_array("
            f"{int(rp['start'])}, {int(rp['end'])}, {int(rp['interval'])}))"
        )
    return ""


def cluster_clause(info: TableInfo) -> str:
    if not info.clustering:
        return ""
    return "cluster by " + ", ".join(quote_column(c) for c in info.clustering)


def column_list(info: TableInfo) -> str:
    """Prod's top-level column names, quoted, in order (for INSERT and SELECT lists)."""
    return ", ".join(quote_column(f["name"]) for f in info.schema)
