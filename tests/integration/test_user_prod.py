"""A new user's prod, synced to dev with the default config on the faithful emulator.

The prod has what real prods have and the demo does not: REQUIRED columns, DATE and TIMESTAMP
partitioning, `require_partition_filter`, nested and repeated fields, an empty partitioned table,
an integer-range partitioned table and views that join across datasets. It lives in a project of its
own so that it never touches the shared test prod.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from testkit import UTC, clear_manifests

pytestmark = [pytest.mark.integration, pytest.mark.gcp_incompatible]

USER_PROJECT = "envsync-userprod"
A = dt.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # window [2026-07-01, 2026-11-28 02:00)
WINDOW_START = dt.date(2026, 7, 1)
FIRST = dt.date(2026, 3, 1)  # events from FIRST to LAST_EVENT, one a day
LAST_EVENT = dt.date(2026, 11, 27)


def _client() -> Any:
    from envsync.core.clients import bigquery_client

    return bigquery_client(USER_PROJECT, "US")


def _rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    config = bigquery.QueryJobConfig(query_parameters=to_query_parameters(params))
    return [dict(r) for r in _client().query(sql, job_config=config, job_retry=None).result()]


def _create_user_prod() -> None:
    from google.cloud import bigquery
    from google.cloud.bigquery import SchemaField as F

    client = _client()
    for name in ("core", "web", "dev_core", "dev_web"):
        client.delete_dataset(f"{USER_PROJECT}.{name}", delete_contents=True, not_found_ok=True)
    for name in ("core", "web"):
        ds = bigquery.Dataset(f"{USER_PROJECT}.{name}")
        ds.location = "US"
        client.create_dataset(ds)

    def table(name: str, schema: list[Any], **props: Any) -> None:
        t = bigquery.Table(f"{USER_PROJECT}.core.{name}", schema=schema)
        for key, value in props.items():
            setattr(t, key, value)
        client.create_table(t)

    item = F("items", "RECORD", "REPEATED", fields=[F("sku", "STRING", "REQUIRED"), F("qty", "INTEGER")])
    table(
        "events",
        [
            F("event_id", "INTEGER", "REQUIRED"),
            F("account_id", "INTEGER", "REQUIRED"),
            F("event_date", "DATE", "REQUIRED", description="day of the event"),
            F("device", "RECORD", fields=[F("os", "STRING", "REQUIRED"), F("version", "STRING")]),
            item,
            F("tags", "STRING", "REPEATED"),
        ],
        time_partitioning=bigquery.TimePartitioning(field="event_date"),
        clustering_fields=["account_id"],
        require_partition_filter=True,
        description="one event a day",
    )
    table(
        "pageviews",
        [F("view_id", "INTEGER", "REQUIRED"), F("ts", "TIMESTAMP", "REQUIRED"), F("url", "STRING")],
        time_partitioning=bigquery.TimePartitioning(field="ts", type_="DAY"),
        require_partition_filter=True,
    )
    table(
        "refunds",
        [F("refund_id", "INTEGER", "REQUIRED"), F("refund_date", "DATE")],
        time_partitioning=bigquery.TimePartitioning(field="refund_date"),
    )
    table(
        "accounts",
        [
            F("account_id", "INTEGER", "REQUIRED"),
            F("name", "STRING", "REQUIRED"),
            F("address", "RECORD", fields=[F("city", "STRING"), F("zip", "STRING")]),
        ],
    )
    table(
        "buckets",
        [F("bucket_id", "INTEGER", "REQUIRED"), F("label", "STRING")],
        range_partitioning=bigquery.RangePartitioning(
            field="bucket_id", range_=bigquery.PartitionRange(start=0, end=100, interval=10)
        ),
        require_partition_filter=True,
    )

    _rows(
        f"""insert into `{USER_PROJECT}.core.events` (event_id, account_id, event_date, device, items, tags)
        select id, mod(id, 5), d, struct(if(mod(id, 2) = 0, 'linux', 'mac') as os, cast(null as string) as version),
               [struct(concat('sku-', cast(id as string)) as sku, id as qty)], ['a', 'b']
        from unnest(generate_date_array(@first, @last)) as d with offset as id""",
        first=FIRST,
        last=LAST_EVENT,
    )
    _rows(f"""insert into `{USER_PROJECT}.core.pageviews` (view_id, ts, url)
        select id, timestamp_add(timestamp '2026-05-01 12:00:00+00', interval 36 * id hour), 'https://x/'
        from unnest(generate_array(0, 139)) as id""")
    _rows(f"""insert into `{USER_PROJECT}.core.accounts` (account_id, name, address)
        select id, concat('account-', cast(id as string)), struct('Utrecht' as city, '3511' as zip)
        from unnest(generate_array(0, 4)) as id""")
    _rows(f"""insert into `{USER_PROJECT}.core.buckets` (bucket_id, label)
        select id, cast(id as string) from unnest(generate_array(0, 95, 5)) as id""")
    _rows(f"""create view `{USER_PROJECT}.web.events_per_account` as
        select a.name, count(*) as events
        from `{USER_PROJECT}.core.events` as e
        join core.accounts as a using (account_id)
        where e.event_date >= '2000-01-01'
        group by a.name""")
    _rows(f"""create view `{USER_PROJECT}.web.cities` as
        select distinct address.city as city from `{USER_PROJECT}.core.accounts`""")


@pytest.fixture
def user_prod(emulators: Any, config_file: Callable[..., Any]) -> Any:
    _create_user_prod()
    clear_manifests()
    return config_file(project=USER_PROJECT, prod__datasets=["core", "web"], tables={})


def _layout(table: Any) -> dict[str, Any]:
    props = table._properties
    return {
        key: props.get(key)
        for key in ("schema", "timePartitioning", "rangePartitioning", "clustering", "requirePartitionFilter")
    }


def test_a_user_prod_syncs_with_the_default_config(user_prod: Any, run_dag: Any) -> None:
    dag_run = run_dag("prod_to_dev_sync", A, config_path=user_prod)
    states = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", states

    client = _client()
    for name in ("events", "pageviews", "refunds", "accounts", "buckets"):
        prod, dev = client.get_table(f"{USER_PROJECT}.core.{name}"), client.get_table(f"{USER_PROJECT}.dev_core.{name}")
        assert _layout(dev) == _layout(prod), name

    # windowed tables hold exactly prod's rows in [2026-07-01, A); the others all of prod's rows
    events = _rows(
        f"select min(event_date) as lo, max(event_date) as hi, count(*) as n "
        f"from `{USER_PROJECT}.dev_core.events` where event_date is null or event_date >= '2000-01-01'"
    )[0]
    assert (events["lo"], events["hi"], events["n"]) == (WINDOW_START, LAST_EVENT, (LAST_EVENT - WINDOW_START).days + 1)
    expected_views = _rows(
        f"select count(*) as n from `{USER_PROJECT}.core.pageviews` where ts >= timestamp '2026-07-01' and ts < @a", a=A
    )[0]["n"]
    got_views = _rows(
        f"select count(*) as n from `{USER_PROJECT}.dev_core.pageviews` "
        "where ts is null or ts >= timestamp '2000-01-01'"
    )[0]["n"]
    assert got_views == expected_views > 0
    assert client.get_table(f"{USER_PROJECT}.dev_core.refunds").num_rows == 0
    assert _rows(f"select count(*) as n from `{USER_PROJECT}.dev_core.buckets` where bucket_id >= 0")[0]["n"] == 20
    nested = _rows(
        f"select device.os, items[offset(0)].sku as sku, array_length(tags) as tags "
        f"from `{USER_PROJECT}.dev_core.events` where event_date = '2026-07-01'"
    )
    assert nested == [
        {
            "os": "linux" if (WINDOW_START - FIRST).days % 2 == 0 else "mac",
            "sku": f"sku-{(WINDOW_START - FIRST).days}",
            "tags": 2,
        }
    ]

    # the views read dev, across datasets, and resolve
    view = client.get_table(f"{USER_PROJECT}.dev_web.events_per_account")
    assert "dev_core" in view.view_query and "`core`" not in view.view_query.replace("dev_core", "")
    per_account = _rows(f"select sum(events) as n from `{USER_PROJECT}.dev_web.events_per_account`")[0]["n"]
    assert per_account == events["n"]
    assert _rows(f"select city from `{USER_PROJECT}.dev_web.cities`") == [{"city": "Utrecht"}]


def test_backup_and_restore_of_tables_that_require_a_partition_filter(
    user_prod: Any, run_dag: Any, config_file: Callable[..., Any]
) -> None:
    """Checksums of snapshots, of prod as of T and of the restored stage all read tables that require a
    partition filter (https://cloud.google.com/bigquery/docs/querying-partitioned-tables): each carries
    a keep-every-row filter on the partitioning column."""
    config = config_file(
        project=USER_PROJECT, prod__datasets=["core", "web"], tables={}, backups__restore_time_travel_hours=0
    )  # restore from the snapshot, not time travel
    client = _client()
    client.delete_dataset(f"{USER_PROJECT}.backup_core", delete_contents=True, not_found_ok=True)
    client.delete_dataset(f"{USER_PROJECT}.drill_core", delete_contents=True, not_found_ok=True)
    pin = run_dag("backup_ladder", None, {"reason": "before the migration", "expiry_days": 30}, config_path=config)
    assert str(pin.state) == "success", {ti.task_id: str(ti.state) for ti in pin.get_task_instances()}
    snaps = {t.table_id.split("__")[0] for t in client.list_tables(f"{USER_PROJECT}.backup_core")}
    assert {"events", "pageviews", "buckets", "accounts", "refunds"} <= snaps

    point = dt.datetime.now(UTC).replace(microsecond=0)  # after the pinned backup, not in the future
    restored = run_dag(
        "restore",
        None,
        {"dataset": "core", "tables": ["events", "buckets"], "point_in_time": point.isoformat()},
        config_path=config,
    )
    assert str(restored.state) == "success", {ti.task_id: str(ti.state) for ti in restored.get_task_instances()}
    checksum = (
        "select count(*) as n, coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as c "
        "from `{}` as t where {} is null or {} >= {}"
    )
    for table, column, low in (("events", "event_date", "'0001-01-01'"), ("buckets", "bucket_id", "-1000")):
        prod = _rows(checksum.format(f"{USER_PROJECT}.core.{table}", column, column, low))
        drill = _rows(checksum.format(f"{USER_PROJECT}.drill_core.{table}", column, column, low))
        assert drill == prod and prod[0]["n"] > 0, table
