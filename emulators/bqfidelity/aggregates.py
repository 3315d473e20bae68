"""ARRAY_AGG(x IGNORE NULLS ORDER BY ... LIMIT n) drops the NULLs before it orders and limits, as BigQuery does.

What BigQuery does: ``IGNORE NULLS`` excludes NULL values from the result; an ARRAY_AGG whose array
would hold a NULL is an error only without it ("An error is raised if an array in the final query
result contains a NULL element"). ``LIMIT n`` then keeps at most n of the remaining values, in the
``ORDER BY`` order (https://cloud.google.com/bigquery/docs/reference/standard-sql/aggregate_functions#array_agg).
So ``ARRAY_AGG(IF(cond, x, NULL) IGNORE NULLS ORDER BY y LIMIT 3)`` is the first three x whose cond holds.

What local-bigquery 0.4.0 does: its rule for a limited aggregate (``query.limited_aggregates``)
rebuilds ``ARRAY_AGG(... LIMIT n)`` as ``list_slice(ARRAY_AGG(...), 1, n)`` and leaves the
``IGNORE NULLS`` around the slice, where DuckDB's SQL drops it: the NULLs stay in the array (sorted
first), and the query fails with "Array cannot have a null element". Without LIMIT the emulator
already filters them (``ARRAY_AGG(x) FILTER (WHERE x IS NOT NULL)``). This module moves the slice
outside: ``list_slice(ARRAY_AGG(x IGNORE NULLS ORDER BY y), 1, n)``, so the NULLs are filtered
before the slice, as without LIMIT.
"""

from __future__ import annotations

import logging

from sqlglot import exp

log = logging.getLogger("bqfidelity.aggregates")


def ignore_nulls_before_limit(tree: exp.Expression, context) -> exp.Expression:  # local-bigquery's rule signature
    """A statement rule: ARRAY_AGG(x IGNORE NULLS [ORDER BY ...] LIMIT n) -> the first n non-NULL x."""
    for ignore in list(tree.find_all(exp.IgnoreNulls)):
        aggregate = ignore.this
        if not isinstance(aggregate, exp.ArrayAgg) or not isinstance(aggregate.this, exp.Limit):
            continue
        limit = aggregate.this
        unlimited = exp.IgnoreNulls(this=exp.ArrayAgg(this=limit.this.copy()))
        ignore.replace(exp.func("list_slice", unlimited, exp.Literal.number(1), limit.expression.copy()))
    return tree


def install() -> None:
    """Patch local-bigquery in this process (idempotent through bqfidelity.install)."""
    from local_bigquery.sql import rules as sql_rules
    from local_bigquery.sql.rules import query

    rules = sql_rules.STATEMENT_RULES
    rules.insert(rules.index(query.limited_aggregates), ignore_nulls_before_limit)
    log.info("aggregates: ARRAY_AGG(... IGNORE NULLS ... LIMIT n) drops the NULLs before the limit")
