"""The naming of `make test-gcp` (tests/sandbox.py): run prefixes, logical -> real dataset names, the
test configs made real (they must still pass envsync's config validation), and the refusal message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sandbox
import yaml

from envsync.core.config import PREFIX_RE, parse_config

RUN = "envsynct202611221530a1b2c3"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def namespaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "NAMESPACED", True)
    monkeypatch.setattr(sandbox, "RUN_PREFIX", RUN)


def test_run_prefix_is_of_the_family_and_makes_valid_environment_prefixes() -> None:
    import datetime as dt

    prefix = sandbox.new_run_prefix(dt.datetime(2026, 11, 22, 15, 30, tzinfo=dt.UTC))
    assert re.fullmatch(r"envsynct202611221530[0-9a-f]{6}", prefix)
    assert sandbox.RUN_FAMILY_RE.match(prefix) and sandbox.RUN_FAMILY_RE.match(prefix + "mainsales")
    assert PREFIX_RE.match(prefix + "maindev_")
    assert sandbox.new_run_prefix() != sandbox.new_run_prefix()
    assert not sandbox.RUN_FAMILY_RE.match("envsynctest") and not sandbox.RUN_FAMILY_RE.match("sales")


def test_on_the_emulators_names_are_unchanged() -> None:
    assert not sandbox.NAMESPACED  # the unit tests run without ENVSYNC_TEST_TARGET / ENVSYNC_TEST_RUN_PREFIX
    ns = sandbox.namespace("envsync-demo")
    assert ns.project == "envsync-demo" and ns.prefix == ""
    assert [ns.ds("sales"), ns.ds("dev_sales"), ns.tref("dev_sales.orders")] == [
        "sales",
        "dev_sales",
        "dev_sales.orders",
    ]
    assert ns.bucket("envsync-demo-state") == "envsync-demo-state"
    sql = "select * from `envsync-demo.sales.orders` join sales.customers using (x)"
    assert ns.sql(sql) == sql
    data = {"project": "envsync-demo", "prod": {"datasets": ["sales"]}, "state": {"bucket": "b-state"}}
    assert sandbox.real_config(data) is data


@pytest.mark.usefixtures("namespaced")
def test_logical_names_map_to_run_prefixed_ones_and_back() -> None:
    ns = sandbox.namespace("envsync-demo")
    p = RUN + "main"
    assert ns.project == sandbox.EMULATOR_SANDBOX_PROJECT and ns.prefix == p
    cases = {
        "sales": f"{p}sales",
        "envsync_audit": f"{p}envsync_audit",
        "dev_sales": f"{p}dev_{p}sales",
        "prodcopy_marketing": f"{p}prodcopy_{p}marketing",
        "backup_shop": f"{p}backup_{p}shop",
        "test_short_sales": f"{p}test_short_{p}sales",
    }
    for logical, real in cases.items():
        assert ns.ds(logical) == real
        assert ns.ds(real) == real  # real names stay as they are
        assert ns.logical(real) == logical
    assert ns.tref("dev_sales.orders") == f"{p}dev_{p}sales.orders"
    assert ns.fq("sales.orders") == f"{sandbox.EMULATOR_SANDBOX_PROJECT}.{p}sales.orders"
    assert ns.logical("sales") is None and ns.logical(f"{RUN}bkpshop") is None  # not this namespace's
    assert sandbox.namespace("envsync-backup").logical(f"{RUN}bkpshop") == "shop"
    bucket = ns.bucket("envsync-demo-state")
    assert bucket.startswith(RUN + "-main-") and len(bucket) <= 63
    assert ns.bucket("other") != bucket


@pytest.mark.usefixtures("namespaced")
def test_sql_gets_its_datasets_mapped_once() -> None:
    ns = sandbox.namespace("envsync-demo")
    p, project = RUN + "main", sandbox.EMULATOR_SANDBOX_PROJECT
    sql = (
        f"create or replace view `{project}.marketing.v` as select * from `{project}.sales.orders` as o "
        "join sales.customers as c using (customer_id) join marketing.ad_spend as a on a.d = o.d "
        f"where o.x in (select x from envsync_audit.runs) and c.segment = 'sales.x'"
    )
    mapped = ns.sql(sql)
    assert f"`{project}.{p}marketing.v`" in mapped and f"`{project}.{p}sales.orders`" in mapped
    assert f"join {p}sales.customers as c" in mapped and f"join {p}marketing.ad_spend" in mapped
    assert f"from {p}envsync_audit.runs" in mapped
    assert "o.x" in mapped and "c.segment" in mapped and "a.d = o.d" in mapped
    assert ns.sql(mapped) == mapped
    assert ns.sql(f"select 1 from `{project}.dev_sales.t`") == f"select 1 from `{project}.{p}dev_{p}sales.t`"


@pytest.mark.usefixtures("namespaced")
def test_the_shipped_config_made_real_is_valid_and_names_the_same_datasets() -> None:
    ns = sandbox.namespace("envsync-demo")
    data = yaml.safe_load((REPO_ROOT / "config" / "envsync.yaml").read_text())
    data["environments"]["dev"]["keep"] = ["sales.keep_me", "scratch"]
    real = sandbox.real_config(data)
    assert data["project"] == "envsync-demo"  # the input is not changed
    config = parse_config(real, "real")
    assert config.project == sandbox.EMULATOR_SANDBOX_PROJECT
    assert config.prod.datasets == [ns.ds("sales"), ns.ds("marketing")]
    assert config.env_dataset("dev", ns.ds("sales")) == ns.ds("dev_sales")
    assert config.env_dataset("test", ns.ds("sales"), "short") == ns.ds("test_short_sales")
    assert config.env_dataset("drill", ns.ds("marketing")) == ns.ds("drill_marketing")
    assert set(config.tables) == {ns.tref("sales.orders_flat"), ns.tref("sales.audit_log")}
    assert config.audit.dataset == ns.ds("envsync_audit")
    assert config.state.bucket == ns.bucket("envsync-demo-state")
    assert config.environments.dev.keep == [ns.tref("sales.keep_me"), "scratch"]
    every = [config.audit.dataset, *config.prod.datasets, *config.env_prefixes().values()]
    assert all(name.startswith(RUN) for name in every)
    seeds = Path(config.seeds.dir)
    assert sorted(p.name for p in (seeds / ns.ds("sales")).glob("*.sql")) == sorted(
        p.name for p in (REPO_ROOT / "sql" / "seeds" / "sales").glob("*.sql")
    )


@pytest.mark.usefixtures("namespaced")
def test_sampled_and_exported_settings_are_made_real_too() -> None:
    ns = sandbox.namespace("envsync-reseed")
    data = {
        "project": "envsync-reseed",
        "prod": {"datasets": ["sales", "marketing"]},
        "state": {"bucket": "x-state"},
        "tables": {
            "sales.customers": {"source": "prod_sample", "sample": {"key": "customer_id", "modulo": 3}},
            "sales.orders": {"source": "prod_sample", "parent": {"table": "sales.customers", "column": "customer_id"}},
        },
        "backups": {"export": {"enabled": True, "bucket": "x-exports"}},
    }
    config = parse_config(sandbox.real_config(data), "real")
    assert config.tables[ns.tref("sales.orders")].parent.table == ns.tref("sales.customers")
    assert config.backups.export.bucket == ns.bucket("x-exports") != config.state.bucket
    with pytest.raises(KeyError, match="no test namespace for project 'envsync-other'"):
        sandbox.real_config({**data, "project": "envsync-other"})


def test_objects_of_the_run_family_are_refused_with_the_commands_to_delete_them() -> None:
    datasets = ["sales", "envsynctest", f"{RUN}mainsales", "envsynct202001010000abcdefmaindev_x"]
    buckets = [f"{RUN}-main-abcdef", "envsynct-other"]
    found = sandbox.foreign_objects(datasets, buckets)
    assert found == (["envsynct202001010000abcdefmaindev_x", f"{RUN}mainsales"], [f"{RUN}-main-abcdef"])
    message = sandbox.refusal("my-sandbox", *found)
    assert message.startswith("test-gcp: refusing to start on project 'my-sandbox'")
    assert f"  bq rm -r -f -d my-sandbox:{RUN}mainsales" in message
    assert f"  gcloud storage rm -r gs://{RUN}-main-abcdef" in message
    assert message.endswith("Nothing was created.")
