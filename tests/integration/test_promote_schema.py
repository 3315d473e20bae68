"""The promote_schema DAG on the emulators: an expand migration promoted qa -> staging -> prod (prod only
with the exact phrase, a dry run that writes nothing), the gates (staging needs qa, prod needs staging,
the hotfix lane skipping qa, an edited applied migration, a contract migration while a view still reads
what it drops), and a failing prod migration rolled back from the pinned backup. Every run goes through
Airflow (dag.test); Slack alerts go to a local webhook.

Prod is the demo prod (envsync.dev.demo, 40 customers) in a project of its own; qa and staging are built from
it by copy jobs (their views re-created on their datasets) and keep the first 20 customers, as smaller
environments do. Assertions are on tables, schemas, fingerprints, the ledger, the backups and the payloads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sandbox
from testkit import add_customer_seed_columns, create_demo_prod_in, states
from webhookkit import Webhook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NS = sandbox.namespace("envsync-promote")
PROJECT = NS.project
BUCKET = "envsync-promote-state"
ds, fq = NS.ds, NS.fq
KEEP_CUSTOMERS = 20

ADD_EMAIL = """-- envsync: phase=expand
-- customers get an email address, backfilled from their name; a view exposes it
alter table sales.customers add column email string;

update sales.customers
set email = concat(lower(name), '@example.com')
where email is null;

create view marketing.customer_emails as
select customer_id, email
from sales.customers;
"""
# passes on qa and staging (customers 1-20: the UPDATE touches no row), fails on prod at line 8
LOYALTY = """-- envsync: phase=expand
create table sales.loyalty (customer_id int64, points int64);

alter table sales.customers add column score int64;

-- scores of the customers beyond the environments' first 20
update sales.customers
set score = cast(name as int64)
where customer_id > 20;
"""
DROP_SEGMENT = """-- envsync: phase=contract
alter table sales.customers drop column segment;
"""


def client():
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def rows(sql: str) -> list[dict[str, Any]]:
    return [dict(r) for r in client().query(NS.sql(sql), job_retry=None).result()]


def schema(table: str) -> list[tuple[str, str, str]]:
    return [(f.name, f.field_type, f.mode) for f in client().get_table(fq(table)).schema]


def columns(table: str) -> list[str]:
    return [name for name, _, _ in schema(table)]


def fingerprint(table: str) -> tuple[list[tuple[str, str, str]], int, str]:
    """Schema, row count and checksum of a table, computed as the backup tests do."""
    got = rows(
        f"select count(*) as n, coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as c "
        f"from `{PROJECT}.{table}` as t"
    )[0]
    return schema(table), got["n"], str(got["c"])


def tables(dataset: str) -> dict[str, str]:
    from google.api_core.exceptions import NotFound

    try:
        return {t.table_id: t.table_type for t in client().list_tables(fq(dataset))}
    except NotFound:
        return {}


def datasets() -> set[str]:
    return {name for d in client().list_datasets() if (name := NS.logical(d.dataset_id))}


def ledger(config: Any) -> list[tuple[str, int, str]]:
    from envsync.migrations.ledger import read_ledger

    return [(r.environment, r.version, r.status) for r in read_ledger(config, client())]


def parity(dag_run: Any) -> list[tuple[str, str, str, str]]:
    """(environment, finding, object, status) of the parity rows the run's `parity` task recorded."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("run_id", "STRING", dag_run.run_id)]
    )
    sql = NS.sql(
        f"select environment, finding, object_name, status from `{PROJECT}.envsync_audit.parity` "
        "where run_id = @run_id order by 1, 2, 3"
    )
    return [tuple(r.values()) for r in client().query(sql, job_config=config, job_retry=None).result()]


def report(dag_run: Any) -> dict[str, Any]:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    store = ManifestStore(storage_client(PROJECT), NS.bucket(BUCKET))
    return store.read(f"{store.run_prefix('promote_schema', dag_run.run_id)}/report.json") or {}


def build_environment(env: str) -> None:
    """`env`'s datasets from prod: every table by a copy job, the views re-created on env's datasets,
    customers beyond the first 20 removed."""
    from google.cloud import bigquery

    from envsync.bigquery.views import rewrite_view_sql

    c = client()
    mapping = {ds(name): ds(f"{env}_{name}") for name in ("sales", "marketing")}
    views = []
    for name in ("sales", "marketing"):
        target = bigquery.Dataset(fq(f"{env}_{name}"))
        target.location = "US"
        c.create_dataset(target)
        for item in c.list_tables(fq(name)):
            if item.table_type == "VIEW":
                views.append((name, item.table_id, c.get_table(item.reference).view_query))
            else:
                c.copy_table(
                    fq(f"{name}.{item.table_id}"),
                    fq(f"{env}_{name}.{item.table_id}"),
                    job_config=bigquery.CopyJobConfig(write_disposition="WRITE_EMPTY"),
                ).result()
    for name, view, query in views:
        c.query(
            f"create view `{fq(f'{env}_{name}.{view}')}` as {rewrite_view_sql(query, mapping, PROJECT).sql}",
            job_retry=None,
        ).result()
    c.query(
        f"delete from `{fq(f'{env}_sales.customers')}` where customer_id > {KEEP_CUSTOMERS}", job_retry=None
    ).result()


