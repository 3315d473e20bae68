"""Schema promotion and parity with environments in their own projects (splitkit's layout), on the
emulators: a migration promoted qa -> staging -> prod lands in each environment's project (qa and
staging in NONPROD_PROJECT, prod in PROD_PROJECT only once confirmed, and there only on the tables it
touches), its ledger rows in NONPROD_PROJECT's audit dataset, its rehearsals in the drill project; a
failing prod migration is rolled back from the pinned backup in BACKUP_PROJECT; the parity DAG names
the environments' projects and reports a view of a derived project that reads prod's project.

gcp_incompatible: needs several sandbox projects (prod, non-prod, dev and backup projects of their own).

qa and staging are built from the split prod by copy jobs across projects (their views re-created on
their own datasets, in their own project) and keep the first KEEP_CUSTOMERS customers, as smaller
environments do; the seeds folder is empty (testkit's prod is not the demo prod the shipped seeds fit).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from splitkit import (
    BACKUP_PROJECT,
    DEV_PROJECT,
    NONPROD_PROJECT,
    PROD_DATASETS,
    PROD_PROJECT,
    client,
    create_split_prod,
    drop_derived,
    objects_in,
    prod_fingerprints,
    refused_before_any_request,
    split_config,
    views_naming,
)
from testkit import states
from webhookkit import Webhook

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.gcp_incompatible]

KEEP_CUSTOMERS = 10
ADD_EMAIL = """-- envsync: phase=expand
-- customers get an email address, backfilled from their name; a view exposes it
alter table sales.customers add column email string;

update sales.customers
set email = concat(name, '@example.com')
where email is null;

create view marketing.customer_emails as
select customer_id, email
from sales.customers;
"""
# passes on qa and staging (customers 0-9: the UPDATE touches no row), fails on prod at line 8
LOYALTY = """-- envsync: phase=expand
create table sales.loyalty (customer_id int64, points int64);

alter table sales.customers add column score int64;

-- scores of the customers beyond the environments' first ten
update sales.customers
set score = cast(name as int64)
where customer_id >= 10;
"""
PROD_PHRASE = "apply schema migrations 1 to prod"


def rows(project: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    config = bigquery.QueryJobConfig(query_parameters=to_query_parameters(params))
    return [dict(r) for r in client(project).query(sql, job_config=config, job_retry=None).result()]


def columns(project: str, table: str) -> list[str]:
    return [f.name for f in client(project).get_table(f"{project}.{table}").schema]


def ledger_rows() -> list[tuple[str, int, str]]:
    """The ledger, read where it must be: NONPROD_PROJECT's audit dataset."""
    return [
        (r["environment"], r["version"], r["status"])
        for r in rows(
            NONPROD_PROJECT,
            f"select environment, version, status from `{NONPROD_PROJECT}.envsync_audit.migrations` "
            "order by applied_at, environment",
        )
    ]


def parity_rows(run_id: str) -> list[dict[str, Any]]:
    return rows(
        NONPROD_PROJECT,
        f"select * from `{NONPROD_PROJECT}.envsync_audit.parity` where run_id = @run_id",
        run_id=run_id,
    )


def build_environment(env: str) -> None:
    """`env`'s datasets in NONPROD_PROJECT from the split prod: every table by a copy job across
    projects, the views re-created on env's datasets in env's project, customers from KEEP_CUSTOMERS on
    removed."""
    from google.cloud import bigquery

    from envsync.bigquery.views import rewrite_view_sql

    prod, nonprod = client(PROD_PROJECT), client(NONPROD_PROJECT)
    mapping = {name: f"{env}_{name}" for name in PROD_DATASETS}
    views = []
    for name in PROD_DATASETS:
        target = bigquery.Dataset(f"{NONPROD_PROJECT}.{env}_{name}")
        target.location = "US"
        nonprod.create_dataset(target)
        for item in prod.list_tables(f"{PROD_PROJECT}.{name}"):
            if item.table_type == "VIEW":
                views.append((name, item.table_id, prod.get_table(item.reference).view_query))
            else:
                nonprod.copy_table(
                    f"{PROD_PROJECT}.{name}.{item.table_id}",
                    f"{NONPROD_PROJECT}.{env}_{name}.{item.table_id}",
                    job_config=bigquery.CopyJobConfig(write_disposition="WRITE_EMPTY"),
                ).result()
    for name, view, query in views:
        sql = rewrite_view_sql(query, mapping, PROD_PROJECT, target_project=NONPROD_PROJECT).sql
        nonprod.query(f"create view `{NONPROD_PROJECT}.{env}_{name}.{view}` as {sql}", job_retry=None).result()
    nonprod.query(
        f"delete from `{NONPROD_PROJECT}.{env}_sales.customers` where customer_id >= {KEEP_CUSTOMERS}",
        job_retry=None,
    ).result()


