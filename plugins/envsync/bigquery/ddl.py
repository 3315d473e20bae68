"""BigQuery DDL fragments rendered from prod's table metadata (column definitions, partitioning,
clustering), so a derived table keeps prod's types, modes, collation, partitioning and clustering;
and the column options DDL cannot carry, set through the API after the table is created.

What a derived (CTAS / reseeded) table keeps of each prod column:
  * type (incl. RANGE<DATE|DATETIME|TIMESTAMP>, parameterized types), mode: in the column definition;
  * collation: `COLLATE '<spec>'` in the column definition (a column's collation is set when it is
    created: https://cloud.google.com/bigquery/docs/reference/standard-sql/collation-concepts);
  * description, default value (defaultValueExpression) and policy tags: set by one tables.update of
    the schema right after creation (`carry_column_options`). Policy tags cannot be written in DDL
    (https://cloud.google.com/bigquery/docs/column-level-security#set_policy); the update is then
    read back, and a table whose tags did not stick raises ColumnOptionsError, so a derived table is
    never published without prod's tags.
Ingestion-time partitioned tables (time partitioning without a field) are created with `PARTITION BY
_PARTITIONDATE` / `TIMESTAMP_TRUNC(_PARTITIONTIME, HOUR)`; CTAS cannot create them
(https://cloud.google.com/bigquery/docs/creating-partitioned-tables#create_an_ingestion-time_partitioned_table),
so they are created empty and filled by INSERT ... (_PARTITIONTIME, ...) carrying prod's partition time.

Only validated, backtick-quoted identifiers, integers and validated collation names taken from table
metadata end up in SQL text here.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import TYPE_CHECKING, Any

from envsync.bigquery.discovery import TYPE_ALIASES, TableInfo
from envsync.core.identifiers import quote_column

if TYPE_CHECKING:
    from envsync.core.guard import GuardedBigQuery, TableRef

log = logging.getLogger(__name__)

RANGE_ELEMENT_TYPES = ("DATE", "DATETIME", "TIMESTAMP")
# 'und:ci' and '' are BigQuery's collation specifications today; allow the documented shape
# <language_tag>[:<collation_attribute>] without quotes or backslashes.
_COLLATION = re.compile(r"^[A-Za-z0-9_:\-]{1,64}$")
CARRIED_OPTIONS = ("description", "defaultValueExpression", "policyTags")


class ColumnOptionsError(RuntimeError):
    """A derived table did not take prod's column options (for example its policy tags)."""


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
    elif kind == "RANGE":
        element = ((field.get("rangeElementType") or {}).get("type") or "").upper()
        if element not in RANGE_ELEMENT_TYPES:
            raise ValueError(
                f"column {field['name']!r}: RANGE element type {element or None!r} is not one of "
                f"{', '.join(RANGE_ELEMENT_TYPES)}"
            )
        kind = f"RANGE<{element}>"
    if (field.get("mode") or "").upper() == "REPEATED":
        return f"ARRAY<{kind}>"
    return kind


def collate_sql(field: dict[str, Any]) -> str:
    collation = field.get("collation")
    if not collation:
        return ""
    if not _COLLATION.match(collation):
        raise ValueError(
            f"column {field['name']!r}: collation {collation!r} is not a collation specification "
            "(letters, digits, '_', '-' and ':')"
        )
    return f" COLLATE '{collation}'"


def column_def(field: dict[str, Any]) -> str:
    """`name TYPE [COLLATE '...'] [NOT NULL]`; ARRAY<STRING COLLATE ..> keeps the collation inside."""
    not_null = " NOT NULL" if (field.get("mode") or "").upper() == "REQUIRED" else ""
    kind = column_type_sql(field)
    collate = collate_sql(field)
    if collate and kind.startswith("ARRAY<"):
        kind, collate = kind[:-1] + collate + ">", ""
    return f"{quote_column(field['name'])} {kind}{collate}{not_null}"


def is_ingestion_time(info: TableInfo) -> bool:
    return bool(info.partitioning and not info.partitioning.get("field"))


def carried_schema(prod: list[dict[str, Any]], created: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`created` (the new table's schema, API form) with prod's description, default value and policy
    tags on every column and nested field, matched by name."""
    by_name = {f["name"].lower(): f for f in prod}
    out = []
    for field in created:
        field = copy.deepcopy(field)
        source = by_name.get(field["name"].lower())
        if source is not None:
            for option in CARRIED_OPTIONS:
                if source.get(option):
                    field[option] = copy.deepcopy(source[option])
            if field.get("fields") and source.get("fields"):
                field["fields"] = carried_schema(source["fields"], field["fields"])
        out.append(field)
    return out


def _tags(fields: list[dict[str, Any]], prefix: str = "") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for field in fields:
        name = prefix + field["name"]
        names = (field.get("policyTags") or {}).get("names") or []
        if names:
            found[name.lower()] = sorted(names)
        found.update(_tags(field.get("fields") or [], name + "."))
    return found


def needs_options(prod: list[dict[str, Any]]) -> bool:
    return any(f.get(o) for f in prod for o in CARRIED_OPTIONS) or any(
        needs_options(f.get("fields") or []) for f in prod
    )


def carry_column_options(bq: GuardedBigQuery, ref: TableRef, prod: list[dict[str, Any]]) -> None:
    """Give the freshly created table `ref` prod's column descriptions, default values and policy tags
    (one tables.update of the schema), then check that every policy tag is there."""
    from google.cloud import bigquery

    if not needs_options(prod):
        return
    table = bq.client.get_table(ref.api)
    schema = carried_schema(prod, [f.to_api_repr() for f in table.schema])
    table.schema = [bigquery.SchemaField.from_api_repr(f) for f in schema]
    bq.update_table(table, ["schema"])
    expected = _tags(prod)
    got = _tags([f.to_api_repr() for f in bq.client.get_table(ref.api).schema])
    missing = {name: tags for name, tags in expected.items() if got.get(name) != tags}
    if missing:
        raise ColumnOptionsError(
            f"{ref}: policy tags of prod were not applied to column(s) {missing}; "
            "the table is not published without them"
        )
    log.info(
        "%s: carried prod's column descriptions, default values and policy tags (%d tagged column(s))",
        ref,
        len(expected),
    )


def partition_clause(info: TableInfo) -> str:
    """PARTITION BY of prod's partitioning; ingestion-time tables per
    https://cloud.google.com/bigquery/docs/reference/standard-sql/data-definition-language#partition_expression"""
    if is_ingestion_time(info):
        unit = (info.partitioning or {}).get("type", "DAY").upper()
        if unit == "DAY":
            return "partition by _PARTITIONDATE"
        if unit == "HOUR":
            return "partition by timestamp_trunc(_PARTITIONTIME, HOUR)"
        if unit in ("MONTH", "YEAR"):
            return f"partition by date_trunc(_PARTITIONDATE, {unit})"
        raise ValueError(f"{info.dataset}.{info.table}: unknown partitioning type {unit!r}")
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


def insert_columns(info: TableInfo) -> str:
    """The INSERT column list; ingestion-time tables carry _PARTITIONTIME first."""
    return ("_PARTITIONTIME, " if is_ingestion_time(info) else "") + column_list(info)


def columns_sql(info: TableInfo) -> str:
    return ",\n    ".join(column_def(f) for f in info.schema)