@pytest.fixture(scope="module")
def demo_prod(emulators: Any) -> dict[str, Any]:
    return create_demo_prod_in(NS)


@pytest.fixture
def fresh(demo_prod: Any) -> Iterator[None]:
    """Prod as the demo made it, qa and staging built from it, no ledger, no backups."""

    def reset() -> None:
        for name in datasets():
            if name.startswith(("qa_", "staging_", "dev_", "drill_", "backup_", "envsync_audit")):
                client().delete_dataset(fq(name), delete_contents=True, not_found_ok=True)
        if (
            columns("sales.customers") != ["customer_id", "name", "segment", "country"]
            or set(tables("marketing")) != {"campaigns", "sessions", "ad_spend", "campaign_revenue"}
            or "loyalty" in tables("sales")
        ):
            client().delete_table(fq("marketing.customer_emails"), not_found_ok=True)
            client().delete_table(fq("sales.loyalty"), not_found_ok=True)
            create_demo_prod_in(NS)

    reset()
    build_environment("qa")
    build_environment("staging")
    yield
    reset()


@pytest.fixture
def config(config_file: Any, demo_prod: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from envsync.core.config import load_config

    path = config_file(project=NS.virtual_project, state__bucket=BUCKET, tables={})
    monkeypatch.setenv("ENVSYNC_CONFIG", str(path))
    return load_config(path)


@pytest.fixture
def seeds_with(config_file: Any, config: Any, tmp_path: Path) -> Any:
    """Point the config at a copy of the shipped seeds whose sales/customers also yields `columns`
    (name -> SQL expression): what a migration's author changes together with the migration."""
    import shutil

    from testkit import REPO_ROOT

    def _seeds(**extra: str) -> None:
        target = tmp_path / "seeds"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(REPO_ROOT / "sql" / "seeds", target)
        add_customer_seed_columns(target, **extra)
        config_file(project=NS.virtual_project, state__bucket=BUCKET, tables={}, seeds__dir=str(target))

    return _seeds


@pytest.fixture
def promote(run_dag: Any, config: Any) -> Any:
    from envsync.core.config import config_path

    def _run(target: str, **conf: Any) -> Any:
        return run_dag("promote_schema", None, {"target": target, **conf}, config_path=config_path())

    return _run


# ---------------------------------------------------------------------------------------------


def test_an_expand_migration_goes_qa_staging_prod_and_prod_only_with_the_phrase(
    fresh: None, migrations_dir: Path, config: Any, promote: Any, seeds_with: Any, webhook: Webhook
) -> None:
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    seeds_with(email="concat('seed', cast(customer_id as string), '@example.com')")
    prod_before = fingerprint("sales.customers")

    for env in ("qa", "staging"):
        dag_run = promote(env)
        assert str(dag_run.state) == "success", states(dag_run)
        assert columns(f"{env}_sales.customers") == ["customer_id", "name", "segment", "country", "email"]
        emails = rows(f"select customer_id, email from `{PROJECT}.{env}_marketing.customer_emails` order by 1")
        assert [e["email"] for e in emails] == [f"customer {i:07d}@example.com" for i in range(1, KEEP_CUSTOMERS + 1)]
    assert ledger(config) == [("qa", 1, "applied"), ("staging", 1, "applied")]
    assert webhook.posts[-1]["text"].startswith(":white_check_mark: envsync *promote_schema* succeeded on *staging*")
    assert "schema migrations 1 -> staging, lane normal" in webhook.posts[-1]["text"]

    # a dry run prints the plan and writes nothing
    before = (datasets(), ledger(config), tables("sales"), tables("marketing"))
    dag_run = promote("prod", dry_run=True)
    assert str(dag_run.state) == "success", states(dag_run)
    plan = report(dag_run)["plan"]
    assert "  prod     holds -; would run 1" in plan and "  staging  holds 1" in plan
    assert (
        "migration 1 (0001_add_email.sql, expand) on prod: touches marketing.customer_emails, sales.customers" in plan
    )
    assert "    alter table sales.customers add column email string" in plan
    assert plan.endswith("to apply, set confirm to exactly: apply schema migrations 1 to prod")
    assert [r["status"] for r in report(dag_run)["results"]] == ["planned"]
    assert (datasets(), ledger(config), tables("sales"), tables("marketing")) == before
    assert fingerprint("sales.customers") == prod_before
    assert states(dag_run)["parity[-1]"] == "success" and parity(dag_run) == []  # skipped: nothing promoted

    # the wrong phrase is refused before any write
    dag_run = promote("prod", confirm="apply schema migrations 2 to prod")
    assert str(dag_run.state) == "failed"
    assert states(dag_run)["plan[-1]"] == "failed" and states(dag_run)["promote[-1]"] == "upstream_failed"
    assert "set the confirm param to exactly: apply schema migrations 1 to prod" in report(dag_run)["refused"]
    assert fingerprint("sales.customers") == prod_before
    assert "customer_emails" not in tables("marketing")
    assert not {d for d in datasets() if d.startswith("backup_")}
    assert ledger(config) == [("qa", 1, "applied"), ("staging", 1, "applied")]
    assert webhook.posts[-1]["text"].startswith(":x: envsync *promote_schema* FAILED on *prod*")

    dag_run = promote("prod", confirm="apply schema migrations 1 to prod")
    assert str(dag_run.state) == "success", states(dag_run)
    assert columns("sales.customers") == ["customer_id", "name", "segment", "country", "email"]
    assert len(rows(f"select * from `{PROJECT}.marketing.customer_emails` where email like '%@example.com'")) == 40
    assert ledger(config)[-1] == ("prod", 1, "applied")
    # the pinned backup of what the migration writes, taken before it ran
    pinned = {name: t for name, t in tables("backup_sales").items()}
    assert [n for n in pinned if n.startswith("customers__")], pinned
    snapshot = client().get_table(fq(f"backup_sales.{next(n for n in pinned if n.startswith('customers__'))}"))
    assert snapshot.labels["envsync-pinned"] == "true"
    assert [f.name for f in snapshot.schema] == ["customer_id", "name", "segment", "country"]
    text = webhook.posts[-1]["text"]
    assert text.startswith(":white_check_mark: envsync *promote_schema* succeeded on *prod*")
    assert "schema migrations 1 -> prod, lane normal" in text


def test_a_staging_promotion_is_refused_while_qa_lacks_it(
    fresh: None, migrations_dir: Path, config: Any, promote: Any, webhook: Webhook
) -> None:
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    before = fingerprint("staging_sales.customers")

    dag_run = promote("staging")

    assert str(dag_run.state) == "failed"
    assert states(dag_run)["plan[-1]"] == "failed"
    assert "refused to promote 0001_add_email.sql to staging: qa has not applied it" in report(dag_run)["refused"]
    assert fingerprint("staging_sales.customers") == before
    assert "customer_emails" not in tables("staging_marketing")
    assert ledger(config) == []
    text = webhook.posts[-1]["text"]
    assert text.startswith(":x: envsync *promote_schema* FAILED on *staging*")
    assert "schema migrations 1 -> staging, lane normal" in text
    assert "qa has not applied it" in text


def test_a_hotfix_goes_to_staging_and_prod_skipping_qa(
    fresh: None, migrations_dir: Path, config: Any, promote: Any, seeds_with: Any, webhook: Webhook
) -> None:
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    seeds_with(email="concat('seed', cast(customer_id as string), '@example.com')")

    dag_run = promote("staging", lane="hotfix")
    assert str(dag_run.state) == "success", states(dag_run)
    assert report(dag_run)["promotion"]["notes"] == ["hotfix lane: 1 skipped qa"]
    # the run ends with staging's parity: the migration not yet on prod is expected, not drift
    found = parity(dag_run)
    assert {env for env, *_ in found} == {"staging"}
    assert ("staging", "extra_column", "sales.customers.email", "expected") in found, found
    assert "parity" in report(dag_run)
    assert "lane hotfix; hotfix lane: 1 skipped qa" in webhook.posts[-1]["text"]
    dag_run = promote("prod", lane="hotfix", confirm="apply schema migrations 1 to prod")
    assert str(dag_run.state) == "success", states(dag_run)

    assert "email" in columns("staging_sales.customers") and "email" in columns("sales.customers")
    assert "email" not in columns("qa_sales.customers")
    assert ledger(config) == [("staging", 1, "applied"), ("prod", 1, "applied")]
    # a promotion to prod ends with the parity of qa and staging: staging now has prod's shape, qa
    # (skipped by the hotfix) lacks the column
    from envsync.environments.parity import STRUCTURAL

    found = parity(dag_run)
    assert {env for env, *_ in found} == {"qa", "staging"}
    assert ("qa", "missing_column", "sales.customers.email", "drift") in found, found
    assert not [f for f in found if f[0] == "staging" and f[1] in STRUCTURAL and f[3] == "drift"], found
    text = webhook.posts[-1]["text"]
    assert text.startswith(":white_check_mark: envsync *promote_schema* succeeded on *prod*")
    assert "schema migrations 1 -> prod, lane hotfix; hotfix lane: 1 skipped qa" in text


def test_an_edited_applied_migration_is_refused(fresh: None, migrations_dir: Path, config: Any, promote: Any) -> None:
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    assert str(promote("qa").state) == "success"
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL.replace("@example.com", "@example.org"))
    before = fingerprint("staging_sales.customers")

    dag_run = promote("staging")

    assert str(dag_run.state) == "failed"
    assert "0001_add_email.sql was edited after it was applied to qa" in report(dag_run)["refused"]
    assert fingerprint("staging_sales.customers") == before
    assert ledger(config) == [("qa", 1, "applied")]


