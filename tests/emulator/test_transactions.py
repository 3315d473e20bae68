"""Multi-statement transactions across datasets, as BigQuery documents them (TRANSACTIONS_DOC:
"Performing DML mutations on multiple tables as a single transaction. The tables can span multiple
datasets or projects").

This is also what the emulator's storage layout must keep: local-bigquery stores a project in one
DuckLake catalog, and DuckDB lets a transaction write to one attached database only. One catalog per
dataset would make DuckLake's rebuild of its catalog after each schema change cheaper at 1,000 tables
(bench/README.md, bench_scale), but a transaction over two datasets would then fail; these tests fail
if the layout changes that way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fidkit
import pytest
from google.api_core import exceptions

pytestmark = pytest.mark.integration

PROJECT = "envsync-demo"
TRANSACTIONS_DOC = "https://cloud.google.com/bigquery/docs/transactions"


def _two_tables(bq: Any, dataset: Callable[..., str]) -> tuple[str, str]:
    a, b = (f"`{PROJECT}.{dataset()}.t`" for _ in range(2))
    for table in (a, b):
        fidkit.run(bq, f"create table {table} (x int64)")
    return a, b


def _counts(bq: Any, a: str, b: str) -> tuple[int, int]:
    [row] = fidkit.run(bq, f"select (select count(*) from {a}) as a, (select count(*) from {b}) as b")
    return row["a"], row["b"]


def test_a_transaction_over_two_datasets_commits_both(bq: Any, dataset: Callable[..., str]) -> None:
    a, b = _two_tables(bq, dataset)
    fidkit.run(
        bq, f"begin transaction; insert into {a} values (1); insert into {b} values (2), (3); commit transaction;"
    )
    assert _counts(bq, a, b) == (1, 2)


def test_a_failed_transaction_over_two_datasets_changes_neither(bq: Any, dataset: Callable[..., str]) -> None:
    a, b = _two_tables(bq, dataset)
    with pytest.raises(exceptions.BadRequest, match="division by zero"):
        fidkit.run(
            bq,
            f"begin transaction; insert into {a} values (1); insert into {b} values (2); "
            "select 1 / 0; commit transaction;",
        )
    assert _counts(bq, a, b) == (0, 0)
