"""Parity without BigQuery: the comparison of an environment dataset with prod, what a pending
migration explains, freshness from the audit rows, the Slack payload and the audit-only guard."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from envsync.bigquery.discovery import DatasetInfo, TableInfo
from envsync.core.config import EnvsyncConfig, parse_config
from envsync.core.guard import ProdWriteRefused, WriteGuard, WriteTarget
from envsync.environments.parity import (
    DRIFT,
    EXPECTED,
    OK,
    UNKNOWN,
    Expectations,
    Finding,
    ParityResult,
    Refresh,
    compare_dataset,
    findings_table,
    freshness,
    refresh_failures,
    refreshes,
)
from envsync.migrations.ledger import load_migrations
from envsync.observe.alerts import parity_message
from envsync.operators.params import check_environments_param

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def config() -> EnvsyncConfig:
    return parse_config(
        {
            "project": "envsync-demo",
            "prod": {"datasets": ["sales"]},
            "state": {"bucket": "envsync-demo-state"},
            "environments": {"dev": {"keep": ["scratch"]}},
            "tables": {"sales.audit_log": {"exclude": True}},
        }
    )


def col(name: str, kind: str = "STRING", mode: str = "NULLABLE", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "mode": mode, **extra}


def orders(dataset: str = "sales", **changes: Any) -> TableInfo:
    values: dict[str, Any] = dict(
        dataset=dataset,
        table="orders",
        kind="TABLE",
        schema=[
            col("order_id", "INTEGER", "REQUIRED"),
            col("order_date", "DATE"),
            col("shipping", "RECORD", fields=[col("city"), col("country")]),
            col("email", policyTags={"names": ["projects/p/locations/us/taxonomies/1/policyTags/2"]}),
        ],
        partitioning={"type": "DAY", "field": "order_date"},
        clustering=["order_id"],
        description="one order per day",
        require_partition_filter=True,
    )
    values.update(changes)
    return TableInfo(**values)


def prod() -> DatasetInfo:
    return DatasetInfo(
        "sales",
        "US",
        None,
        {},
        [
            orders(),
            TableInfo("sales", "customers", "TABLE", schema=[col("customer_id", "INT64"), col("segment")]),
            TableInfo("sales", "audit_log", "TABLE", schema=[col("id", "INT64")]),
            TableInfo("sales", "daily", "MATERIALIZED_VIEW"),
            TableInfo("sales", "recent", "VIEW", schema=[col("order_id", "INT64")], view_query="select 1"),
        ],
    )


def env_of(tables: list[TableInfo], dataset: str = "dev_sales") -> DatasetInfo:
    return DatasetInfo(dataset, "US", None, {}, tables)


def same_as_prod(dataset: str = "dev_sales") -> list[TableInfo]:
    return [
        orders(dataset),
        TableInfo(dataset, "customers", "TABLE", schema=[col("customer_id", "INT64"), col("segment")]),
        TableInfo(dataset, "recent", "VIEW", schema=[col("order_id", "INT64")]),
    ]


def by_status(findings: list[Finding], status: str) -> list[tuple[str, str]]:
    return sorted((f.finding, f.object_name) for f in findings if f.status == status)


def test_an_environment_like_prod_has_no_drift_and_lists_what_is_expected_by_design(config: EnvsyncConfig) -> None:
    found = compare_dataset("dev", "dev", prod(), env_of(same_as_prod()), "dev_sales", Expectations.of(config, "dev"))

    assert by_status(found, DRIFT) == []
    assert by_status(found, EXPECTED) == [("missing_object", "sales.audit_log"), ("missing_object", "sales.daily")]
    assert "exclude: true in the config" in next(f.detail for f in found if f.object_name == "sales.audit_log")


def test_each_kind_of_difference_is_found_and_named(config: EnvsyncConfig) -> None:
    changed = orders(
        "dev_sales",
        schema=[
            col("order_id", "STRING", "REQUIRED"),  # type change
            col("shipping", "RECORD", fields=[col("city")]),  # nested field dropped
            col("email"),  # policy tag lost
            col("note", description="added by hand"),  # extra column
        ],
        partitioning=None,
        clustering=None,
        description=None,
        require_partition_filter=False,
    )
    env = env_of(
        [
            changed,
            TableInfo("dev_sales", "recent", "TABLE"),
            TableInfo("dev_sales", "orders_old", "TABLE"),
            TableInfo("dev_sales", "scratch", "TABLE"),
        ]
    )

    found = compare_dataset("dev", "dev", prod(), env, "dev_sales", Expectations.of(config, "dev"))

    assert by_status(found, DRIFT) == [
        ("clustering", "sales.orders"),
        ("column_type", "sales.orders.order_id"),
        ("description", "sales.orders"),
        ("extra_column", "sales.orders.note"),
        ("extra_object", "sales.orders_old"),
        ("missing_column", "sales.orders.order_date"),
        ("missing_column", "sales.orders.shipping.country"),
        ("missing_object", "sales.customers"),
        ("object_kind", "sales.recent"),
        ("partitioning", "sales.orders"),
        ("policy_tags", "sales.orders.email"),
        ("require_partition_filter", "sales.orders"),
    ]
    assert ("extra_object", "sales.scratch") in by_status(found, EXPECTED)  # environments.dev.keep
    detail = {f.finding: f for f in found if f.object_name == "sales.orders.order_id"}["column_type"]
    assert (detail.prod_value, detail.env_value) == ("INT64", "STRING")
    assert detail.detail == "column order_id is STRING, prod has INT64"


def test_seeded_environments_do_not_set_require_partition_filter_by_design(config: EnvsyncConfig) -> None:
    tables = same_as_prod("qa_sales")
    tables[0] = orders("qa_sales", require_partition_filter=False)
    found = compare_dataset("qa", "qa", prod(), env_of(tables, "qa_sales"), "qa_sales", Expectations.of(config, "qa"))
    assert by_status(found, DRIFT) == []
    assert ("require_partition_filter", "sales.orders") in by_status(found, EXPECTED)


def test_a_missing_environment_dataset_is_drift(config: EnvsyncConfig) -> None:
    found = compare_dataset("qa", "qa", prod(), None, "qa_sales", Expectations.of(config, "qa"))
    assert [(f.finding, f.status, f.detail) for f in found] == [
        ("missing_dataset", DRIFT, "dataset qa_sales does not exist")
    ]


def test_differences_a_pending_migration_explains_are_expected_others_stay_drift(
    config: EnvsyncConfig, tmp_path: Path
) -> None:
    (tmp_path / "0001_email.sql").write_text(
        "-- envsync: phase=expand\nalter table sales.customers add column email string;\n"
        "create table sales.refunds (refund_id int64);\n"
    )
    (tmp_path / "0002_segment.sql").write_text(
        "-- envsync: phase=contract\nalter table sales.customers drop column segment;\n"
        "alter table sales.orders alter column order_id set data type numeric;\n"
    )
    migrations = load_migrations(config, tmp_path)
    tables = same_as_prod("qa_sales")
    tables[0] = orders(
        "qa_sales",
        require_partition_filter=False,
        schema=[col("order_id", "NUMERIC", "REQUIRED"), *orders().schema[1:]],
    )
    tables[1] = TableInfo(
        "qa_sales", "customers", "TABLE", schema=[col("customer_id", "INT64"), col("email"), col("phone")]
    )
    tables.append(TableInfo("qa_sales", "refunds", "TABLE", schema=[col("refund_id", "INT64")]))

    found = compare_dataset(
        "qa", "qa", prod(), env_of(tables, "qa_sales"), "qa_sales", Expectations.of(config, "qa", migrations)
    )

    assert by_status(found, DRIFT) == [("extra_column", "sales.customers.phone")]
    assert {
        ("extra_column", "sales.customers.email"),
        ("missing_column", "sales.customers.segment"),
        ("extra_object", "sales.refunds"),
        ("column_type", "sales.orders.order_id"),
    } <= set(by_status(found, EXPECTED))
    email = next(f for f in found if f.object_name == "sales.customers.email")
    assert "migration 1 is promoted to qa, not yet to prod" in email.detail
    # without the migrations the same environment is drift
    plain = compare_dataset("qa", "qa", prod(), env_of(tables, "qa_sales"), "qa_sales", Expectations.of(config, "qa"))
    assert len(by_status(plain, DRIFT)) == 5


def test_refreshes_take_the_newest_successful_run_per_dataset_and_the_newest_ok_action_per_table() -> None:
    t1, t2, t3 = (dt.datetime(2026, 11, d, 2, tzinfo=UTC) for d in (14, 21, 28))
    rows = [
        {
            "target": "dev_sales.orders",
            "action_status": "ok",
            "dag_id": "prod_to_dev_sync",
            "run_id": "a",
            "run_status": "success",
            "cut": t1,
            "window_start": None,
            "window_end": None,
        },
        {
            "target": "dev_sales.orders",
            "action_status": "ok",
            "dag_id": "prod_to_dev_sync",
            "run_id": "b",
            "run_status": "failed",
            "cut": t2,
        },
        {
            "target": "dev_sales.customers",
            "action_status": "failed",
            "dag_id": "prod_to_dev_sync",
            "run_id": "b",
            "run_status": "failed",
            "cut": t2,
        },
        {
            "target": "dev_sales.orders",
            "action_status": "planned",
            "dag_id": "prod_to_dev_sync",
            "run_id": "dry",
            "run_status": "success",
            "cut": t3,
        },
        {
            "target": "qa_sales.orders",
            "action_status": "ok",
            "dag_id": "reseed_environments",
            "run_id": "r",
            "run_status": "success",
            "cut": t3,
        },
    ]
    datasets, tables = refreshes(rows)
    assert {k: (v.run_id, v.cut) for k, v in datasets.items()} == {"dev_sales": ("a", t1), "qa_sales": ("r", t3)}
    assert {k: v.run_id for k, v in tables.items()} == {"dev_sales.orders": "b", "qa_sales.orders": "r"}


@pytest.mark.parametrize(
    ("kind", "days", "status", "finding"),
    [
        ("dev", 7.9, OK, "freshness"),
        ("dev", 8.1, DRIFT, "stale"),
        ("qa", 7.9, OK, "freshness"),
        ("staging", 8.5, DRIFT, "stale"),
        ("prodcopy", 40, OK, "freshness"),
    ],
)
def test_freshness_flags_dev_after_8_days_and_qa_staging_after_their_week_plus_a_day(
    kind: str, days: float, status: str, finding: str
) -> None:
    cut = NOW - dt.timedelta(days=days)
    item = freshness(kind, kind, "sales", f"{kind}_sales", Refresh("d", "r", cut), NOW)
    assert (item.finding, item.status, item.refreshed_cut) == (finding, status, cut)
    assert item.age_hours == round(days * 24, 1)


def test_no_refresh_at_all_is_stale_for_dev_and_unknown_for_prodcopy() -> None:
    assert freshness("dev", "dev", "sales", "dev_sales", None, NOW).status == DRIFT
    assert freshness("prodcopy", "prodcopy", "sales", "prodcopy_sales", None, NOW).status == UNKNOWN


def test_only_structural_drift_of_what_the_run_wrote_fails_a_refresh_run() -> None:
    def f(finding: str, status: str = DRIFT, name: str = "sales.t.c", env: str = "dev") -> Finding:
        return Finding(env, "sales", f"{env}_sales", name, finding, status, finding)

    result = ParityResult(
        NOW,
        ["dev"],
        ["sales"],
        [
            f("description"),
            f("stale"),
            f("rows"),
            f("policy_tags"),
            f("extra_column", EXPECTED),
            f("column_type"),
            f("missing_object", name="sales.other"),
            f("column_type", env="prodcopy"),
        ],
    )
    assert [x.finding for x in refresh_failures(result, ["dev_sales.t", "prodcopy_sales.t"])] == ["column_type"]
    assert refresh_failures(result, ["dev_sales.u"]) == []
    assert result.summary()["top_drift"][:3] == [
        "dev missing_object sales.other: missing_object",
        "dev column_type sales.t.c: column_type",
        "prodcopy column_type sales.t.c: column_type",
    ]
    assert "drift" in findings_table(result.findings).splitlines()[2]


def test_the_slack_payload_names_environments_top_findings_and_the_count() -> None:
    findings = [
        Finding("dev", "sales", "dev_sales", f"sales.t{i}", "missing_object", DRIFT, f"table sales.t{i} is missing")
        for i in range(12)
    ] + [Finding("qa", "sales", "qa_sales", "sales.c.email", "extra_column", EXPECTED, "x")]
    summary = ParityResult(NOW, ["dev", "qa"], ["sales"], findings).summary()
    message = parity_message(
        dag_id="parity", run_id="scheduled__1", summary=summary, url="http://af/dags/parity/runs/1"
    )
    lines = message["text"].splitlines()
    assert (
        lines[0]
        == ":warning: envsync *parity*: 12 unexpected difference(s) from prod on *dev* (sales), checked by parity"
    )
    assert lines[1] == "dev: 12 drift, 0 expected | qa: 0 drift, 1 expected"
    assert lines[2] == "• dev missing_object sales.t0: table sales.t0 is missing"
    assert len([line for line in lines if line.startswith("• ")]) == 10
    assert "... and 2 more" in lines[-2]
    assert lines[-1] == "<http://af/dags/parity/runs/1|Open run scheduled__1 in Airflow>"
    assert message["blocks"][0]["text"]["text"] == message["text"]


def test_the_environments_param_is_checked_naming_the_bad_value() -> None:
    assert check_environments_param(None) == ["dev", "qa", "staging", "prodcopy", "test"]
    assert check_environments_param(["qa", "qa"]) == ["qa"]
    with pytest.raises(ValueError, match=r"\['prod'\] are not environments parity checks; allowed"):
        check_environments_param(["prod"])


def test_the_audit_only_guard_refuses_every_environment_and_prod() -> None:
    guard = WriteGuard("envsync-demo", ["sales"], ["dev_", "qa_"], allowed_datasets=["envsync_audit"])
    audit = guard.audit_only("envsync_audit")
    audit.check(WriteTarget("envsync-demo", "envsync_audit", "parity"), "insert into")
    for dataset in ("dev_sales", "qa_sales", "sales"):
        with pytest.raises(ProdWriteRefused, match="refused to write"):
            audit.check(WriteTarget("envsync-demo", dataset, "orders"), "write")


def test_a_refresh_run_checks_the_environments_its_manifest_names() -> None:
    from envsync.operators.parity import refreshed_environments

    assert refreshed_environments("prod_to_dev_sync", {"params": {"datasets": ["sales"]}}) == [("dev", None)]
    assert refreshed_environments("prod_copy", {"env": "prodcopy", "params": {}}) == [("prodcopy", None)]
    assert refreshed_environments("reseed_environments", {"params": {"environments": ["qa", "staging"]}}) == [
        ("qa", None),
        ("staging", None),
    ]
    assert refreshed_environments("reseed_environments", {"params": {"environments": ["qa"], "test_env": "alice"}}) == [
        ("test", "alice")
    ]
    assert refreshed_environments("promote_schema", {"env": "staging", "params": {"target": "staging"}}) == [
        ("staging", None)
    ]
    # prod is the reference: a promotion to prod checks the environments that took the migrations first
    assert refreshed_environments("promote_schema", {"env": "prod", "params": {"target": "prod"}}) == [
        ("qa", None),
        ("staging", None),
    ]


def test_the_run_report_summary_counts_per_environment() -> None:
    from envsync.observe.report import parity_summary_text

    findings = [
        Finding("dev", "sales", "dev_sales", "sales.t", "missing_object", DRIFT, "table sales.t is missing"),
        Finding("dev", "sales", "dev_sales", "sales.t", "rows", UNKNOWN, "past time travel"),
        Finding("qa", "sales", "qa_sales", "sales", "freshness", OK, "fresh"),
    ]
    text = parity_summary_text(ParityResult(NOW, ["dev", "qa"], ["sales"], findings).summary())
    assert text.splitlines() == [
        "parity with prod (sales): 1 unexpected difference(s); dev: 1 drift, 0 expected, 1 not checked; "
        "qa: 0 drift, 0 expected, 0 not checked",
        "  dev missing_object sales.t: table sales.t is missing",
    ]
