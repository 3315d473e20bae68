"""envsync.dev.demo against the local BigQuery emulator: deterministic, correctly shaped demo prod.

The demo is built in a project of its own (DEMO_PROJECT) so it never touches the `prod` fixture's
datasets in the shared session emulator (the emulator serves any project id).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from envsync.core.identifiers import quote
from envsync.dev import demo

# Not on a GCP sandbox (`make test-gcp`): this checks envsync.dev.demo, the stand-in prod of the local demo,
# in projects of its own (one per test), not envsync's behaviour on BigQuery.
pytestmark = [pytest.mark.integration, pytest.mark.gcp_incompatible]

DEMO_PROJECT = "envsync-demotest"
ROWS = 1000
REF_DATE = date(2026, 11, 21)
TABLES = [o.key for o in demo.OBJECTS if o.kind == "table"]
DATE_TYPES = {"DATE", "DATETIME", "TIMESTAMP"}


def _client(project: str = DEMO_PROJECT) -> Any:
    from envsync.core.clients import bigquery_client

    return bigquery_client(project, "US")


def _rows(client: Any, sql: str) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    job = client.query(sql, retry=bigquery.DEFAULT_RETRY.with_deadline(30), job_retry=None)
    return [dict(row.items()) for row in job.result()]


def _fingerprints(client: Any) -> dict[str, tuple[int, int]]:
    """(row count, order-independent checksum of every row's JSON) per demo table."""
    out = {}
    for key in TABLES:
        dataset, table = key.split(".")
        row = _rows(
            client,
            f"select count(*) as n, bit_xor(farm_fingerprint(to_json_string(t))) as checksum "
            f"from {quote(DEMO_PROJECT, dataset, table)} as t",
        )[0]
        out[key] = (row["n"], row["checksum"])
    return out


@pytest.fixture(scope="module")
def two_runs(emulators: Any) -> Iterator[dict[str, Any]]:
    """Build the demo, fingerprint it, drop it, build it again (same rows and ref date), fingerprint."""
    client = _client()
    demo.drop_demo_prod(client, DEMO_PROJECT)
    first_counts = demo.create_demo_prod(client, DEMO_PROJECT, "US", ROWS, REF_DATE)
    first = _fingerprints(client)
    demo.drop_demo_prod(client, DEMO_PROJECT)
    second_counts = demo.create_demo_prod(client, DEMO_PROJECT, "US", ROWS, REF_DATE)
    second = _fingerprints(client)
    yield {"client": client, "counts": (first_counts, second_counts), "fingerprints": (first, second)}
    demo.drop_demo_prod(client, DEMO_PROJECT)


def test_two_runs_are_identical(two_runs: dict[str, Any]) -> None:
    first_counts, second_counts = two_runs["counts"]
    assert first_counts == second_counts
    assert {k: v for k, v in first_counts.items() if k in TABLES} == demo.expected_row_counts(ROWS)
    first, second = two_runs["fingerprints"]
    assert first == second
    assert all(checksum not in (None, 0) for _, checksum in first.values())


def test_replacing_in_place_is_identical_too(two_runs: dict[str, Any]) -> None:
    client = two_runs["client"]
    demo.create_demo_prod(client, DEMO_PROJECT, "US", ROWS, REF_DATE)  # CREATE OR REPLACE over itself
    assert _fingerprints(client) == two_runs["fingerprints"][1]


def test_orders_span_exactly_730_days_ending_at_ref_date(two_runs: dict[str, Any]) -> None:
    client = two_runs["client"]
    orders = quote(DEMO_PROJECT, "sales", "orders")
    row = _rows(
        client,
        f"select min(order_date) as first_day, max(order_date) as last_day, "
        f"count(distinct order_date) as days, "
        f"countif(order_date = date '2026-06-30') as before_q3, "
        f"countif(order_date = date '2026-07-01') as q3_start "
        f"from {orders}",
    )[0]
    assert row["last_day"] == REF_DATE
    assert row["first_day"] == REF_DATE - timedelta(days=729)
    assert row["days"] == 730
    assert row["before_q3"] > 0 and row["q3_start"] > 0

    table = client.get_table(f"{DEMO_PROJECT}.sales.orders")
    assert table.time_partitioning.type_ == "DAY" and table.time_partitioning.field == "order_date"
    assert table.clustering_fields == ["customer_id"]
    items = next(f for f in table.schema if f.name == "items")
    assert items.mode == "REPEATED" and [(f.name, f.field_type) for f in items.fields] == [
        ("sku", "STRING"),
        ("quantity", "INTEGER"),
        ("unit_price", "NUMERIC"),
    ]
    assert table.description and table.labels.get("envsync_demo") == "true"
    partitions = _rows(
        client,
        "select count(*) as n from `envsync-demotest.sales.INFORMATION_SCHEMA.PARTITIONS` where table_name = 'orders'",
    )[0]["n"]
    assert partitions == 730


def test_customers_has_no_date_column(two_runs: dict[str, Any]) -> None:
    def types(fields: Any) -> set[str]:
        return {f.field_type for f in fields} | {t for f in fields if f.fields for t in types(f.fields)}

    customers = two_runs["client"].get_table(f"{DEMO_PROJECT}.sales.customers")
    assert [f.name for f in customers.schema] == ["customer_id", "name", "segment", "country"]
    assert not types(customers.schema) & DATE_TYPES
    assert customers.time_partitioning is None


def test_shapes_the_sync_relies_on(two_runs: dict[str, Any]) -> None:
    client = two_runs["client"]

    def date_columns(key: str) -> list[str]:
        table = client.get_table(f"{DEMO_PROJECT}.{key}")
        return [f.name for f in table.schema if f.field_type in DATE_TYPES]

    assert date_columns("sales.orders_flat") == ["order_date", "ship_date"]
    assert client.get_table(f"{DEMO_PROJECT}.sales.orders_flat").time_partitioning is None
    assert date_columns("marketing.ad_spend") == ["spend_date"]
    assert date_columns("marketing.campaigns") == []
    assert date_columns("sales.audit_log") == ["event_at"]
    sessions = client.get_table(f"{DEMO_PROJECT}.marketing.sessions")
    assert (sessions.time_partitioning.type_, sessions.time_partitioning.field) == ("MONTH", "session_start")
    span = _rows(
        client,
        "select date(min(session_start)) as first_day, date(max(session_start)) as last_day "
        "from `envsync-demotest.marketing.sessions`",
    )[0]
    assert (span["first_day"], span["last_day"]) == (REF_DATE - timedelta(days=729), REF_DATE)
    for dataset in demo.DATASETS:
        info = client.get_dataset(f"{DEMO_PROJECT}.{dataset}")
        assert info.location == "US" and info.description and info.labels.get("envsync_demo") == "true"


def test_view_joins_both_datasets_and_returns_rows(two_runs: dict[str, Any]) -> None:
    client = two_runs["client"]
    view = client.get_table(f"{DEMO_PROJECT}.marketing.campaign_revenue")
    assert view.table_type == "VIEW"
    assert "sales.orders" in view.view_query and "marketing.campaigns" in view.view_query
    rows = _rows(client, "select * from `envsync-demotest.marketing.campaign_revenue`")
    assert rows and sum(r["orders"] for r in rows) > 0
    assert all(r["revenue"] > 0 for r in rows)
    assert two_runs["counts"][0]["marketing.campaign_revenue"] == len(rows)


def test_another_ref_date_shifts_the_data(emulators: Any) -> None:
    project = "envsync-demoshift"
    client = _client(project)
    try:
        demo.create_demo_prod(client, project, "US", 800, date(2025, 3, 31))
        row = _rows(
            client,
            f"select min(order_date) as first_day, max(order_date) as last_day "
            f"from {quote(project, 'sales', 'orders')}",
        )[0]
        assert (row["first_day"], row["last_day"]) == (date(2023, 4, 2), date(2025, 3, 31))
    finally:
        demo.drop_demo_prod(client, project)


def test_refuses_datasets_it_did_not_create(emulators: Any) -> None:
    from google.cloud import bigquery

    project = "envsync-demoguard"
    client = _client(project)
    dataset = bigquery.Dataset(f"{project}.sales")
    dataset.location = "US"
    client.create_dataset(dataset, exists_ok=True)
    _rows(client, f"create or replace table {quote(project, 'sales', 'precious')} as select 1 as x")
    try:
        with pytest.raises(demo.DemoError, match="not created by envsync.dev.demo"):
            demo.create_demo_prod(client, project, "US", 10)
        with pytest.raises(demo.DemoError, match="not created by envsync.dev.demo"):
            demo.drop_demo_prod(client, project)
        assert _rows(client, f"select x from {quote(project, 'sales', 'precious')}") == [{"x": 1}]
    finally:
        client.delete_dataset(f"{project}.sales", delete_contents=True, not_found_ok=True)
        client.delete_dataset(f"{project}.marketing", delete_contents=True, not_found_ok=True)
