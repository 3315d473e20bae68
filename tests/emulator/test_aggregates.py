"""ARRAY_AGG's IGNORE NULLS with ORDER BY and LIMIT, as BigQuery's aggregate functions page documents it:
IGNORE NULLS excludes NULL values from the result, then LIMIT keeps the first n in the ORDER BY order;
an array holding a NULL is an error only in the final result of an ARRAY_AGG without it."""

from __future__ import annotations

from typing import Any

import fidkit
import pytest

pytestmark = pytest.mark.integration

ARRAY_AGG_DOC = "https://cloud.google.com/bigquery/docs/reference/standard-sql/aggregate_functions#array_agg"

ROWS = """
    select 'a' as env, 1 as n, 'drift' as status union all
    select 'a', 2, 'ok' union all
    select 'a', 3, 'drift' union all
    select 'a', 4, 'drift' union all
    select 'a', 5, 'ok' union all
    select 'b', 1, 'ok'
"""


def test_ignore_nulls_drops_the_nulls_before_order_by_and_limit(bq: Any) -> None:
    """ARRAY_AGG_DOC, IGNORE NULLS and LIMIT: the first two n of status drift, per env; none for b."""
    rows = fidkit.run(
        bq,
        f"""
        with findings as ({ROWS})
        select env, array_agg(if(status = 'drift', n, null) ignore nulls order by n desc limit 2) as drift
        from findings group by env order by env""",
    )
    assert rows == [{"env": "a", "drift": [4, 3]}, {"env": "b", "drift": []}]


def test_ignore_nulls_with_limit_keeps_the_same_values_as_without(bq: Any) -> None:
    """ARRAY_AGG_DOC: LIMIT n after IGNORE NULLS is the first n of the same array without LIMIT."""
    rows = fidkit.run(
        bq,
        f"""
        with findings as ({ROWS})
        select array_agg(if(status = 'ok', concat(env, cast(n as string)), null) ignore nulls order by env, n)
                   as every_ok,
               array_agg(if(status = 'ok', concat(env, cast(n as string)), null) ignore nulls order by env, n
                         limit 2) as first_ok
        from findings""",
    )
    assert rows == [{"every_ok": ["a2", "a5", "b1"], "first_ok": ["a2", "a5"]}]


def test_without_ignore_nulls_a_null_element_is_still_an_error(bq: Any) -> None:
    """ARRAY_AGG_DOC: 'An error is raised if an array in the final query result contains a NULL element'."""
    from google.api_core.exceptions import BadRequest

    with pytest.raises(BadRequest, match="Array cannot have a null element"):
        fidkit.run(
            bq,
            f"""
            with findings as ({ROWS})
            select array_agg(if(status = 'drift', n, null) order by n limit 2) as drift from findings""",
        )
