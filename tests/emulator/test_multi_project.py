"""One emulator serving several GCP projects, as BigQuery serves an estate split by project.

Docs followed:
- https://cloud.google.com/bigquery/docs/resource-hierarchy : a job "doesn't have to run in the same
  project that contains the data"; it is billed to the project that runs it (``jobs.insert`` under
  ``projects/<id>/jobs``, https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/insert).
- https://cloud.google.com/bigquery/docs/table-clones-intro and table-snapshots-intro: clones and
  snapshots across projects of one region (and organization) work; the target stays in the base
  table's region (the fidelity layer refuses another location: emulators/bqfidelity/metadata.py).
- https://cloud.google.com/bigquery/docs/managing-tables#copy-table : copy jobs across projects.
- https://cloud.google.com/bigquery/docs/information-schema-intro : ``INFORMATION_SCHEMA`` qualified by
  a project's dataset or region answers for that project only.
- https://cloud.google.com/bigquery/docs/views-intro : a view may read tables of another project.
local-bigquery keeps projects as namespaces already; these tests pin that down, since envsync's split
layout (README "Environments in their own projects") relies on every one of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SOURCE = "fid-mp-prod"
TARGET = "fid-mp-dev"


def _client(project: str) -> Any:
    from envsync.core.clients import bigquery_client

    return bigquery_client(project, "US")


@pytest.fixture
def estate(emulators: Any) -> Iterator[dict[str, Any]]:
    """A table in SOURCE (project fid-mp-prod) and empty US and EU datasets in TARGET (fid-mp-dev)."""
    from google.cloud import bigquery

    tag = uuid.uuid4().hex[:6]
    prod, dev = _client(SOURCE), _client(TARGET)
    names = {"src": f"src_{tag}", "us": f"us_{tag}", "eu": f"eu_{tag}"}
    prod.create_dataset(bigquery.Dataset(f"{SOURCE}.{names['src']}"))
    for key, location in (("us", "US"), ("eu", "EU")):
        ds = bigquery.Dataset(f"{TARGET}.{names[key]}")
        ds.location = location
        dev.create_dataset(ds)
    prod.query(
        f"CREATE TABLE `{SOURCE}.{names['src']}.t` PARTITION BY d AS "
        "SELECT x, DATE_ADD(DATE '2026-01-01', INTERVAL x DAY) AS d FROM UNNEST(GENERATE_ARRAY(1, 5)) AS x"
    ).result()
    yield {"prod": prod, "dev": dev, **names}
    prod.delete_dataset(f"{SOURCE}.{names['src']}", delete_contents=True, not_found_ok=True)
    for key in ("us", "eu"):
        dev.delete_dataset(f"{TARGET}.{names[key]}", delete_contents=True, not_found_ok=True)


def _rows(client: Any, sql: str) -> list[tuple]:
    return [tuple(row.values()) for row in client.query(sql).result()]


def test_a_job_runs_in_the_project_of_its_url(estate: dict[str, Any]) -> None:
    dev = estate["dev"]
    job = dev.query(f"SELECT COUNT(*) FROM `{SOURCE}.{estate['src']}.t`")
    assert [tuple(r.values()) for r in job.result()] == [(5,)]
    assert job.project == TARGET  # billed to the project that ran it, not the data's
    assert job.job_id in {j.job_id for j in dev.list_jobs(project=TARGET)}
    assert job.job_id not in {j.job_id for j in estate["prod"].list_jobs(project=SOURCE)}


def test_clone_and_snapshot_across_projects_keep_data_and_partitioning(estate: dict[str, Any]) -> None:
    dev, src, us = estate["dev"], estate["src"], estate["us"]
    dev.query(f"CREATE TABLE `{TARGET}.{us}.c` CLONE `{SOURCE}.{src}.t`").result()
    dev.query(f"CREATE SNAPSHOT TABLE `{TARGET}.{us}.s` CLONE `{SOURCE}.{src}.t`").result()
    assert _rows(dev, f"SELECT SUM(x) FROM `{TARGET}.{us}.c`") == [(15,)]
    assert _rows(dev, f"SELECT SUM(x) FROM `{TARGET}.{us}.s`") == [(15,)]
    clone = dev.get_table(f"{TARGET}.{us}.c")
    assert clone.time_partitioning is not None and clone.time_partitioning.field == "d"
    assert dev.get_table(f"{TARGET}.{us}.s").table_type == "SNAPSHOT"


@pytest.mark.parametrize("statement", ["CREATE TABLE {t} CLONE {s}", "CREATE SNAPSHOT TABLE {t} CLONE {s}"])
def test_clone_or_snapshot_into_another_region_is_refused(estate: dict[str, Any], statement: str) -> None:
    from google.api_core.exceptions import BadRequest

    dev = estate["dev"]
    target, source = f"`{TARGET}.{estate['eu']}.c`", f"`{SOURCE}.{estate['src']}.t`"
    with pytest.raises(BadRequest, match="Cannot read and write in different locations: source: US, destination: EU"):
        dev.query(statement.format(t=target, s=source)).result()
    assert list(dev.list_tables(f"{TARGET}.{estate['eu']}")) == []


def test_copy_job_across_projects(estate: dict[str, Any]) -> None:
    dev = estate["dev"]
    job = dev.copy_table(f"{SOURCE}.{estate['src']}.t", f"{TARGET}.{estate['us']}.copied")
    job.result()
    assert job.project == TARGET
    assert dev.get_table(f"{TARGET}.{estate['us']}.copied").num_rows == 5


def test_information_schema_answers_per_project(estate: dict[str, Any]) -> None:
    dev, us = estate["dev"], estate["us"]
    dev.query(f"CREATE TABLE `{TARGET}.{us}.only_dev` AS SELECT 1 AS x").result()
    in_dev = {r[0] for r in _rows(dev, f"SELECT table_name FROM `{TARGET}.{us}.INFORMATION_SCHEMA.TABLES`")}
    assert in_dev == {"only_dev"}
    regional = _rows(dev, f"SELECT table_schema, table_name FROM `{TARGET}`.`region-us`.INFORMATION_SCHEMA.TABLES")
    assert (us, "only_dev") in regional
    assert all(schema != estate["src"] for schema, _ in regional)  # prod's tables are not dev's
    partitions = _rows(
        dev, f"SELECT COUNT(*) FROM `{SOURCE}.{estate['src']}.INFORMATION_SCHEMA.PARTITIONS` WHERE table_name = 't'"
    )
    assert partitions == [(5,)]  # another project's metadata, read by a job of this one


def test_view_reading_another_project(estate: dict[str, Any]) -> None:
    dev, us = estate["dev"], estate["us"]
    dev.query(f"CREATE VIEW `{TARGET}.{us}.v` AS SELECT x FROM `{SOURCE}.{estate['src']}.t` WHERE x > 3").result()
    assert sorted(_rows(dev, f"SELECT x FROM `{TARGET}.{us}.v`")) == [(4,), (5,)]