def test_a_failing_prod_migration_is_rolled_back_from_the_pinned_backup(
    fresh: None, migrations_dir: Path, config: Any, promote: Any, seeds_with: Any, webhook: Webhook
) -> None:
    (migrations_dir / "0001_loyalty.sql").write_text(LOYALTY)
    seeds_with(score="cast(null as int64)")
    for env in ("qa", "staging"):
        dag_run = promote(env)
        assert str(dag_run.state) == "success", states(dag_run)
        assert "score" in columns(f"{env}_sales.customers") and "loyalty" in tables(f"{env}_sales")
    before = {t: fingerprint(f"sales.{t}") for t in ("customers", "orders")}

    dag_run = promote("prod", confirm="apply schema migrations 1 to prod")

    assert str(dag_run.state) == "failed"
    assert states(dag_run)["promote[-1]"] == "failed"
    # prod's rows and schema are as before; the table the migration created is gone
    assert {t: fingerprint(f"sales.{t}") for t in ("customers", "orders")} == before
    assert "loyalty" not in tables("sales") and "customers__restore" not in tables("sales")
    (failed,) = [r for r in report(dag_run)["results"] if r["status"] == "failed"]
    error = failed["error"]
    assert "migration 0001_loyalty.sql failed on prod at " in error and "0001_loyalty.sql:7" in error
    assert "'update sales.customers'" in error
    assert "prod was rolled back to the pinned backup" in error and "nothing was recorded as applied" in error
    assert ledger(config) == [("qa", 1, "applied"), ("staging", 1, "applied"), ("prod", 1, "failed")]
    assert [n for n in tables("backup_sales") if n.startswith("customers__")]
    assert "0001_loyalty.sql" in webhook.posts[-1]["text"] and webhook.posts[-1]["text"].startswith(":x:")