def restore_prod() -> None:
    """The split prod as splitkit makes it: what a promotion added dropped, the tables re-created."""
    prod = client(PROD_PROJECT)
    for name in ("marketing.customer_emails", "sales.loyalty"):
        prod.delete_table(f"{PROD_PROJECT}.{name}", not_found_ok=True)
    create_split_prod()


@pytest.fixture(scope="module")
def split_prod(emulators: Any) -> None:
    create_split_prod()


@pytest.fixture
def split(split_prod: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The split config (no table overrides, no seeds), qa and staging built from prod, an empty
    migrations folder; prod as splitkit makes it before and after."""
    drop_derived()
    build_environment("qa")
    build_environment("staging")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    path = split_config(tmp_path, tables={}, seeds__dir=str(seeds))
    monkeypatch.setenv("ENVSYNC_CONFIG", str(path))
    yield path
    restore_prod()
    drop_derived()


@pytest.fixture
def promote(run_dag: Any, split: Path, webhook: Webhook) -> Any:
    def _run(target: str, **conf: Any) -> Any:
        return run_dag("promote_schema", None, {"target": target, **conf}, config_path=split)

    return _run


# ---------------------------------------------------------------------------------------------


MIXED = """-- envsync: phase=expand
create view marketing.revenue_by_email as
with recent as (select * from sales.orders)
select c.email, count(*) as orders
from recent
join `envsync-split-prod.sales.customers` as c using (customer_id)
join `envsync-split-prod`.marketing.ad_spend as a on a.spend_date = recent.order_date
cross join `sales`.`audit_log`
group by c.email;
"""


def test_every_reference_of_a_migration_is_written_in_the_environments_project(tmp_path: Path) -> None:
    """No emulator: the rewrite of each reference form (unqualified, quoted, in prod's project)."""
    import sqlglot
    from sqlglot import exp

    from envsync.core.config import load_config
    from envsync.migrations.ledger import load_migrations

    config = load_config(split_config(tmp_path))
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_mixed.sql").write_text(MIXED)
    migration = load_migrations(config, tmp_path / "migrations")[0]

    def tables(sql: str) -> set[str]:
        tree = sqlglot.parse_one(sql, read="bigquery")
        return {".".join(p for p in (t.catalog, t.db, t.name) if p) for t in tree.find_all(exp.Table)} - {"recent"}

    for env, project, prefix in (("qa", NONPROD_PROJECT, "qa_"), ("dev", DEV_PROJECT, ""), ("prod", PROD_PROJECT, "")):
        ((_, sql),) = migration.rewrite_for(config, env)
        assert tables(sql) == {
            f"{project}.{prefix}marketing.revenue_by_email",
            f"{project}.{prefix}sales.orders",
            f"{project}.{prefix}sales.customers",
            f"{project}.{prefix}marketing.ad_spend",
            f"{project}.{prefix}sales.audit_log",
        }, env


def test_a_migration_lands_in_each_environments_project_and_parity_names_the_projects(
    split: Path, migrations_dir: Path, promote: Any, run_dag: Any
) -> None:
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    prod_before = prod_fingerprints()

    for env in ("qa", "staging"):
        dag_run = promote(env)
        assert str(dag_run.state) == "success", states(dag_run)
        assert columns(NONPROD_PROJECT, f"{env}_sales.customers")[-1] == "email"
        emails = rows(NONPROD_PROJECT, f"select email from `{NONPROD_PROJECT}.{env}_marketing.customer_emails`")
        assert sorted(e["email"] for e in emails) == sorted(f"customer-{i}@example.com" for i in range(KEEP_CUSTOMERS))
        view = client(NONPROD_PROJECT).get_table(f"{NONPROD_PROJECT}.{env}_marketing.customer_emails")
        assert f"{NONPROD_PROJECT}" in view.view_query and f"{env}_sales" in view.view_query
    assert prod_fingerprints() == prod_before  # qa and staging took it; prod is untouched
    assert ledger_rows() == [("qa", 1, "applied"), ("staging", 1, "applied")]

    # the wrong phrase is refused before any write to prod
    dag_run = promote("prod", confirm="apply schema migrations 2 to prod")
    assert str(dag_run.state) == "failed" and states(dag_run)["plan[-1]"] == "failed"
    assert prod_fingerprints() == prod_before

    dag_run = promote("prod", confirm=PROD_PHRASE)
    assert str(dag_run.state) == "success", states(dag_run)

    # prod changed in its own project, only on the tables the migration touches
    after = prod_fingerprints()
    touched = {"sales.customers", "marketing.customer_emails"}
    assert set(after) == set(prod_before) | {"marketing.customer_emails"}
    assert {k: v for k, v in after.items() if k not in touched | {"marketing"}} == {
        k: v for k, v in prod_before.items() if k not in touched | {"marketing"}
    }
    assert after["marketing"][1] == prod_before["marketing"][1]  # the dataset's labels
    assert columns(PROD_PROJECT, "sales.customers")[-1] == "email"
    emails = rows(PROD_PROJECT, f"select email from `{PROD_PROJECT}.marketing.customer_emails`")
    assert len(emails) == 20 and all(e["email"].endswith("@example.com") for e in emails)
    assert ledger_rows() == [("qa", 1, "applied"), ("staging", 1, "applied"), ("prod", 1, "applied")]
    # the ledger, the pinned backup and the rehearsals are where the layout puts them
    assert "envsync_audit.migrations" in objects_in(NONPROD_PROJECT)
    backups = objects_in(BACKUP_PROJECT)
    assert [k for k in backups if k.startswith("backup_sales.customers__")], backups
    assert not [k for k in objects_in(BACKUP_PROJECT) if "migcheck_" in k]  # rehearsals dropped after use
    assert objects_in(DEV_PROJECT) == {}
    for project in (NONPROD_PROJECT, DEV_PROJECT, BACKUP_PROJECT):
        assert views_naming(project) == {}, project

    # a view of a derived project that still reads prod's project is a parity finding
    client(NONPROD_PROJECT).query(
        f"create view `{NONPROD_PROJECT}.qa_marketing.reads_prod` as "
        f"select order_id from `{PROD_PROJECT}.sales.orders`",
        job_retry=None,
    ).result()
    check_run = run_dag("parity", None, {"environments": ["qa", "staging"]}, config_path=split)
    assert str(check_run.state) == "success", states(check_run)
    found = parity_rows(check_run.run_id)
    assert {f["env_dataset"] for f in found} == {
        f"{NONPROD_PROJECT}.{env}_{name}" for env in ("qa", "staging") for name in PROD_DATASETS
    }
    assert {(f["environment"], f["finding"], f["object_name"], f["status"]) for f in found} >= {
        ("qa", "prod_reference", "marketing.reads_prod", "drift"),
        ("qa", "extra_object", "marketing.reads_prod", "drift"),
    }
    from envsync.environments.parity import STRUCTURAL

    structural = [
        (f["environment"], f["finding"], f["object_name"])
        for f in found
        if f["status"] == "drift" and f["finding"] in STRUCTURAL and f["object_name"] != "marketing.reads_prod"
    ]
    assert structural == []  # both took the migration prod now has
    client(NONPROD_PROJECT).delete_table(f"{NONPROD_PROJECT}.qa_marketing.reads_prod")
    assert views_naming(NONPROD_PROJECT) == {}
    # the parity of the promotion to prod (its last task) named the split projects too
    promoted = parity_rows(dag_run.run_id)
    assert promoted and {f["environment"] for f in promoted} == {"qa", "staging"}
    assert all(f["env_dataset"].startswith(f"{NONPROD_PROJECT}.") for f in promoted)

    assert len(refused_before_any_request(split)) == 6


def test_a_failing_prod_migration_is_rolled_back_from_the_backup_project(
    split: Path, migrations_dir: Path, promote: Any
) -> None:
    (migrations_dir / "0001_loyalty.sql").write_text(LOYALTY)
    for env in ("qa", "staging"):
        dag_run = promote(env)
        assert str(dag_run.state) == "success", states(dag_run)
        assert columns(NONPROD_PROJECT, f"{env}_sales.customers")[-1] == "score"
        assert f"{env}_sales.loyalty" in objects_in(NONPROD_PROJECT)
    before = prod_fingerprints()
    prod_rows = rows(PROD_PROJECT, f"select * from `{PROD_PROJECT}.sales.customers` order by customer_id")

    dag_run = promote("prod", confirm=PROD_PHRASE)

    assert str(dag_run.state) == "failed" and states(dag_run)["promote[-1]"] == "failed"
    after = prod_fingerprints()
    assert set(after) == set(before)  # the table the migration created is gone, no stage left behind
    assert [k for k, v in after.items() if v != before[k] and k != "sales.customers"] in ([], ["sales"])
    assert columns(PROD_PROJECT, "sales.customers") == ["customer_id", "name", "segment"]
    assert rows(PROD_PROJECT, f"select * from `{PROD_PROJECT}.sales.customers` order by customer_id") == prod_rows
    assert ledger_rows() == [("qa", 1, "applied"), ("staging", 1, "applied"), ("prod", 1, "failed")]
    assert [k for k in objects_in(BACKUP_PROJECT) if k.startswith("backup_sales.customers__")]
    assert objects_in(DEV_PROJECT) == {}
    for project in (NONPROD_PROJECT, DEV_PROJECT, BACKUP_PROJECT):
        assert views_naming(project) == {}, project
