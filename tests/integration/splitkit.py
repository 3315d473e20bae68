"""The split-projects layout of the integration tests (README "Environments in their own projects").

Prod lives in PROD_PROJECT (read only), dev in DEV_PROJECT with an empty prefix (``dev.sales``
mirrors ``prod.sales``) and its jobs billed to NONPROD_PROJECT, qa/staging/test/prodcopy and the audit
dataset in NONPROD_PROJECT with their prefixes, backups and drills in BACKUP_PROJECT. One emulator
serves every project (projects are namespaces of local-bigquery), as BigQuery serves one estate.

The kit gives the config (`split_config`), the test prod created in PROD_PROJECT with the same
tables as testkit's (`create_split_prod`), and the checks every split test makes:
`prod_fingerprints` (prod's project unchanged), `objects_in` (what a project holds),
`views_naming` (no derived view naming prod's project) and `refused_before_any_request`
(the guard refuses a write into prod's project or an unconfigured project without a request).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from testkit import FIRST_DAY, LAST_DAY, PROD_SQL, REPO_ROOT, SESSION_EDGES

PROD_PROJECT = "envsync-split-prod"
NONPROD_PROJECT = "envsync-split-nonprod"
DEV_PROJECT = "envsync-split-dev"
BACKUP_PROJECT = "envsync-split-backup"
SPLIT_BUCKET = "envsync-split-state"
PROJECTS = (PROD_PROJECT, NONPROD_PROJECT, DEV_PROJECT, BACKUP_PROJECT)
PROD_DATASETS = ("sales", "marketing")


def client(project: str) -> Any:
    from envsync.core.clients import bigquery_client

    return bigquery_client(project, "US")


def split_config_data(**changes: Any) -> dict[str, Any]:
    """config/envsync.yaml turned into the split layout; `changes` as in conftest's config_file
    (`a__b=value` sets a.b)."""
    data = yaml.safe_load((REPO_ROOT / "config" / "envsync.yaml").read_text())
    data["project"] = NONPROD_PROJECT
    data["prod"]["project"] = PROD_PROJECT
    envs = data.setdefault("environments", {})
    envs.setdefault("dev", {}).update(prefix="", project=DEV_PROJECT, jobs_project=NONPROD_PROJECT)
    for name in ("backup", "drill"):
        envs.setdefault(name, {}).update(project=BACKUP_PROJECT)
    data["state"] = {"bucket": SPLIT_BUCKET, "project": NONPROD_PROJECT}
    data.setdefault("audit", {})["project"] = NONPROD_PROJECT
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


def split_config(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "envsync-split.yaml"
    path.write_text(yaml.safe_dump(split_config_data(**changes)))
    return path


def create_split_prod() -> None:
    """testkit's test prod (sales: 4 tables; marketing: 2 tables and a view naming prod's project)
    in PROD_PROJECT, and the split layout's state bucket."""
    from google.cloud import bigquery

    from envsync.core.clients import storage_client
    from envsync.core.guard import to_query_parameters

    bq = client(PROD_PROJECT)
    for name in PROD_DATASETS:
        dataset = bigquery.Dataset(f"{PROD_PROJECT}.{name}")
        dataset.location = "US"
        dataset.labels = {"team": name}
        bq.create_dataset(dataset, exists_ok=True)
    edges = {f"e{i}": e for i, e in enumerate(SESSION_EDGES)}
    params = to_query_parameters({"first_day": FIRST_DAY, "last_day": LAST_DAY})
    for sql in PROD_SQL:
        job = bq.query(sql.format(p=PROD_PROJECT, **edges), job_config=bigquery.QueryJobConfig(query_parameters=params))
        job.result()
    storage = storage_client(NONPROD_PROJECT)
    if storage.lookup_bucket(SPLIT_BUCKET) is None:
        storage.create_bucket(SPLIT_BUCKET)


