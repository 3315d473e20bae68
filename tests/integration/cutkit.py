"""Helpers of the staging tests: qa_shop and staging_shop beside backupkit's prod `shop`, as the reseed
would leave them (standard tables made by CTAS, views reading their own environment), and their
fingerprints computed in BigQuery (row count and BIT_XOR(FARM_FINGERPRINT(TO_JSON_STRING(row))))."""

from __future__ import annotations

from typing import Any

from backupkit import PROJECT, client, fq, query

TABLES = ("orders", "customers")
SEED_VERSION = "0123456789ab"


def fingerprints(dataset: str, tables: tuple[str, ...] = TABLES) -> dict[str, tuple[int, int]]:
    """(rows, checksum) of each table of `dataset`."""
    found = {}
    for table in tables:
        [row] = query(
            f"select count(*) as n, coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as c "
            f"from `{PROJECT}.{dataset}.{table}` as t"
        )
        found[table] = (row["n"], row["c"])
    return found


def _dataset(name: str, labels: dict[str, str]) -> None:
    from google.cloud import bigquery

    dataset = bigquery.Dataset(fq(name))
    dataset.location = "US"
    dataset.max_time_travel_hours = 48
    dataset.labels = labels
    client().create_dataset(dataset, exists_ok=True)


def make_staging() -> None:
    """staging_shop as a seeded staging holds it: shop's tables (standard tables)."""
    _dataset("staging_shop", {"envsync-managed": "true", "envsync-env": "staging"})
    query(
        f"create or replace table `{PROJECT}.staging_shop.orders` partition by d as "
        f"select * from `{PROJECT}.shop.orders`"
    )
    query(f"create or replace table `{PROJECT}.staging_shop.customers` as select * from `{PROJECT}.shop.customers`")


def make_qa() -> None:
    """qa_shop: other data than staging (QA's sprint), a view reading qa, the reseed's seed-version label."""
    _dataset("qa_shop", {"envsync-managed": "true", "envsync-env": "qa", "envsync-seed-version": SEED_VERSION})
    query(
        f"create or replace table `{PROJECT}.qa_shop.orders` partition by d as "
        f"select id, d, amount * 3 as amount, concat('qa-', note) as note from `{PROJECT}.shop.orders` where id > 5"
    )
    query(
        f"create or replace table `{PROJECT}.qa_shop.customers` as "
        f"select customer_id, upper(name) as name from `{PROJECT}.shop.customers`"
    )
    query(
        f"create or replace view `{PROJECT}.qa_shop.big_orders` as "
        f"select * from `{PROJECT}.qa_shop.orders` where amount > 50"
    )


def views(dataset: str) -> dict[str, Any]:
    return {
        t.table_id: client().get_table(t.reference).view_query
        for t in client().list_tables(fq(dataset))
        if t.table_type == "VIEW"
    }
