"""Time travel on prod: each dataset's own window, the tables that existed at T, and their schema at T.

How far back `FOR SYSTEM_TIME AS OF` can read is a property of each dataset: its
`max_time_travel_hours`, a multiple of 24 from 48 to 168, and 168 when it is not set
(https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window). envsync reads
it from BigQuery for every prod dataset it reads as of T; `prod.time_travel_hours` in the config may
only narrow it, never widen it. A read as of an instant before that window, or before the table was
created, fails ("Invalid snapshot time ... Cannot read before ...",
https://cloud.google.com/bigquery/docs/access-historical-data), so callers also compare T with each
table's creation time.

The schema of a table as of T is the result schema of a dry run of `SELECT * ... FOR SYSTEM_TIME AS
OF T`: FOR SYSTEM_TIME AS OF "references the version of the table that was current at that
timestamp" (access-historical-data), and a dry run returns the schema of its results without reading
or billing anything (JobStatistics2.schema: "Present only for successful dry run of non-legacy SQL
queries").
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envsync.bigquery.discovery import TYPE_ALIASES
from envsync.core.guard import TableRef, to_query_parameters
from envsync.core.sqltemplates import render

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.config import EnvsyncConfig

log = logging.getLogger(__name__)

DOC = "https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window"
DEFAULT_HOURS = 168  # BigQuery's window of a dataset that sets no max_time_travel_hours


@dataclass(frozen=True)
class TimeTravelWindow:
    """The time-travel window envsync uses for one prod dataset, and where its length came from."""

    dataset: str
    hours: int
    source: str

    def describe(self) -> str:
        return f"the {self.hours} h time-travel window of prod dataset {self.dataset!r} ({self.source})"


def effective_window(dataset: str, dataset_hours: int | None, config_hours: int | None) -> TimeTravelWindow:
    """min(the dataset's own window, the config's narrowing); pure."""
    own = dataset_hours or DEFAULT_HOURS
    own_source = (
        "its max_time_travel_hours in BigQuery"
        if dataset_hours
        else f"BigQuery's default {DEFAULT_HOURS} h: the dataset sets no max_time_travel_hours"
    )
    if config_hours is not None and config_hours < own:
        return TimeTravelWindow(
            dataset,
            config_hours,
            f"prod.time_travel_hours in the config, narrower than the dataset's own {own} h ({own_source})",
        )
    return TimeTravelWindow(dataset, own, own_source)


def dataset_hours(client: bigquery.Client, project: str, dataset: str) -> int | None:
    """The dataset's max_time_travel_hours as BigQuery reports it (None when unset)."""
    from google.api_core.exceptions import NotFound

    from envsync.bigquery.discovery import DiscoveryError

    try:
        value = client.get_dataset(f"{project}.{dataset}").max_time_travel_hours
    except NotFound:
        raise DiscoveryError(
            f"prod dataset {dataset!r} (prod.datasets in the config) does not exist in project {project!r}"
        ) from None
    return int(value) if value not in (None, "") else None


def prod_windows(
    config: EnvsyncConfig, client: bigquery.Client, datasets: list[str], project: str | None = None
) -> dict[str, TimeTravelWindow]:
    """The effective window of each dataset of `project` (prod's project by default; staging's for
    staging's datasets), one datasets.get each."""
    windows = {}
    for dataset in datasets:
        window = effective_window(
            dataset, dataset_hours(client, project or config.prod_project, dataset), config.prod.time_travel_hours
        )
        log.info("time travel on %s: %d h (%s)", dataset, window.hours, window.source)
        windows[dataset] = window
    return windows


def restore_window_hours(
    config: EnvsyncConfig, client: bigquery.Client, dataset: str, project: str | None = None
) -> int:
    """How recent T must be for a restore of `dataset` (of `project`, prod's by default) to read it by
    time travel: the dataset's effective window, narrowed further by backups.restore_time_travel_hours
    (0: never)."""
    window = prod_windows(config, client, [dataset], project)[dataset]
    return min(window.hours, config.restore_time_travel_hours())


def creation_times(client: bigquery.Client, project: str, dataset: str) -> dict[str, dt.datetime | None]:
    """When each table and view of `project.dataset` was created (one list call)."""
    return {item.table_id: item.created for item in client.list_tables(f"{project}.{dataset}")}


def created_after(created: dt.datetime | None, cut: dt.datetime) -> bool:
    """Did the table come into existence after T (so that reading it as of T fails)?"""
    return created is not None and created > cut


def schema_as_of(
    client: bigquery.Client, source: TableRef, cut: dt.datetime, *, keep_all: str, location: str
) -> list[dict[str, Any]]:
    """The columns of prod table `source` as of T (API representation), from a dry run (free)."""
    from google.cloud import bigquery

    sql = render("common/schema_as_of", source=source.sql, keep_all=keep_all)
    config = bigquery.QueryJobConfig(
        dry_run=True, use_legacy_sql=False, query_parameters=to_query_parameters({"cut": cut})
    )
    job = client.query(sql, job_config=config, location=location, job_retry=None)
    return [field.to_api_repr() for field in job.schema or []]


def _type(field: dict[str, Any]) -> str:
    kind = str(field.get("type", "")).upper()
    return TYPE_ALIASES.get(kind, kind)


def merge_schema(as_of: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's schema as of T: the columns (names, order, types) of the dry run `as_of`, each with
    the mode and details of the same column in the table's `current` schema where it has the same type.

    A query's result schema need not keep a column's REQUIRED mode, so the mode is taken from the table
    where the column still exists; nested fields are merged the same way.
    """
    by_name = {f["name"].lower(): f for f in current}
    merged = []
    for field in as_of:
        now = by_name.get(field["name"].lower())
        if now is None or _type(now) != _type(field):
            merged.append(field)
            continue
        out = {**now, "name": field["name"]}
        if field.get("fields") or now.get("fields"):
            out["fields"] = merge_schema(field.get("fields") or [], now.get("fields") or [])
        merged.append(out)
    return merged


def schema_changes(as_of: list[dict[str, Any]], current: list[dict[str, Any]]) -> str:
    """'' or a short note of the top-level columns added and dropped since T."""
    then = {f["name"].lower() for f in as_of}
    now = {f["name"].lower() for f in current}
    parts = []
    if now - then:
        parts.append(f"columns added since T: {sorted(now - then)}")
    if then - now:
        parts.append(f"columns dropped since T: {sorted(then - now)}")
    return "; ".join(parts)


def schemas_as_of(
    client: bigquery.Client,
    refs: list[TableRef],
    cut: dt.datetime,
    *,
    keep_all: dict[TableRef, str],
    location: str,
    max_workers: int = 8,
) -> dict[TableRef, list[dict[str, Any]]]:
    """`schema_as_of` of several tables, a few dry runs at a time."""
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        found = pool.map(
            lambda ref: schema_as_of(client, ref, cut, keep_all=keep_all.get(ref, "true"), location=location), refs
        )
        return dict(zip(refs, found, strict=False))
