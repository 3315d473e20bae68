"""Read prod (and environment) metadata through the BigQuery API: datasets, tables, views, schemas.

Discovery only reads. Its results are plain, JSON-serialisable dataclasses so the pure planner can
be tested without BigQuery and the plan can be stored in the run's manifest.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import bigquery

log = logging.getLogger(__name__)

# BigQuery's legacy names of column types (the API's schema) -> the standard SQL names
TYPE_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}


class DiscoveryError(RuntimeError):
    """Prod is not what the config says (for example, a configured dataset does not exist)."""


@dataclass
class TableInfo:
    dataset: str
    table: str
    kind: str  # TABLE, VIEW, MATERIALIZED_VIEW, SNAPSHOT, EXTERNAL, CLONE
    schema: list[dict[str, Any]] = field(default_factory=list)  # BigQuery API representation
    partitioning: dict[str, Any] | None = None  # {"type": DAY|HOUR|MONTH|YEAR, "field": col or None}
    range_partitioning: dict[str, Any] | None = None
    clustering: list[str] | None = None
    description: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    num_rows: int = 0
    num_bytes: int = 0
    view_query: str | None = None
    require_partition_filter: bool = False
    row_access_policies: list[str] = field(default_factory=list)  # ids of prod's row-level access policies

    @classmethod
    def from_api(cls, table: bigquery.Table) -> TableInfo:
        tp = table.time_partitioning
        rp = table.range_partitioning
        return cls(
            dataset=table.dataset_id,
            table=table.table_id,
            kind=(table.table_type or "TABLE").upper(),
            schema=[f.to_api_repr() for f in table.schema],
            partitioning={"type": tp.type_, "field": tp.field} if tp else None,
            range_partitioning=(
                {"field": rp.field, "start": rp.range_.start, "end": rp.range_.end, "interval": rp.range_.interval}
                if rp
                else None
            ),
            clustering=list(table.clustering_fields) if table.clustering_fields else None,
            description=table.description,
            labels=dict(table.labels or {}),
            num_rows=int(table.num_rows or 0),
            num_bytes=int(table.num_bytes or 0),
            view_query=table.view_query,
            require_partition_filter=bool(table.require_partition_filter),
        )

    def column(self, name: str) -> dict[str, Any] | None:
        for col in self.schema:
            if col["name"].lower() == name.lower():
                return col
        return None


@dataclass
class DatasetInfo:
    dataset: str
    location: str
    description: str | None
    labels: dict[str, str]
    tables: list[TableInfo]
    kms_key_name: str | None = None  # the dataset's default CMEK key, if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        tables = [TableInfo(**t) for t in data["tables"]]
        return cls(**{**data, "tables": tables})


def list_row_access_policies(client: bigquery.Client, project: str, dataset: str, table: str) -> list[str]:
    """Ids of the row-level access policies of one table (rowAccessPolicies.list, all pages).

    https://cloud.google.com/bigquery/docs/reference/rest/v2/rowAccessPolicies/list ; the python client
    has no method for it, so the request goes through the client's connection (a read)."""
    path = f"/projects/{project}/datasets/{dataset}/tables/{table}/rowAccessPolicies"
    ids: list[str] = []
    token: str | None = None
    while True:
        response = client._connection.api_request(
            method="GET", path=path, query_params={"pageToken": token} if token else None
        )
        ids += [p["rowAccessPolicyReference"]["policyId"] for p in response.get("rowAccessPolicies") or []]
        token = response.get("nextPageToken")
        if not token:
            return sorted(ids)


def discover_dataset(
    client: bigquery.Client,
    project: str,
    dataset: str,
    *,
    max_workers: int = 8,
    row_access_policies: bool = False,
) -> DatasetInfo:
    """Describe every table and view of `project.dataset` (one list call, then one get per table and,
    with `row_access_policies`, one rowAccessPolicies.list per base table, in parallel)."""
    from google.api_core.exceptions import NotFound

    try:
        ds = client.get_dataset(f"{project}.{dataset}")
    except NotFound:
        raise DiscoveryError(
            f"prod dataset {dataset!r} (prod.datasets in the config) does not exist in project {project!r}"
        ) from None
    items = list(client.list_tables(ds.reference))

    def describe(item: Any) -> TableInfo:
        info = TableInfo.from_api(client.get_table(item.reference))
        if row_access_policies and info.kind in ("TABLE", "CLONE"):
            info.row_access_policies = list_row_access_policies(client, project, dataset, info.table)
        return info

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        infos = sorted(pool.map(describe, items), key=lambda t: t.table)
    log.info("discovered %s.%s: %d tables/views", project, dataset, len(infos))
    return DatasetInfo(
        dataset=dataset,
        location=ds.location,
        description=ds.description,
        labels=dict(ds.labels or {}),
        tables=infos,
        kms_key_name=getattr(ds.default_encryption_configuration, "kms_key_name", None) or None,
    )


def base_tables(client: bigquery.Client, project: str, dataset: str) -> dict[str, Any]:
    """The base tables (no views, snapshots, ...) of prod `project.dataset` and their creation times,
    from one list call."""
    from google.api_core.exceptions import NotFound

    try:
        items = list(client.list_tables(f"{project}.{dataset}"))
    except NotFound:
        raise DiscoveryError(
            f"prod dataset {dataset!r} (prod.datasets in the config) does not exist in project {project!r}"
        ) from None
    return {i.table_id: i.created for i in items if (i.table_type or "TABLE").upper() == "TABLE"}


def list_existing(client: bigquery.Client, project: str, dataset: str) -> list[str] | None:
    """Names of the tables and views in an environment dataset, or None when it does not exist."""
    from google.api_core.exceptions import NotFound

    try:
        return sorted(item.table_id for item in client.list_tables(f"{project}.{dataset}"))
    except NotFound:
        return None
