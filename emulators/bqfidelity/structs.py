"""A STRUCT built from column references names its fields after the columns, as BigQuery does.

What BigQuery does: in the tuple syntax ``STRUCT(expr1 [AS field_name], ...)`` a field without an
alias whose expression is a column reference (or a path ending in a field) takes that name, so
``TO_JSON_STRING(STRUCT(id, coordinates))`` is ``{"id":1,"coordinates":[10,20]}``
(https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#constructing_a_struct and the
TO_JSON_STRING examples, https://cloud.google.com/bigquery/docs/reference/standard-sql/json_functions#to_json_string).

What local-bigquery 0.4.0 does: it translates a STRUCT without aliases to DuckDB's unnamed ``row(...)``,
so the fields have empty names (``{"":1,"":[10,20]}``). This module gives such a struct's fields their
column names before that translation, when every field is a column reference and the names are
distinct (other structs are left as the emulator makes them).
"""

from __future__ import annotations

import logging

from sqlglot import exp

log = logging.getLogger("bqfidelity.structs")


def struct_field_names(tree: exp.Expression, context) -> exp.Expression:  # local-bigquery's rule signature
    """A statement rule: STRUCT(a, t.b) -> STRUCT(a AS a, t.b AS b) (column references only)."""
    for struct in list(tree.find_all(exp.Struct)):
        if isinstance(struct.parent, exp.Cast | exp.Array):
            continue
        fields = struct.expressions
        if not fields or not all(isinstance(f, exp.Column) for f in fields):
            continue
        names = [f.name for f in fields]
        if len({n.casefold() for n in names}) != len(names):
            continue
        struct.set(
            "expressions",
            [
                exp.PropertyEQ(this=exp.to_identifier(name), expression=field.copy())
                for name, field in zip(names, fields, strict=False)
            ],
        )
    return tree


def install() -> None:
    """Patch local-bigquery in this process (idempotent through bqfidelity.install)."""
    from local_bigquery.sql import rules as sql_rules
    from local_bigquery.sql.rules import arrays

    rules = sql_rules.STATEMENT_RULES
    rules.insert(rules.index(arrays.anonymous_structs), struct_field_names)
    log.info("structs: STRUCT(column, ...) fields take the columns' names")
