"""Run reports, audit, leases and the page across projects: fingerprints of `project.dataset.table`
targets, each lease's datasets in its environment's project (dev with an empty prefix in a project of
its own), the dead-run clean-up there, audit tables in the audit project, the page naming projects,
and the split-projects example config."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from envsync.bigquery.verify import fingerprint
from envsync.core.config import ENV_NAMES, load_config, parse_config
from envsync.core.lease import Holder, Takeover
from envsync.observe.audit import audit_table, ensure_audit_table
from envsync.operators.leasing import clean_up_dead_run, env_datasets, lease_project, target_lease

REPO_ROOT = Path(__file__).resolve().parents[2]
PROD, NONPROD, DEV, BACKUP = "acme-prod", "acme-nonprod", "acme-dev", "acme-backup"
ONE = parse_config(
    {"project": "envsync-demo", "prod": {"datasets": ["sales", "marketing"]}, "state": {"bucket": "b-1"}}
)
SPLIT = parse_config(
    {
        "project": NONPROD,
        "prod": {"project": PROD, "datasets": ["sales", "marketing"]},
        "environments": {
            "dev": {"prefix": "", "project": DEV, "jobs_project": NONPROD},
            "backup": {"prefix": "backup_", "project": BACKUP},
            "drill": {"prefix": "drill_", "project": BACKUP},
        },
        "state": {"bucket": "b-1", "project": NONPROD},
        "audit": {"project": NONPROD},
    }
)
CONTEXT: dict[str, Any] = {"run_id": "r2", "dag": SimpleNamespace(dag_id="prod_to_dev_sync")}


class FakeTable:
    def __init__(self, table_id: str) -> None:
        self.table_id = table_id
        self.table_type = "TABLE"
        self.num_rows = 3
        self.created = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
        self.schema = [SimpleNamespace(name="id")]


class FakeClient:
    """A BigQuery client holding `tables` ({"project.dataset": [table ids]}); records what it is asked."""

    def __init__(self, project: str, tables: dict[str, list[str]] | None = None) -> None:
        self.project = project
        self.tables = tables or {}
        self.got: list[str] = []
        self.listed: list[str] = []
        self.deleted: list[str] = []
        self.created: list[str] = []

    def get_table(self, ref: str) -> FakeTable:
        from google.api_core.exceptions import NotFound

        self.got.append(ref)
        dataset, _, table = ref.rpartition(".")
        if table not in self.tables.get(dataset, []):
            raise NotFound(ref)
        return FakeTable(table)

    def list_tables(self, dataset: str) -> list[FakeTable]:
        from google.api_core.exceptions import NotFound

        self.listed.append(dataset)
        if dataset not in self.tables:
            raise NotFound(dataset)
        return [FakeTable(t) for t in self.tables[dataset]]

    def list_jobs(self, **_: Any) -> list[Any]:
        return []

    def get_dataset(self, ref: str) -> Any:
        from google.api_core.exceptions import NotFound

        raise NotFound(ref)

    def create_dataset(self, dataset: Any, exists_ok: bool = False) -> Any:
        self.created.append(f"{dataset.project}.{dataset.dataset_id}")
        return dataset

    def delete_table(self, ref: str, not_found_ok: bool = False) -> None:
        self.deleted.append(ref)


# ----- fingerprints -------------------------------------------------------------------------------


def test_a_three_part_target_is_fingerprinted_in_the_project_it_names() -> None:
    client = FakeClient(NONPROD, {f"{DEV}.sales": ["orders"], f"{NONPROD}.sales": []})
    found = fingerprint(client, NONPROD, f"{DEV}.sales.orders")  # type: ignore[arg-type]  # a fake client
    assert found is not None and found["exists"] and found["rows"] == 3
    assert fingerprint(client, NONPROD, "sales.orders") == {"exists": False}  # type: ignore[arg-type]
    assert client.got == [f"{DEV}.sales.orders", f"{NONPROD}.sales.orders"]


@pytest.mark.parametrize("target", ["orders", "a.b.c.d", "Bad_Project.sales.orders", "sales.", "gs://b/x.y", "a b.c"])
def test_a_target_naming_no_table_has_no_fingerprint(target: str) -> None:
    client = FakeClient(NONPROD)
    assert fingerprint(client, NONPROD, target) is None  # type: ignore[arg-type]  # a fake client
    assert client.got == []


def test_the_environment_tables_are_listed_in_each_leases_project_and_named_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from envsync.operators import common, leasing

    monkeypatch.setattr(leasing, "held_envs", lambda config, conn_id, context: ["dev", "backup"])
    client = FakeClient(NONPROD, {f"{DEV}.sales": ["orders"], f"{BACKUP}.backup_marketing": ["sessions__x"]})
    found = common.environment_tables(SPLIT, "conn", CONTEXT, client)  # type: ignore[arg-type]
    assert found == {f"{DEV}.sales.orders", f"{BACKUP}.backup_marketing.sessions__x"}
    assert client.listed == [f"{DEV}.sales", f"{DEV}.marketing", f"{BACKUP}.backup_sales", f"{BACKUP}.backup_marketing"]
    # one project: listed in the top-level project, named dataset.table as always
    monkeypatch.setattr(leasing, "held_envs", lambda config, conn_id, context: ["dev"])
    one = FakeClient("envsync-demo", {"envsync-demo.dev_sales": ["orders"]})
    assert common.environment_tables(ONE, "conn", CONTEXT, one) == {"dev_sales.orders"}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dag_id", "manifest", "env"),
    [
        ("prod_to_dev_sync", {}, "dev"),
        ("backup_ladder", {"env": "backup"}, "backup"),
        ("reseed_environments", {"params": {"test_env": "demo"}}, "test"),
        ("reseed_environments", {"params": {"environments": ["qa", "staging"]}}, None),
        ("promote_schema", {"env": "prod"}, "prod"),
    ],
)
def test_a_unit_runs_its_jobs_for_the_one_environment_its_run_writes(
    dag_id: str, manifest: dict[str, Any], env: str | None
) -> None:
    from envsync.operators.common import UnitOperator

    unit = UnitOperator.__new__(UnitOperator)
    context: Any = {"dag": SimpleNamespace(dag_id=dag_id)}
    assert unit.writes_env(manifest, context) == env


# ----- leases -------------------------------------------------------------------------------------


def test_a_lease_covers_its_environments_datasets_in_that_environments_project() -> None:
    assert env_datasets(SPLIT, "dev") == ["sales", "marketing"]  # empty prefix: prod's names, in DEV
    assert [lease_project(SPLIT, lease) for lease in ("prod", "dev", "qa", "test_x", "backup_staging", "drill")] == [
        PROD,
        DEV,
        NONPROD,
        NONPROD,
        BACKUP,
        BACKUP,
    ]
    assert target_lease(SPLIT, "sales", PROD) == "prod"
    assert target_lease(SPLIT, "sales", DEV) == "dev"
    assert target_lease(SPLIT, "drill_staging_sales", BACKUP) == "drill_staging"
    assert target_lease(SPLIT, "test_demo_sales", NONPROD) == "test_demo"
    assert target_lease(SPLIT, "qa_sales") == "qa"  # one project holds it: the name alone tells
    with pytest.raises(ValueError, match=r"'sales' is a dataset of prod \(project 'acme-prod'\), dev"):
        target_lease(SPLIT, "sales")
    with pytest.raises(ValueError, match="'sales' in project 'acme-nonprod' belongs to no environment"):
        target_lease(SPLIT, "sales", NONPROD)
    with pytest.raises(ValueError, match="'qa_sales' in project 'acme-dev' belongs to no environment"):
        target_lease(SPLIT, "qa_sales", DEV)
    # the one-project layout: every lease in the top-level project
    assert {lease_project(ONE, lease) for lease in ("prod", "dev", "backup_staging", "test_x")} == {"envsync-demo"}
    assert target_lease(ONE, "sales") == "prod" and target_lease(ONE, "dev_sales", "envsync-demo") == "dev"


def _clean_up(monkeypatch: pytest.MonkeyPatch, config: Any, lease: str, tables: dict[str, list[str]]) -> dict[str, Any]:
    from envsync.core import clients
    from envsync.observe import audit

    made: list[FakeClient] = []

    def client(project: str, location: str | None = None, conn_id: str = "") -> FakeClient:
        made.append(FakeClient(project, tables))
        return made[-1]

    audited: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(clients, "bigquery_client", client)
    monkeypatch.setattr(
        audit, "record_run", lambda config, runner, run, actions: audited.append((runner.bq.client.project, run))
    )
    dead = Holder("prod_to_dev_sync", "r1", "sync_dataset", "airflow-a", since="2026-11-21T02:00:00+00:00")
    outcome = clean_up_dead_run(config, "conn", CONTEXT, Takeover(lease, dead, "its heartbeat stopped"))  # type: ignore[arg-type]
    return {"outcome": outcome, "clients": made, "audited": audited}


def test_a_dead_runs_stage_tables_are_dropped_in_its_environments_project_never_prod(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tables = {
        f"{DEV}.sales": ["orders", "orders__envsync_stage"],
        f"{PROD}.sales": ["orders__envsync_stage"],  # looks like a stage table, but it is prod's
        f"{NONPROD}.sales": ["orders__envsync_stage"],  # not dev's project
    }
    got = _clean_up(monkeypatch, SPLIT, "dev", tables)
    runner_client, audit_client = got["clients"]
    assert runner_client.project == NONPROD  # dev's jobs project: where its jobs ran (and are cancelled)
    assert runner_client.listed == [f"{DEV}.sales", f"{DEV}.marketing"]
    assert runner_client.deleted == [f"{DEV}.sales.orders__envsync_stage"]
    assert got["outcome"]["removed"] == [f"{DEV}.sales.orders__envsync_stage"]
    assert [(project, run["status"]) for project, run in got["audited"]] == [(NONPROD, "killed")]
    assert audit_client.project == NONPROD


def test_a_dead_restores_stage_tables_of_staging_drills_are_dropped_in_the_drill_project(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tables = {f"{BACKUP}.drill_staging_sales": ["orders__restore", "orders"]}
    got = _clean_up(monkeypatch, SPLIT, "drill_staging", tables)
    assert got["clients"][0].project == BACKUP
    assert got["clients"][0].deleted == [f"{BACKUP}.drill_staging_sales.orders__restore"]


def test_a_one_project_clean_up_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    got = _clean_up(monkeypatch, ONE, "dev", {"envsync-demo.dev_sales": ["orders__envsync_stage"]})
    assert got["outcome"]["removed"] == ["dev_sales.orders__envsync_stage"]
    assert {c.project for c in got["clients"]} == {"envsync-demo"}


# ----- audit --------------------------------------------------------------------------------------


def test_audit_tables_live_in_the_audit_project() -> None:
    assert audit_table(SPLIT, "runs").sql == "`acme-nonprod.envsync_audit.runs`"
    assert audit_table(ONE, "runs").sql == "`envsync-demo.envsync_audit.runs`"
    other = parse_config(
        {
            "project": "envsync-demo",
            "prod": {"datasets": ["sales"]},
            "state": {"bucket": "b-1"},
            "audit": {"project": "acme-audit", "dataset": "ops_audit"},
        }
    )
    assert audit_table(other, "parity").api == "acme-audit.ops_audit.parity"


def test_the_audit_dataset_is_created_in_the_audit_project() -> None:
    from envsync.core.guard import GuardedBigQuery, WriteGuard

    statements: list[str] = []
    client = FakeClient(NONPROD)
    bq = GuardedBigQuery(client, WriteGuard.from_config(SPLIT), "US")  # type: ignore[arg-type]
    runner = SimpleNamespace(bq=bq, run=lambda sql, key: statements.append(sql))
    ref = ensure_audit_table(SPLIT, runner, "runs")  # type: ignore[arg-type]
    assert client.created == [f"{NONPROD}.envsync_audit"]
    assert ref.api == f"{NONPROD}.envsync_audit.runs" and f"`{NONPROD}.envsync_audit.runs`" in statements[0]


# ----- the page -----------------------------------------------------------------------------------


def _reader(config: Any) -> Any:
    from envsync.ui.data import DashboardReader

    reader: Any = DashboardReader.__new__(DashboardReader)
    reader.config = config
    reader.catalog = SimpleNamespace(backup_dataset=lambda ds: config.env_dataset("backup", ds))
    return reader


def test_the_page_reads_the_audit_and_backup_datasets_in_their_projects() -> None:
    asked: list[tuple[str, dict[str, str]]] = []
    reader = _reader(SPLIT)

    def query(name: str, params: Any = None, **ids: str) -> list[Any]:
        asked.append((name, ids))
        return []

    reader.query = query
    reader.audit_columns()
    reader._snapshots("sales")
    assert asked == [
        ("audit_columns", {"dataset": "`acme-nonprod.envsync_audit`"}),
        ("snapshots", {"dataset": "`acme-backup.backup_sales`"}),
    ]
    assert reader._audit_ref("runs") == "`acme-nonprod.envsync_audit.runs`"
    assert reader._audit_name("parity") == "acme-nonprod.envsync_audit.parity"
    assert _reader(ONE)._audit_name("parity") == "envsync_audit.parity"
    assert [reader.project_of(e) for e in ("dev", "backup", "test_demo", "dev,qa")] == [DEV, BACKUP, NONPROD, None]
    assert _reader(ONE).project_of("dev") is None


def test_the_page_names_prods_project_and_each_environments_when_split() -> None:
    from envsync.ui.data import Dashboard, EnvironmentStatus, OptionalSection
    from envsync.ui.page import render_page

    now = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)

    def board(projects: dict[str, str], env_project: str | None, audit: str) -> str:
        return render_page(
            Dashboard(
                NONPROD if projects else "envsync-demo",
                audit,
                now,
                0.1,
                [EnvironmentStatus("dev", "grey", ["no run"], project=env_project)],
                [],
                now,
                50,
                [],
                OptionalSection("p"),
                [],
                OptionalSection("m"),
                [],
                [],
                projects=projects,
            )
        )

    split = board({"prod": PROD, "dev": DEV, "qa": NONPROD, "backup": BACKUP}, DEV, "acme-nonprod.envsync_audit")
    assert (
        "prod in project acme-prod; dev in acme-dev; qa in acme-nonprod; backup in acme-backup; "
        "audit dataset acme-nonprod.envsync_audit;" in split
    )
    assert '<b>dev</b><div class="muted project">acme-dev</div>' in split
    one = board({}, None, "envsync_audit")
    assert '<p class="meta">project envsync-demo, audit dataset envsync_audit; ' in one
    assert 'class="muted project"' not in one


# ----- the example config -------------------------------------------------------------------------


def test_the_split_projects_example_loads_and_places_every_environment() -> None:
    config = load_config(REPO_ROOT / "config" / "examples" / "split-projects.yaml")
    assert config.split and config.projects() == ["acme-prod", "acme-nonprod", "acme-backup"]
    homes = {env: config.project_of(env) for env in ("prod", "audit", *ENV_NAMES)}
    assert homes == {
        "prod": "acme-prod",
        "audit": "acme-nonprod",
        "dev": "acme-nonprod",
        "qa": "acme-nonprod",
        "staging": "acme-nonprod",
        "test": "acme-nonprod",
        "prodcopy": "acme-nonprod",
        "backup": "acme-backup",
        "drill": "acme-backup",
    }
    assert {env: config.jobs_project_of(env) for env in homes} == homes
    assert config.state_project == "acme-nonprod"
    assert [config.env_dataset(env, "sales") for env in ("dev", "qa", "staging")] == [
        "dev_sales",
        "qa_sales",
        "staging_sales",
    ]