def drop_derived() -> None:
    """Every dataset of the derived projects (not prod's), and the state bucket's objects."""
    from envsync.core.clients import storage_client

    for project in (NONPROD_PROJECT, DEV_PROJECT, BACKUP_PROJECT):
        bq = client(project)
        for item in bq.list_datasets(project=project):
            bq.delete_dataset(f"{project}.{item.dataset_id}", delete_contents=True, not_found_ok=True)
    for blob in storage_client(NONPROD_PROJECT).list_blobs(SPLIT_BUCKET):
        blob.delete()


def objects_in(project: str) -> dict[str, str]:
    """`dataset.table` -> table type (TABLE, VIEW, SNAPSHOT, ...) of everything `project` holds."""
    bq = client(project)
    found = {}
    for item in bq.list_datasets(project=project):
        if item.dataset_id == "local":  # the emulator's own dataset
            continue
        for table in bq.list_tables(f"{project}.{item.dataset_id}"):
            found[f"{item.dataset_id}.{table.table_id}"] = table.table_type
    return found


def prod_fingerprints() -> dict[str, Any]:
    """Every object of prod's project: type, rows, creation time, columns, view SQL, modified time."""
    bq = client(PROD_PROJECT)
    found: dict[str, Any] = {}
    for item in bq.list_datasets(project=PROD_PROJECT):
        dataset = bq.get_dataset(f"{PROD_PROJECT}.{item.dataset_id}")
        found[item.dataset_id] = (dataset.modified, sorted((dataset.labels or {}).items()))
        for listed in bq.list_tables(f"{PROD_PROJECT}.{item.dataset_id}"):
            table = bq.get_table(f"{PROD_PROJECT}.{item.dataset_id}.{listed.table_id}")
            found[f"{item.dataset_id}.{listed.table_id}"] = (
                table.table_type,
                table.num_rows,
                table.created,
                table.modified,
                [f.name for f in table.schema],
                table.view_query,
            )
    return found


def views_naming(project: str, named: str = PROD_PROJECT) -> dict[str, str]:
    """`dataset.view` -> SQL of every view of `project` whose SQL names project `named`."""
    bq = client(project)
    found = {}
    for item in bq.list_datasets(project=project):
        for listed in bq.list_tables(f"{project}.{item.dataset_id}"):
            if listed.table_type != "VIEW":
                continue
            sql = bq.get_table(f"{project}.{item.dataset_id}.{listed.table_id}").view_query or ""
            if named in sql:
                found[f"{item.dataset_id}.{listed.table_id}"] = sql
    return found


class _NoRequests:
    """A BigQuery client stand-in that fails the test on any request."""

    project = NONPROD_PROJECT

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the guard let a request through: client.{name}")


def refused_before_any_request(config_path: Path) -> list[str]:
    """The guard of the split config refuses a write into prod's project and into an unconfigured
    project before any request; returns the refusals' messages."""
    from envsync.core.config import parse_config
    from envsync.core.guard import GuardedBigQuery, ProdWriteRefused, TableRef, WriteGuard

    config = parse_config(yaml.safe_load(config_path.read_text()), str(config_path))
    bq = GuardedBigQuery(_NoRequests(), WriteGuard.from_config(config), "US")  # type: ignore[arg-type]
    messages = []
    for ref in (
        TableRef(PROD_PROJECT, "sales", "orders"),
        TableRef("envsync-unconfigured", "sales", "orders"),
        TableRef(DEV_PROJECT, "scratch", "orders"),
    ):
        try:
            bq.delete_table(ref)
        except ProdWriteRefused as refusal:
            messages.append(str(refusal))
        else:
            raise AssertionError(f"the guard let a delete of {ref.api} through")
        try:
            bq.start_query(f"DROP TABLE {ref.sql}", job_id="refused", labels={})
        except ProdWriteRefused as refusal:
            messages.append(str(refusal))
        else:
            raise AssertionError(f"the guard let DROP TABLE {ref.api} through")
    return messages
