"""Helpers of the integration tests: the exactly known test prod, queries, and environment clean-up.

Tests name datasets logically (sales, dev_sales, envsync_audit); on a real GCP sandbox they carry the
run prefix (tests/sandbox.py). `ds`, `tref` and `fq` map names for API calls and expected values;
`query` maps the `<PROJECT>.<dataset>.` references of its SQL itself.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sandbox

REPO_ROOT = Path(__file__).resolve().parents[2]
NS = sandbox.namespace("envsync-demo")
PROJECT = NS.project
BUCKET = NS.bucket("envsync-demo-state")  # the shipped config's state bucket
ds, tref, fq = NS.ds, NS.tref, NS.fq
UTC = dt.UTC

# One order per day from FIRST_DAY to LAST_DAY; order_id = days since FIRST_DAY.
FIRST_DAY = dt.date(2025, 11, 1)
LAST_DAY = dt.date(2026, 11, 23)
# Session rows sit exactly on and around the window edges of A = 2026-11-21 02:00, N = 2.
SESSION_EDGES = [
    "2026-06-30 23:59:59.999999+00",
    "2026-07-01 00:00:00+00",
    "2026-11-21 01:59:59.999999+00",
    "2026-11-21 02:00:00+00",
]

PROD_SQL = [
    """create or replace table `{p}.sales.orders`
       partition by order_date cluster by customer_id
       options (description = 'one order per day')
       as select
           id as order_id,
           mod(id, 20) as customer_id,
           order_date,
           [struct(concat('sku-', cast(id as string)) as sku, id + 1 as quantity),
            struct('sku-extra' as sku, 2 as quantity)] as items,
           struct(concat('city-', cast(mod(id, 7) as string)) as city, 'NL' as country) as shipping
       from unnest(generate_date_array(@first_day, @last_day)) as order_date with offset as id""",
    """create or replace table `{p}.sales.customers` as
       select id as customer_id, concat('customer-', cast(id as string)) as name,
              if(mod(id, 2) = 0, 'retail', 'wholesale') as segment
       from unnest(generate_array(0, 19)) as id""",
    """create or replace table `{p}.sales.orders_flat` as
       select id as order_id, order_date, date_add(order_date, interval 10 day) as ship_date
       from unnest(generate_date_array(@first_day, @last_day)) as order_date with offset as id""",
    """create or replace table `{p}.sales.audit_log` as
       select id, timestamp '2026-09-01 00:00:00+00' as logged_at
       from unnest(generate_array(1, 5)) as id""",
    """create or replace table `{p}.marketing.sessions`
       partition by timestamp_trunc(session_start, month)
       as select id as session_id, session_start from (
           select id, timestamp_add(timestamp '2025-11-01 06:00:00+00', interval 12 * id hour) as session_start
           from unnest(generate_array(0, 770)) as id
           union all
           select 100000 + edge_id, edge
           from unnest([timestamp '{e0}', timestamp '{e1}', timestamp '{e2}', timestamp '{e3}']) as edge
               with offset as edge_id
       )""",
    """create or replace table `{p}.marketing.ad_spend` as
       select id as spend_id, spend_date, cast(id as float64) * 1.5 as amount
       from unnest(generate_date_array(@first_day, @last_day)) as spend_date with offset as id""",
    """create or replace view `{p}.marketing.campaign_revenue` as
       select c.segment, count(*) as orders, sum(a.amount) as spend
       from `{p}.sales.orders` as o
       join sales.customers as c using (customer_id)
       join marketing.ad_spend as a on a.spend_date = o.order_date
       group by c.segment""",
]


def bq_client():
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def query(sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    client = bq_client()
    job = client.query(
        NS.sql(sql), job_config=bigquery.QueryJobConfig(query_parameters=to_query_parameters(params)), job_retry=None
    )
    return [dict(row) for row in job.result()]


def dataset_names() -> set[str]:
    """The logical names of this kit's datasets in the project."""
    return {name for d in bq_client().list_datasets() if (name := NS.logical(d.dataset_id)) is not None}


def drop_environment_datasets() -> None:
    client = bq_client()
    for name in dataset_names():
        if name.startswith(("dev_", "qa_", "staging_", "prodcopy_")):
            client.delete_dataset(fq(name), delete_contents=True, not_found_ok=True)


def clear_manifests(bucket: str = BUCKET) -> None:
    from google.api_core.exceptions import NotFound

    from envsync.core.clients import storage_client

    client = storage_client(PROJECT)
    try:
        for blob in client.list_blobs(bucket):
            blob.delete()
    except NotFound:
        pass


def states(dag_run: Any) -> dict[str, str]:
    """`task[map index]` -> state of every task instance of a finished DAG run."""
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def create_demo_prod_in(ns: Any, rows: int = 400) -> dict[str, Any]:
    """The demo prod (envsync.dev.demo) in a kit's own project, its datasets carrying the kit's prefix."""
    from envsync.core.clients import bigquery_client
    from envsync.dev.demo import create_demo_prod

    return create_demo_prod(bigquery_client(ns.project, "US"), ns.project, "US", rows, dataset_prefix=ns.prefix)


def add_customer_seed_columns(seeds: Path, **columns: str) -> None:
    """Make a copy of the shipped seeds' sales/customers also yield `columns` (name -> SQL expression),
    as a migration's author changes the seed together with the migration that adds those columns."""
    customers = seeds / "sales" / "customers.sql"
    text = customers.read_text()
    old = "    ['US', 'GB', 'FR', 'DE', 'JP', 'BR', 'IN', 'CA'][offset(mod(customer_id - 1, 8))] as country\n"
    assert text.count(old) == 1, customers
    added = ",\n".join(f"    {sql} as {name}" for name, sql in columns.items())
    customers.write_text(text.replace(old, old.replace(" as country\n", " as country,\n") + added + "\n"))


def add_seed_columns(seeds: Path, table: str, **columns: str) -> None:
    """Make the seed of `table` (`dataset/table`) in a copy of the seeds also yield `columns` (name ->
    SQL expression over the seed's own columns), as a migration adding them is released."""
    path = seeds / f"{table}.sql"
    added = ", ".join(f"{sql} as {name}" for name, sql in columns.items())
    path.write_text(f"select seed.*, {added}\nfrom (\n{path.read_text()}\n) as seed\n")
