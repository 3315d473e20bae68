"""Jobs that stay under BigQuery's 4,000 partitions per job, and derived tables that keep every column
option, on the faithful emulator.

https://cloud.google.com/bigquery/quotas#partitioned_tables: "Each job operation (query or load) can
affect up to 4,000 partitions." An HOUR-partitioned table over a year (8,758 partitions) is synced to
dev with the default config (the DELETE trim of the clone would touch 4,344 partitions), with CTAS
(a window of two quarters: 4,414 partitions) and sampled into qa by a prod sample of every row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from testkit import UTC, clear_manifests

pytestmark = [pytest.mark.integration, pytest.mark.gcp_incompatible]

PROJECT = "envsync-partitions"
A = dt.datetime(2026, 12, 31, 22, 0, tzinfo=UTC)  # window [2026-07-01, 2026-12-31 22:00): 4,414 hours
WINDOW_START = dt.datetime(2026, 7, 1, tzinfo=UTC)
FIRST = dt.datetime(2026, 1, 1, tzinfo=UTC)  # one row an hour from FIRST to LAST
LAST = dt.datetime(2026, 12, 31, 21, 0, tzinfo=UTC)
TAG = "projects/envsync-partitions/locations/us/taxonomies/1/policyTags/2"


def _client() -> Any:
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def _rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    config = bigquery.QueryJobConfig(query_parameters=to_query_parameters(params))
    return [dict(r) for r in _client().query(sql, job_config=config, job_retry=None).result()]


def _create_prod() -> None:
    from google.cloud import bigquery
    from google.cloud.bigquery import SchemaField as F

    client = _client()
    for name in ("core", "dev_core", "qa_core", "staging_core"):
        client.delete_dataset(f"{PROJECT}.{name}", delete_contents=True, not_found_ok=True)
    ds = bigquery.Dataset(f"{PROJECT}.core")
    ds.location = "US"
    client.create_dataset(ds)
    _rows(
        f"create table `{PROJECT}.core.hourly` (id int64 not null, ts timestamp not null) "
        "partition by timestamp_trunc(ts, hour)"
    )
    hours = int((LAST - FIRST).total_seconds() // 3600) + 1
    for lo in range(0, hours, 3000):  # each insert stays under 4,000 partitions itself
        _rows(
            f"insert into `{PROJECT}.core.hourly` (id, ts) "
            "select id, timestamp_add(@first, interval id hour) from unnest(generate_array(@lo, @hi)) as id",
            first=FIRST,
            lo=lo,
            hi=min(hours, lo + 3000) - 1,
        )
    table = bigquery.Table(
        f"{PROJECT}.core.options",
        schema=[
            F("id", "INTEGER", "REQUIRED", description="the id"),
            F("email", "STRING", description="contact's e-mail", policy_tags=bigquery.PolicyTagList([TAG])),
            F("status", "STRING", default_value_expression="'new'"),
            F("stay", "RANGE", range_element_type="DATE"),
            F("created", "DATE"),
            F.from_api_repr({"name": "nick", "type": "STRING", "collation": "und:ci"}),
        ],
    )
    client.create_table(table)
    _rows(
        f"insert into `{PROJECT}.core.options` (id, email, status, stay, created, nick) "
        "select id, concat('u', cast(id as string), '@x'), 'old', range(date '2026-08-01', date '2026-08-03'), "
        "date_add(date '2026-05-01', interval id day), 'N' from unnest(generate_array(0, 199)) as id"
    )
    _rows(f"create table `{PROJECT}.core.ingested` (id int64, label string) partition by _PARTITIONDATE")
    _rows(
        f"insert into `{PROJECT}.core.ingested` (_PARTITIONTIME, id, label) "
        "select timestamp(date_add(date '2026-05-01', interval id day)), id, 'x' "
        "from unnest(generate_array(0, 199)) as id"
    )


@pytest.fixture
def prod(emulators: Any) -> None:
    _create_prod()
    clear_manifests()


def _config(config_file: Callable[..., Any], **tables: Any) -> Any:
    return config_file(project=PROJECT, prod__datasets=["core"], tables=tables)


def _states(dag_run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def _hours(lo: dt.datetime, hi: dt.datetime) -> int:
    return int((hi - lo).total_seconds() // 3600)


def test_an_hourly_table_of_a_year_syncs_to_dev_with_the_default_config(
    prod: None, run_dag: Any, config_file: Callable[..., Any]
) -> None:
    """The clone's DELETE trim would modify 4,344 partitions: it runs as two DELETE jobs."""
    dag_run = run_dag("prod_to_dev_sync", A, {"tables": ["hourly"]}, config_path=_config(config_file))
    assert str(dag_run.state) == "success", _states(dag_run)
    got = _rows(f"select count(*) as n, min(ts) as lo, max(ts) as hi from `{PROJECT}.dev_core.hourly`")[0]
    assert (got["n"], got["lo"], got["hi"]) == (_hours(WINDOW_START, LAST) + 1, WINDOW_START, LAST)
    assert _client().get_table(f"{PROJECT}.dev_core.hourly").time_partitioning.type_ == "HOUR"


