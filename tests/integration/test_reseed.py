"""reseed_environments and cleanup_test_environments through Airflow (dag.test) on the emulators.

The prod here is the demo prod (envsync.dev.demo) in its own project, so the seeds under sql/seeds fit it.
Assertions are on the environment tables: rows, schemas, checksums, labels, which datasets exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sandbox
from testkit import REPO_ROOT, UTC, create_demo_prod_in, states

pytestmark = pytest.mark.integration

NS = sandbox.namespace("envsync-reseed")  # logical names here; on a GCP sandbox they are run-prefixed
PROJECT = NS.project
BUCKET = NS.bucket("envsync-reseed-state")
ds, tref, fq = NS.ds, NS.tref, NS.fq
SALT = "test-salt-not-a-secret"
SEEDED = {"sales": ["customers", "orders", "orders_flat"], "marketing": ["campaigns", "sessions", "ad_spend"]}


def client():
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def rows(sql: str) -> list[dict[str, Any]]:
    return [dict(r) for r in client().query(NS.sql(sql), job_retry=None).result()]


def contents(table: str) -> list[str]:
    return sorted(r["j"] for r in rows(f"select to_json_string(t) as j from `{PROJECT}.{table}` as t"))


def seed_contents(dataset: str, table: str) -> list[str]:
    from envsync.environments.seeds import load_seed

    sql = load_seed(REPO_ROOT / "sql" / "seeds" / dataset / f"{table}.sql")
    return sorted(r["j"] for r in rows(f"select to_json_string(t) as j from ({sql}) as t"))


def schema(table: str) -> list[tuple[str, str, str]]:
    def flat(fields: Any, prefix: str = "") -> list[tuple[str, str, str]]:
        out = []
        for f in fields:
            kind = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}.get(
                f.field_type, f.field_type
            )
            out.append((prefix + f.name, kind, f.mode))
            out += flat(f.fields, prefix + f.name + ".")
        return out

    return flat(client().get_table(fq(table)).schema)


def datasets() -> dict[str, dict[str, str]]:
    return {name: dict(d.labels or {}) for d in client().list_datasets() if (name := NS.logical(d.dataset_id))}


def report() -> dict[str, Any]:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    return ManifestStore(storage_client(PROJECT), BUCKET).latest_report("reseed_environments")


@pytest.fixture(scope="module")
def demo_prod(emulators: Any) -> dict[str, Any]:
    return create_demo_prod_in(NS)


@pytest.fixture
def reseed_config(config_file: Any, demo_prod: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ENVSYNC_MASKING_SALT", SALT)

    def _make(**changes: Any) -> Path:
        base = {"project": NS.virtual_project, "state__bucket": "envsync-reseed-state", "tables": {}}
        return config_file(**{**base, **changes})

    return _make


@pytest.fixture
def clean_envs(demo_prod: Any) -> Iterator[None]:
    for name in datasets():
        if name.startswith(("qa_", "staging_", "test_", "dev_")):
            client().delete_dataset(fq(name), delete_contents=True, not_found_ok=True)
    yield


def snapshot() -> dict[str, list[str]]:
    out = {}
    for name in sorted(datasets()):
        if name.startswith(("qa_", "staging_")):
            for t in client().list_tables(fq(name)):
                if t.table_type == "TABLE":
                    out[f"{name}.{t.table_id}"] = contents(f"{name}.{t.table_id}")
    return out


# ---------------------------------------------------------------------------------------------


def test_reseed_gives_seed_rows_on_prod_schema_and_is_reproducible(
    clean_envs: None, run_dag: Any, reseed_config: Any
) -> None:
    cfg = reseed_config()
    dag_run = run_dag("reseed_environments", None, {}, config_path=cfg)
    assert str(dag_run.state) == "success", states(dag_run)

    for env in ("qa", "staging"):
        for dataset, tables in SEEDED.items():
            for table in tables:
                target = f"{env}_{dataset}.{table}"
                assert contents(target) == seed_contents(dataset, table), target
                assert schema(target) == schema(f"{dataset}.{table}"), target
        # a table without a seed exists, empty, with prod's schema
        assert rows(f"select count(*) as n from `{PROJECT}.{env}_sales.audit_log`")[0]["n"] == 0
        assert schema(f"{env}_sales.audit_log") == schema("sales.audit_log")
        # partitioning and clustering as in prod (CTAS with a column list keeps them on the emulator)
        orders = client().get_table(fq(f"{env}_sales.orders"))
        assert (orders.time_partitioning.type_, orders.time_partitioning.field) == ("DAY", "order_date")
        assert orders.clustering_fields == ["customer_id"]
        # the view reads the same environment, and resolves
        view = client().get_table(fq(f"{env}_marketing.campaign_revenue"))
        assert ds(f"{env}_sales") in view.view_query and ds(f"{env}_marketing") in view.view_query
        assert f"`{ds('sales')}." not in view.view_query and f"{fq('sales')}." not in view.view_query
        assert rows(f"select count(*) as n from `{PROJECT}.{env}_marketing.campaign_revenue`")[0]["n"] > 0

    first = report()
    labels = datasets()["qa_sales"]
    assert labels["envsync-env"] == "qa" and labels["envsync-seed-version"] == first["seed_version"]["version"]
    checksums = {r["target"]: r["checksum"] for r in first["results"] if r["checksum"] is not None}
    assert len(checksums) == 2 * (6 + 1)  # 6 seeded + audit_log, in qa and staging

    # a second reseed: identical checksums, same seed version
    again = run_dag("reseed_environments", None, {}, config_path=cfg)
    assert str(again.state) == "success", states(again)
    second = report()
    assert second["run_id"] != first["run_id"]
    assert second["seed_version"]["version"] == first["seed_version"]["version"]
    assert {r["target"]: r["checksum"] for r in second["results"] if r["checksum"] is not None} == checksums


def test_prod_column_rename_fails_the_contract_and_changes_nothing(
    clean_envs: None, run_dag: Any, reseed_config: Any
) -> None:
    cfg = reseed_config()
    assert str(run_dag("reseed_environments", None, {}, config_path=cfg).state) == "success"
    before_sets, before = datasets(), snapshot()
    client().query(
        NS.sql(f"alter table `{PROJECT}.sales.customers` rename column country to customer_country"), job_retry=None
    ).result()
    try:
        failed = run_dag("reseed_environments", None, {}, config_path=cfg)
        assert str(failed.state) == "failed"
        st = states(failed)
        assert st["plan[-1]"] == "failed", st
        assert not any(v == "success" for k, v in st.items() if k.startswith("reseed")), st
        from envsync.bigquery.discovery import discover_dataset
        from envsync.bigquery.jobs import JobRunner, JobStats
        from envsync.core.config import load_config
        from envsync.core.guard import GuardedBigQuery, WriteGuard
        from envsync.environments.reseed import Reseeder

        config = load_config(cfg)
        runner = JobRunner(
            GuardedBigQuery(client(), WriteGuard.from_config(config), "US"),
            dag_id="t",
            run_id="contract",
            task_id="t",
            timeout=60,
        )
        reseeder = Reseeder(config, runner, dt.datetime.now(UTC))
        info = discover_dataset(client(), PROJECT, ds("sales"))
        problems = reseeder.check_contract(info, reseeder.sources(info), JobStats())
        assert any(tref("sales.customers") in p and "column country " in p for p in problems), problems
        assert any("customer_country" in p for p in problems), problems
        assert datasets() == before_sets and snapshot() == before
    finally:
        client().query(
            NS.sql(f"alter table `{PROJECT}.sales.customers` rename column customer_country to country"), job_retry=None
        ).result()


def test_prod_sample_is_masked_and_children_follow_parents(clean_envs: None, run_dag: Any, reseed_config: Any) -> None:
    cfg = reseed_config(
        tables={
            "sales.customers": {
                "source": "prod_sample",
                "sample": {"key": "customer_id", "modulo": 3},
                "mask": {"name": "fake", "country": {"fixed": "ZZ"}},
            },
            "sales.orders": {
                "source": "prod_sample",
                "parent": {"table": "sales.customers", "column": "customer_id"},
                "mask": {"status": "hash"},
            },
        }
    )
    dag_run = run_dag("reseed_environments", None, {"environments": ["qa"], "datasets": [ds("sales")]}, config_path=cfg)
    assert str(dag_run.state) == "success", states(dag_run)
    prod_names = {r["name"] for r in rows(f"select name from `{PROJECT}.sales.customers`")}
    prod_countries = {r["country"] for r in rows(f"select country from `{PROJECT}.sales.customers`")}
    prod_status = {r["status"] for r in rows(f"select status from `{PROJECT}.sales.orders`")}
    sampled = rows(f"select customer_id, name, country from `{PROJECT}.qa_sales.customers`")
    total = rows(f"select count(*) as n from `{PROJECT}.sales.customers`")[0]["n"]
    assert 0 < len(sampled) < total
    assert not ({r["name"] for r in sampled} & prod_names)  # every row, no original value
    assert {r["country"] for r in sampled} == {"ZZ"} and "ZZ" not in prod_countries
    children = rows(f"select customer_id, status from `{PROJECT}.qa_sales.orders`")
    assert children and {r["customer_id"] for r in children} <= {r["customer_id"] for r in sampled}
    assert not ({r["status"] for r in children} & prod_status)
    # every prod order of a sampled customer is there (the sample is by key, not by row)
    expected = rows(
        f"select count(*) as n from `{PROJECT}.sales.orders` where customer_id in "
        f"(select customer_id from `{PROJECT}.qa_sales.customers`)"
    )[0]["n"]
    assert len(children) == expected
    # same config, same prod: the sample is deterministic
    first = contents("qa_sales.customers")
    assert (
        str(
            run_dag(
                "reseed_environments", None, {"environments": ["qa"], "datasets": [ds("sales")]}, config_path=cfg
            ).state
        )
        == "success"
    )
    assert contents("qa_sales.customers") == first


def test_test_environment_expires_and_cleanup_removes_only_expired(
    clean_envs: None, run_dag: Any, reseed_config: Any
) -> None:
    cfg = reseed_config()
    assert str(run_dag("reseed_environments", None, {"datasets": [ds("sales")]}, config_path=cfg).state) == "success"
    client().create_dataset(fq("dev_sales"), exists_ok=True)
    short = run_dag(
        "reseed_environments", None, {"test_env": "short", "ttl_days": 1, "datasets": [ds("sales")]}, config_path=cfg
    )
    assert str(short.state) == "success", states(short)
    long = run_dag(
        "reseed_environments", None, {"test_env": "long", "ttl_days": 20, "datasets": [ds("sales")]}, config_path=cfg
    )
    assert str(long.state) == "success", states(long)
    labels = datasets()
    expires = dt.datetime.fromtimestamp(int(labels["test_short_sales"]["envsync-expires"]), UTC)
    assert dt.timedelta(hours=23) < expires - dt.datetime.now(UTC) <= dt.timedelta(days=1)
    assert labels["test_short_sales"]["envsync-env"] == "test"
    short_ds = client().get_dataset(fq("test_short_sales"))
    assert 0 < short_ds.default_table_expiration_ms <= 86_400_000
    assert contents("test_short_sales.customers") == seed_contents("sales", "customers")

    # a cleanup before expiry removes nothing; two days later only the expired environment goes
    now = dt.datetime.now(UTC)
    assert str(run_dag("cleanup_test_environments", now, config_path=cfg).state) == "success"
    assert {"test_short_sales", "test_long_sales"} <= set(datasets())
    later = run_dag("cleanup_test_environments", now + dt.timedelta(days=2), config_path=cfg)
    assert str(later.state) == "success", states(later)
    remaining = set(datasets())
    assert "test_short_sales" not in remaining
    assert {"test_long_sales", "qa_sales", "staging_sales", "dev_sales", "sales", "marketing"} <= remaining


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"environments": ["prod"]}, "environments"),
        ({"environments": ["qa", "dev"]}, "environments"),
        ({"test_env": "Bad_Name"}, "test_env"),
        ({"test_env": "x; drop"}, "test_env"),
        ({"test_env": "ok", "ttl_days": 0}, "ttl_days"),
        ({"test_env": "ok", "ttl_days": 400}, "ttl_days"),
    ],
)
def test_bad_params_are_rejected_before_any_bigquery_call(conf: dict[str, Any], message: str) -> None:
    import copy

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException, ParamValidationError

    from envsync.operators.reseed import PlanReseedOperator

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags["reseed_environments"]
    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError):  # the trigger form / REST API refuse it
        for key, value in conf.items():
            params[key] = value
        params.validate()

    # and the task refuses it too (a conf that bypassed the form), before building any client
    values = {"environments": None, "datasets": None, "test_env": None, "ttl_days": None, **conf}
    op = PlanReseedOperator(task_id="plan_check", **values)
    with (
        mock.patch("envsync.core.clients.bigquery_client") as bq,
        mock.patch("envsync.core.clients.storage_client") as gcs,
    ):
        with pytest.raises(AirflowFailException, match=message):
            op.execute({"dag": dag, "run_id": "r"})
        bq.assert_not_called()
        gcs.assert_not_called()