def test_a_contract_migration_is_refused_while_a_view_reads_the_dropped_column(
    fresh: None, migrations_dir: Path, config: Any, promote: Any
) -> None:
    (migrations_dir / "0001_drop_segment.sql").write_text(DROP_SEGMENT)
    for env in ("qa", "staging"):
        dag_run = promote(env)
        assert str(dag_run.state) == "success", states(dag_run)
        assert "segment" not in columns(f"{env}_sales.customers")
    before = fingerprint("sales.customers")

    dag_run = promote("prod", confirm="apply schema migrations 1 to prod")

    assert str(dag_run.state) == "failed"
    assert states(dag_run)["plan[-1]"] == "failed"
    refused = report(dag_run)["refused"]
    assert (
        "0001_drop_segment.sql removes sales.customers.segment, but view marketing.campaign_revenue of prod "
        "still reads it"
    ) in refused
    assert fingerprint("sales.customers") == before
    assert not {d for d in datasets() if d.startswith("backup_")}
    assert ledger(config) == [("qa", 1, "applied"), ("staging", 1, "applied")]


ADD_NOTE = """-- envsync: phase=expand
alter table sales.orders add column note string;
"""


def test_a_later_migration_is_promoted_where_an_earlier_one_is_held_also_through_the_hotfix_lane(
    fresh: None, migrations_dir: Path, config: Any, promote: Any, seeds_with: Any
) -> None:
    """qa and staging hold version 1; version 2 goes to staging as a hotfix, then to qa. What each
    environment already holds is checked against every migration file, not only those about to run."""
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    seeds_with(email="concat('seed', cast(customer_id as string), '@example.com')")
    for env in ("qa", "staging"):
        assert str(promote(env).state) == "success"
    (migrations_dir / "0002_add_note.sql").write_text(ADD_NOTE)

    dag_run = promote("staging", lane="hotfix")
    assert str(dag_run.state) == "success", states(dag_run)
    dag_run = promote("qa")
    assert str(dag_run.state) == "success", states(dag_run)

    for env in ("qa", "staging"):
        assert columns(f"{env}_sales.orders")[-1] == "note"
        assert columns(f"{env}_sales.customers")[-1] == "email"
    assert "note" not in columns("sales.orders")
    assert ledger(config) == [
        ("qa", 1, "applied"),
        ("staging", 1, "applied"),
        ("staging", 2, "applied"),
        ("qa", 2, "applied"),
    ]