def test_the_plan_counts_the_split_jobs(prod: None, config_file: Callable[..., Any]) -> None:
    from envsync.core.config import load_config
    from envsync.core.window import quarter_window
    from envsync.sync.run import build_plans

    config = load_config(
        _config(config_file, **{"core.options": {"strategy": "ctas_window", "date_column": "created"}})
    )
    [plan] = build_plans(config, _client(), datasets=["core"], tables=[], window=quarter_window(A, 2))
    actions = {a.table: a for a in plan.actions}
    assert actions["hourly"].action == "clone_window"
    assert actions["hourly"].est_jobs == 6  # clone, list partitions, 2 DELETEs, verify, swap
    assert actions["options"].est_jobs == 3  # one CTAS, verify, swap


def test_a_window_of_more_than_4000_partitions_is_copied_by_create_and_inserts(
    prod: None, run_dag: Any, config_file: Callable[..., Any]
) -> None:
    config = _config(config_file, **{"core.hourly": {"strategy": "ctas_window"}})
    dag_run = run_dag("prod_to_dev_sync", A, {"tables": ["hourly"]}, config_path=config)
    assert str(dag_run.state) == "success", _states(dag_run)
    got = _rows(f"select count(*) as n, min(ts) as lo, max(ts) as hi from `{PROJECT}.dev_core.hourly`")[0]
    assert (got["n"], got["lo"], got["hi"]) == (_hours(WINDOW_START, LAST) + 1, WINDOW_START, LAST)
    table = _client().get_table(f"{PROJECT}.dev_core.hourly")
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("HOUR", "ts")


def test_a_prod_sample_of_8758_partitions_is_inserted_in_chunks(
    prod: None, run_dag: Any, config_file: Callable[..., Any]
) -> None:
    config = _config(config_file, **{"core.hourly": {"source": "prod_sample", "sample": {"key": "id", "modulo": 1}}})
    dag_run = run_dag("reseed_environments", None, {"environments": ["qa"]}, config_path=config)
    assert str(dag_run.state) == "success", _states(dag_run)
    assert _rows(f"select count(*) as n from `{PROJECT}.qa_core.hourly`") == [{"n": _hours(FIRST, LAST) + 1}]


def _column_options(table: str) -> list[dict[str, Any]]:
    keep = (
        "name",
        "type",
        "mode",
        "description",
        "policyTags",
        "defaultValueExpression",
        "rangeElementType",
        "collation",
    )
    return [{k: f.get(k) for k in keep if f.get(k)} for f in _client().get_table(table)._properties["schema"]["fields"]]


