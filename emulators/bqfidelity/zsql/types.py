"""BigQuery column and parameter types <-> GoogleSQL (ZetaSQL) TypeProto.

BigQuery describes a column as an API field (``{"name", "type", "mode", "fields"}``, legacy names
such as INTEGER/FLOAT/BOOLEAN/RECORD allowed) and a query parameter as a ``parameterType``
(``{"type", "arrayType", "structTypes", "rangeElementType"}``). GoogleSQL wants a TypeProto.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zetasql.wasi._pb2.zetasql.public import type_pb2 as tp

# BigQuery type name (standard and legacy) -> TypeKind.
SCALARS: dict[str, int] = {
    "STRING": tp.TYPE_STRING,
    "BYTES": tp.TYPE_BYTES,
    "INT64": tp.TYPE_INT64,
    "INTEGER": tp.TYPE_INT64,
    "FLOAT64": tp.TYPE_DOUBLE,
    "FLOAT": tp.TYPE_DOUBLE,
    "NUMERIC": tp.TYPE_NUMERIC,
    "DECIMAL": tp.TYPE_NUMERIC,
    "BIGNUMERIC": tp.TYPE_BIGNUMERIC,
    "BIGDECIMAL": tp.TYPE_BIGNUMERIC,
    "BOOL": tp.TYPE_BOOL,
    "BOOLEAN": tp.TYPE_BOOL,
    "TIMESTAMP": tp.TYPE_TIMESTAMP,
    "DATE": tp.TYPE_DATE,
    "TIME": tp.TYPE_TIME,
    "DATETIME": tp.TYPE_DATETIME,
    "GEOGRAPHY": tp.TYPE_GEOGRAPHY,
    "JSON": tp.TYPE_JSON,
    "INTERVAL": tp.TYPE_INTERVAL,
}
# TypeKind -> BigQuery's standard SQL name.
NAMES: dict[int, str] = {
    tp.TYPE_STRING: "STRING",
    tp.TYPE_BYTES: "BYTES",
    tp.TYPE_INT64: "INT64",
    tp.TYPE_DOUBLE: "FLOAT64",
    tp.TYPE_NUMERIC: "NUMERIC",
    tp.TYPE_BIGNUMERIC: "BIGNUMERIC",
    tp.TYPE_BOOL: "BOOL",
    tp.TYPE_TIMESTAMP: "TIMESTAMP",
    tp.TYPE_DATE: "DATE",
    tp.TYPE_TIME: "TIME",
    tp.TYPE_DATETIME: "DATETIME",
    tp.TYPE_GEOGRAPHY: "GEOGRAPHY",
    tp.TYPE_JSON: "JSON",
    tp.TYPE_INTERVAL: "INTERVAL",
}


class UnsupportedType(ValueError):
    """A BigQuery type this module cannot express for the analyzer."""


def scalar(kind: int) -> tp.TypeProto:
    return tp.TypeProto(type_kind=kind)


def get(item: Any, key: str) -> Any:
    """item[key] for dicts, item.key for pydantic models (local-bigquery's), None when absent."""
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


def field_type(field: Any) -> tp.TypeProto:
    """The TypeProto of a BigQuery schema field (dict or model), mode REPEATED making it an ARRAY."""
    kind = str(get(field, "type") or "STRING").upper()
    if kind in ("RECORD", "STRUCT"):
        members = [
            tp.StructFieldProto(field_name=get(child, "name") or "", field_type=field_type(child))
            for child in get(field, "fields") or []
        ]
        element = tp.TypeProto(type_kind=tp.TYPE_STRUCT, struct_type=tp.StructTypeProto(field=members))
    elif kind == "RANGE":
        inner = get(field, "rangeElementType") or get(field, "range_element_type")
        element = _range(str(get(inner, "type") or "DATE").upper())
    elif kind in SCALARS:
        element = scalar(SCALARS[kind])
    else:
        raise UnsupportedType(f"column {get(field, 'name')}: type {kind}")
    if str(get(field, "mode") or "").upper() == "REPEATED":
        return tp.TypeProto(type_kind=tp.TYPE_ARRAY, array_type=tp.ArrayTypeProto(element_type=element))
    return element


def _range(element: str) -> tp.TypeProto:
    if element not in SCALARS:
        raise UnsupportedType(f"RANGE<{element}>")
    return tp.TypeProto(type_kind=tp.TYPE_RANGE, range_type=tp.RangeTypeProto(element_type=scalar(SCALARS[element])))


def parameter_type(spec: Any) -> tp.TypeProto:
    """The TypeProto of a query parameter's ``parameterType`` (dict or model)."""
    kind = str(get(spec, "type") or "STRING").upper()
    if kind == "ARRAY":
        element = parameter_type(get(spec, "arrayType"))
        return tp.TypeProto(type_kind=tp.TYPE_ARRAY, array_type=tp.ArrayTypeProto(element_type=element))
    if kind == "STRUCT":
        members = [
            tp.StructFieldProto(field_name=get(member, "name") or "", field_type=parameter_type(get(member, "type")))
            for member in get(spec, "structTypes") or []
        ]
        return tp.TypeProto(type_kind=tp.TYPE_STRUCT, struct_type=tp.StructTypeProto(field=members))
    if kind == "RANGE":
        return _range(str(get(get(spec, "rangeElementType"), "type") or "DATE").upper())
    if kind in SCALARS:
        return scalar(SCALARS[kind])
    raise UnsupportedType(f"parameter type {kind}")


def type_name(proto: tp.TypeProto) -> str:
    """BigQuery's spelling of a type: INT64, ARRAY<STRUCT<a INT64, b STRING>>, RANGE<DATE>."""
    kind = proto.type_kind
    if kind == tp.TYPE_ARRAY:
        return f"ARRAY<{type_name(proto.array_type.element_type)}>"
    if kind == tp.TYPE_STRUCT:
        members = ", ".join(
            f"{member.field_name} {type_name(member.field_type)}".strip() for member in proto.struct_type.field
        )
        return f"STRUCT<{members}>"
    if kind == tp.TYPE_RANGE:
        return f"RANGE<{type_name(proto.range_type.element_type)}>"
    return NAMES.get(kind) or tp.TypeKind.Name(kind).removeprefix("TYPE_")


def schema_type_name(field: Any) -> str:
    """type_name() of a BigQuery schema field (so schemas and analyzer output compare as text)."""
    return type_name(field_type(field))


def schema_field(name: str, proto: tp.TypeProto) -> dict[str, Any]:
    """The BigQuery API schema field of a column of type `proto` (the inverse of field_type)."""
    mode = "NULLABLE"
    if proto.type_kind == tp.TYPE_ARRAY:
        mode, proto = "REPEATED", proto.array_type.element_type
    if proto.type_kind == tp.TYPE_STRUCT:
        return {
            "name": name,
            "type": "RECORD",
            "mode": mode,
            "fields": [schema_field(member.field_name, member.field_type) for member in proto.struct_type.field],
        }
    if proto.type_kind == tp.TYPE_RANGE:
        return {
            "name": name,
            "type": "RANGE",
            "mode": mode,
            "rangeElementType": {"type": type_name(proto.range_type.element_type)},
        }
    return {"name": name, "type": type_name(proto), "mode": mode}
