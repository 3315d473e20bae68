"""reseed_environments, cleanup_test_environments and staging_cut with the environments in their own
projects (splitkit's layout), on the emulators.

Prod's schemas are read in PROD_PROJECT; qa_, staging_ and test_ datasets are written in
NONPROD_PROJECT with their seed rows and views reading NONPROD_PROJECT only; the cut reads qa and
writes staging there, its pins are snapshots in BACKUP_PROJECT; nothing lands in prod's project, and a
second reseed of qa builds on what the first run and the cut left.

gcp_incompatible: needs several sandbox projects (prod, non-prod, dev and backup projects of their own).

The seeds are written for testkit's prod (the shipped sql/seeds fit the demo prod): customers, orders
and ad_spend are seeded, the other tables are created empty with prod's schema.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from splitkit import (
    BACKUP_PROJECT,
    DEV_PROJECT,
    NONPROD_PROJECT,
    PROD_PROJECT,
    SPLIT_BUCKET,
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

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.gcp_incompatible]

UTC = dt.UTC
SEEDS = {
    "sales/customers.sql": """
        select customer_id, concat('seed-', cast(customer_id as string)) as name,
               if(mod(customer_id, 2) = 0, 'retail', 'wholesale') as segment
        from unnest(generate_array(1, 4)) as customer_id""",
    "sales/orders.sql": """
        select order_id, mod(order_id, 4) + 1 as customer_id,
               date_add(date '2026-01-01', interval order_id day) as order_date,
               [struct(concat('sku-', cast(order_id as string)) as sku, order_id as quantity)] as items,
               struct('seed-city' as city, 'NL' as country) as shipping
        from unnest(generate_array(1, 6)) as order_id""",
    "marketing/ad_spend.sql": """
        select spend_id, date_add(date '2026-01-01', interval spend_id day) as spend_date,
               cast(spend_id as float64) * 2.5 as amount
        from unnest(generate_array(1, 6)) as spend_id""",
}
SEEDED = {"sales": ("customers", "orders"), "marketing": ("ad_spend",)}
EMPTY = {"sales": ("orders_flat",), "marketing": ("sessions",)}  # no seed: prod's schema, no rows


@pytest.fixture(scope="module")
def split_prod(emulators: Any) -> None:
    create_split_prod()


@pytest.fixture
def split(split_prod: None, tmp_path: Path) -> Path:
    """The split config with testkit-fitting seeds, on an estate holding nothing but prod."""
    drop_derived()
    for name, sql in SEEDS.items():
        path = tmp_path / "seeds" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql.strip() + "\n")
    return split_config(tmp_path, seeds__dir=str(tmp_path / "seeds"))


def contents(project: str, dataset: str, table: str) -> list[str]:
    sql = f"select to_json_string(t) as j from `{project}.{dataset}.{table}` as t"
    return sorted(r["j"] for r in client(project).query(sql, job_retry=None).result())


def seed_contents(dataset: str, table: str) -> list[str]:
    sql = f"select to_json_string(t) as j from ({SEEDS[f'{dataset}/{table}.sql']}) as t"
    return sorted(r["j"] for r in client(NONPROD_PROJECT).query(sql, job_retry=None).result())


def datasets(project: str) -> dict[str, dict[str, str]]:
    bq = client(project)
    return {d.dataset_id: dict(d.labels or {}) for d in bq.list_datasets(project=project) if d.dataset_id != "local"}


def report(dag_id: str) -> dict[str, Any]:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    found = ManifestStore(storage_client(NONPROD_PROJECT), SPLIT_BUCKET).latest_report(dag_id)
    assert found is not None, f"no report of {dag_id}"
    return found


def assert_seeded(prefix: str) -> None:
    """`<prefix><ds>` in NONPROD_PROJECT: seed rows, empty unseeded tables, the view on its own datasets."""
    for dataset, tables in SEEDED.items():
        for table in tables:
            assert contents(NONPROD_PROJECT, f"{prefix}{dataset}", table) == seed_contents(dataset, table), table
    for dataset, tables in EMPTY.items():
        for table in tables:
            assert contents(NONPROD_PROJECT, f"{prefix}{dataset}", table) == [], table
    view = client(NONPROD_PROJECT).get_table(f"{NONPROD_PROJECT}.{prefix}marketing.campaign_revenue").view_query
    assert f"{NONPROD_PROJECT}.{prefix}sales" in view and PROD_PROJECT not in view, view
    [row] = client(NONPROD_PROJECT).query(
        f"select count(*) as n from `{NONPROD_PROJECT}.{prefix}marketing.campaign_revenue`", job_retry=None
    )
    assert row["n"] > 0  # the seeded orders, customers and spend join up


def test_reseed_cleanup_and_cut_stay_in_their_projects(split: Path, run_dag: Any) -> None:
    prod_before = prod_fingerprints()
    prod_objects = set(objects_in(PROD_PROJECT))

    # qa and staging from the seeds, on prod's schemas read in prod's project
    first = run_dag("reseed_environments", None, {}, config_path=split)
    assert str(first.state) == "success", states(first)
    for prefix in ("qa_", "staging_"):
        assert_seeded(prefix)
    labels = datasets(NONPROD_PROJECT)
    version = report("reseed_environments")["seed_version"]["version"]
    assert labels["qa_sales"]["envsync-env"] == "qa" and labels["qa_sales"]["envsync-seed-version"] == version
    targets = {r["target"] for r in report("reseed_environments")["results"]}
    assert f"{NONPROD_PROJECT}.qa_sales.orders" in targets and f"{NONPROD_PROJECT}.staging_sales.orders" in targets

    # a test environment in the test environment's project, deleted by the cleanup once it expired
    short = run_dag(
        "reseed_environments", None, {"test_env": "short", "ttl_days": 1, "datasets": ["sales"]}, config_path=split
    )
    assert str(short.state) == "success", states(short)
    assert datasets(NONPROD_PROJECT)["test_short_sales"]["envsync-env"] == "test"
    assert contents(NONPROD_PROJECT, "test_short_sales", "customers") == seed_contents("sales", "customers")
    now = dt.datetime.now(UTC)
    kept = run_dag("cleanup_test_environments", now, config_path=split)
    assert str(kept.state) == "success", states(kept)
    assert "test_short_sales" in datasets(NONPROD_PROJECT)
    cleaned = run_dag("cleanup_test_environments", now + dt.timedelta(days=2), config_path=split)
    assert str(cleaned.state) == "success", states(cleaned)
    left = datasets(NONPROD_PROJECT)
    assert "test_short_sales" not in left and {"qa_sales", "staging_sales", "qa_marketing"} <= set(left)

    # the cut: staging becomes qa as of T (both in NONPROD_PROJECT), pinned first in BACKUP_PROJECT
    client(NONPROD_PROJECT).query(
        f"insert into `{NONPROD_PROJECT}.qa_sales.customers` (customer_id, name, segment) "
        "values (99, 'qa-sprint', 'retail')",
        job_retry=None,
    ).result()
    qa = {t: contents(NONPROD_PROJECT, "qa_sales", t) for t in SEEDED["sales"]}
    cut = run_dag("staging_cut", None, {}, config_path=split)
    assert str(cut.state) == "success", states(cut)
    assert {t: contents(NONPROD_PROJECT, "staging_sales", t) for t in SEEDED["sales"]} == qa
    view = client(NONPROD_PROJECT).get_table(f"{NONPROD_PROJECT}.staging_marketing.campaign_revenue").view_query
    assert f"{NONPROD_PROJECT}.staging_sales" in view and "qa_" not in view, view
    pins = {name for name in objects_in(BACKUP_PROJECT) if name.startswith("backup_staging_sales.customers__")}
    assert len(pins) == 1, objects_in(BACKUP_PROJECT)
    cut_report = report("staging_cut")
    assert {r["target"] for r in cut_report["results"] if r["action"] == "publish"} >= {
        f"{NONPROD_PROJECT}.staging_sales.customers"
    }
    [audit] = client(NONPROD_PROJECT).query(
        f"select status, pinned_backups from `{NONPROD_PROJECT}.envsync_audit.staging_cuts` "
        f"where run_id = '{cut.run_id}'",
        job_retry=None,
    )
    assert audit["status"] == "success" and f"{BACKUP_PROJECT}.backup_staging_sales." in audit["pinned_backups"]

    # a later reseed of qa builds on what the first run and the cut left: qa has its seeds again
    again = run_dag("reseed_environments", None, {"environments": ["qa"]}, config_path=split)
    assert str(again.state) == "success", states(again)
    assert_seeded("qa_")
    assert contents(NONPROD_PROJECT, "staging_sales", "customers") == qa["customers"]  # staging untouched

    assert prod_fingerprints() == prod_before
    assert set(objects_in(PROD_PROJECT)) == prod_objects  # nothing derived in prod's project
    assert set(datasets(PROD_PROJECT)) == {"sales", "marketing"}
    assert objects_in(DEV_PROJECT) == {}
    assert views_naming(NONPROD_PROJECT) == {}
    assert len(refused_before_any_request(split)) == 6


def test_a_cut_into_staging_of_another_project_than_qa(split: Path, tmp_path: Path, run_dag: Any) -> None:
    """staging in BACKUP_PROJECT, its jobs in NONPROD_PROJECT: the reseed writes it there, the cut reads
    qa in NONPROD_PROJECT and writes staging in BACKUP_PROJECT, its views reading BACKUP_PROJECT."""
    config = split_config(
        tmp_path,
        seeds__dir=str(tmp_path / "seeds"),
        environments__staging__project=BACKUP_PROJECT,
        environments__staging__jobs_project=NONPROD_PROJECT,
    )
    seeded = run_dag("reseed_environments", None, {}, config_path=config)
    assert str(seeded.state) == "success", states(seeded)
    assert {"staging_sales", "staging_marketing"} <= set(datasets(BACKUP_PROJECT))
    assert not any(name.startswith("staging_") for name in datasets(NONPROD_PROJECT))
    client(NONPROD_PROJECT).query(
        f"delete from `{NONPROD_PROJECT}.qa_sales.orders` where order_id > 3", job_retry=None
    ).result()
    qa = contents(NONPROD_PROJECT, "qa_sales", "orders")
    cut = run_dag("staging_cut", None, {}, config_path=config)
    assert str(cut.state) == "success", states(cut)
    assert contents(BACKUP_PROJECT, "staging_sales", "orders") == qa
    view = client(BACKUP_PROJECT).get_table(f"{BACKUP_PROJECT}.staging_marketing.campaign_revenue").view_query
    assert f"{BACKUP_PROJECT}.staging_sales" in view and NONPROD_PROJECT not in view and PROD_PROJECT not in view
    assert any(name.startswith("backup_staging_sales.orders__") for name in objects_in(BACKUP_PROJECT))
    assert views_naming(BACKUP_PROJECT) == {} and views_naming(BACKUP_PROJECT, NONPROD_PROJECT) == {}
    assert not any(name.startswith("staging_") for name in datasets(NONPROD_PROJECT))