def test_ctas_and_reseeded_tables_keep_column_options_and_ingestion_time_partitions(
    prod: None, run_dag: Any, config_file: Callable[..., Any]
) -> None:
    config = _config(
        config_file,
        **{
            "core.options": {"strategy": "ctas_window", "date_column": "created"},
            "core.ingested": {"strategy": "ctas_window"},
        },
    )
    dag_run = run_dag("prod_to_dev_sync", A, {"tables": ["options", "ingested"]}, config_path=config)
    assert str(dag_run.state) == "success", _states(dag_run)
    prod_options = _column_options(f"{PROJECT}.core.options")
    assert prod_options[1]["policyTags"] == {"names": [TAG]} and prod_options[5]["collation"] == "und:ci"
    assert _column_options(f"{PROJECT}.dev_core.options") == prod_options
    assert _rows(f"select count(*) as n from `{PROJECT}.dev_core.options`") == [{"n": 200 - 61}]  # from 2026-07-01
    ingested = _client().get_table(f"{PROJECT}.dev_core.ingested")
    assert (ingested.time_partitioning.type_, ingested.time_partitioning.field) == ("DAY", None)
    assert _rows(f"select min(_PARTITIONTIME) as lo, count(*) as n from `{PROJECT}.dev_core.ingested`") == [
        {"lo": WINDOW_START, "n": 200 - 61}
    ]

    reseed = run_dag(
        "reseed_environments",
        None,
        {"environments": ["qa"]},
        config_path=_config(
            config_file, **{"core.ingested": {"source": "prod_sample", "sample": {"key": "id", "modulo": 1}}}
        ),
    )
    assert str(reseed.state) == "success", _states(reseed)
    assert _column_options(f"{PROJECT}.qa_core.options") == prod_options
    assert _rows(
        f"select count(*) as n, countif(_PARTITIONTIME = timestamp '2026-05-01') as first "
        f"from `{PROJECT}.qa_core.ingested`"
    ) == [{"n": 200, "first": 1}]


def test_an_export_of_more_than_4000_partitions_restores_in_chunks(emulators: Any, run_dag: Any, tmp_path: Any) -> None:
    """The export's load job cannot write 4,500 partitions into the stage: it loads an unpartitioned
    scratch table by one wildcard URI, then copies it in two INSERT jobs."""
    import time

    from backupkit import client, ds, fq, make_prod, query, write_config

    make_prod()
    query(
        f"create table `{fq('shop')}.hourly` (id int64 not null, ts timestamp not null) "
        "partition by timestamp_trunc(ts, hour)"
    )
    for lo in (0, 3000):
        query(
            f"insert into `{fq('shop')}.hourly` (id, ts) select id, timestamp_add(@first, interval id hour) "
            "from unnest(generate_array(@lo, @hi)) as id",
            first=FIRST,
            lo=lo,
            hi=min(4500, lo + 3000) - 1,
        )
    config = write_config(tmp_path / "envsync.yaml", restore_time_travel_hours=0, export={"enabled": True})
    time.sleep(1.1)
    hour = dt.datetime.now(UTC).replace(microsecond=0)
    ladder = run_dag("backup_ladder", hour, {}, config_path=config)
    assert str(ladder.state) == "success", _states(ladder)
    for table in list(client().list_tables(fq("backup_shop"))):
        client().delete_table(table.reference)  # only the export remains

    restore = run_dag(
        "restore",
        None,
        {"dataset": ds("shop"), "tables": ["hourly"], "point_in_time": hour.isoformat()},
        config_path=config,
    )
    assert str(restore.state) == "success", _states(restore)
    got = query(f"select count(*) as n, min(ts) as lo, max(ts) as hi from `{fq('drill_shop')}.hourly`")[0]
    assert (got["n"], got["lo"], got["hi"]) == (4500, FIRST, FIRST + dt.timedelta(hours=4499))
    drilled = client().get_table(fq("drill_shop.hourly"))
    assert (drilled.time_partitioning.type_, drilled.time_partitioning.field) == ("HOUR", "ts")
    assert not [t for t in client().list_tables(fq("drill_shop")) if t.table_id != "hourly"]  # no scratch left
