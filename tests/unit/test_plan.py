"""The dev-sync planner (envsync.sync.plan): prod metadata in, per-table actions out. Pure, no BigQuery."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from envsync.bigquery.actions import Action
from envsync.bigquery.discovery import DatasetInfo, TableInfo
from envsync.core.config import EnvsyncConfig, parse_config
from envsync.sync.plan import (
    MIN_BYTES_BILLED_PER_TABLE,
    STAGE_SUFFIX,
    DatasetPlan,
    PlanError,
    check_table_filter,
    order_views,
    plan_dataset,
)

PROJECT = "envsync-demo"
GB = 1024**3


def make_config(tables: dict[str, Any] | None = None, keep: list[str] | None = None) -> EnvsyncConfig:
    return parse_config(
        {
            "project": PROJECT,
            "prod": {"datasets": ["sales", "marketing"]},
            "environments": {"dev": {"prefix": "dev_", "window_quarters": 2, "keep": keep or []}},
            "tables": tables or {},
            "state": {"bucket": "envsync-test-state"},
        }
    )


def col(name: str, kind: str, mode: str = "NULLABLE", fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": kind, "mode": mode}
    if fields:
        out["fields"] = fields
    return out


def table(name: str, *schema: dict[str, Any], dataset: str = "sales", kind: str = "TABLE", **kw: Any) -> TableInfo:
    return TableInfo(dataset=dataset, table=name, kind=kind, schema=list(schema), **kw)


def view(name: str, sql: str, dataset: str = "sales") -> TableInfo:
    return TableInfo(dataset=dataset, table=name, kind="VIEW", view_query=sql)


def dataset(*tables: TableInfo, name: str = "sales") -> DatasetInfo:
    return DatasetInfo(
        dataset=name, location="US", description="prod " + name, labels={"team": "x"}, tables=list(tables)
    )


def plan(config: EnvsyncConfig, *tables: TableInfo, existing: list[str] | None = None, **kw: Any) -> DatasetPlan:
    return plan_dataset(config, dataset(*tables), existing=existing, **kw)


def only(p: DatasetPlan, name: str) -> Action:
    found = [a for a in p.actions if a.table == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def datasets_read(sql: str) -> set[str]:
    return {t.db for t in sqlglot.parse_one(sql, read="bigquery").find_all(exp.Table) if t.db}


# ------------------------------------------------------------------------- tables


def test_day_partitioned_on_a_date_column_is_cloned_and_trimmed() -> None:
    t = table(
        "orders", col("id", "INTEGER"), col("order_date", "DATE"), partitioning={"type": "DAY", "field": "order_date"}
    )
    a = only(plan(make_config(), t), "orders")
    assert (a.action, a.date_column, a.column_type, a.granularity) == ("clone_window", "order_date", "DATE", "DAY")
    assert a.target_dataset == "dev_sales"
    assert a.key == "sales.orders"


def test_month_partitioned_timestamp_uses_month_granularity() -> None:
    t = table("events", col("id", "INTEGER"), col("ts", "TIMESTAMP"), partitioning={"type": "MONTH", "field": "ts"})
    a = only(plan(make_config(), t), "events")
    assert (a.action, a.date_column, a.column_type, a.granularity) == ("clone_window", "ts", "TIMESTAMP", "MONTH")


def test_ingestion_time_partitioned_is_windowed_on_partitiontime() -> None:
    t = table("raw", col("payload", "STRING"), col("d", "DATE"), partitioning={"type": "DAY", "field": None})
    a = only(plan(make_config(), t), "raw")
    assert (a.action, a.date_column, a.column_type, a.granularity) == (
        "clone_window",
        "_PARTITIONTIME",
        "TIMESTAMP",
        "DAY",
    )


def test_unpartitioned_with_exactly_one_date_column_is_ctas_windowed() -> None:
    t = table("flat", col("id", "INTEGER"), col("created", "DATETIME"), col("name", "STRING"))
    a = only(plan(make_config(), t), "flat")
    assert (a.action, a.date_column, a.column_type, a.granularity) == ("ctas_window", "created", "DATETIME", "DAY")


def test_two_date_columns_are_copied_whole_with_a_hint() -> None:
    t = table("two", col("created_at", "TIMESTAMP"), col("shipped_on", "DATE"))
    a = only(plan(make_config(), t), "two")
    assert a.action == "full_clone"
    assert a.date_column is None
    assert "tables.sales.two.date_column" in a.reason
    assert "created_at" in a.reason and "shipped_on" in a.reason


def test_two_date_columns_with_a_configured_date_column() -> None:
    config = make_config({"sales.two": {"date_column": "shipped_on"}})
    t = table("two", col("created_at", "TIMESTAMP"), col("shipped_on", "DATE"))
    a = only(plan(config, t), "two")
    assert (a.action, a.date_column, a.column_type) == ("ctas_window", "shipped_on", "DATE")


def test_configured_date_column_that_is_the_partition_column_is_cloned() -> None:
    config = make_config({"sales.orders": {"date_column": "order_date"}})
    t = table(
        "orders",
        col("order_date", "DATE"),
        col("ts", "TIMESTAMP"),
        partitioning={"type": "MONTH", "field": "order_date"},
    )
    a = only(plan(config, t), "orders")
    assert (a.action, a.date_column, a.granularity) == ("clone_window", "order_date", "MONTH")


def test_no_date_column_is_copied_whole() -> None:
    t = table("dim", col("id", "INTEGER"), col("name", "STRING"))
    a = only(plan(make_config(), t), "dim")
    assert a.action == "full_clone"
    assert a.date_column is None and a.column_type is None
    assert "no date column" in a.reason


def test_a_repeated_date_column_is_not_a_date_column() -> None:
    t = table("tags", col("id", "INTEGER"), col("days", "DATE", "REPEATED"))
    assert only(plan(make_config(), t), "tags").action == "full_clone"
    t2 = table("tags2", col("days", "DATE", "REPEATED"), col("created", "TIMESTAMP"))
    a = only(plan(make_config(), t2), "tags2")
    assert (a.action, a.date_column) == ("ctas_window", "created")


def test_a_nested_date_field_is_not_a_date_column() -> None:
    t = table("nested", col("id", "INTEGER"), col("meta", "RECORD", fields=[col("at", "TIMESTAMP")]))
    assert only(plan(make_config(), t), "nested").action == "full_clone"


def test_strategy_full_clone_overrides_partitioning() -> None:
    config = make_config({"sales.orders": {"strategy": "full_clone"}})
    t = table("orders", col("order_date", "DATE"), partitioning={"type": "DAY", "field": "order_date"})
    a = only(plan(config, t), "orders")
    assert a.action == "full_clone"
    assert "strategy full_clone" in a.reason


def test_strategy_ctas_window_on_a_partitioned_table() -> None:
    config = make_config({"sales.orders": {"strategy": "ctas_window"}})
    t = table("orders", col("order_date", "DATE"), partitioning={"type": "DAY", "field": "order_date"})
    a = only(plan(config, t), "orders")
    assert (a.action, a.date_column) == ("ctas_window", "order_date")


def test_strategy_clone_window_on_an_unpartitioned_table_is_a_plan_error() -> None:
    config = make_config({"sales.flat": {"strategy": "clone_window"}})
    with pytest.raises(PlanError, match="tables.sales.flat"):
        plan(config, table("flat", col("d", "DATE")))


def test_date_column_naming_a_missing_column() -> None:
    config = make_config({"sales.orders": {"date_column": "nope"}})
    with pytest.raises(PlanError) as info:
        plan(config, table("orders", col("id", "INTEGER"), col("d", "DATE")))
    message = str(info.value)
    assert "tables.sales.orders.date_column" in message
    assert "'nope'" in message and "does not exist" in message


def test_date_column_naming_a_string_column() -> None:
    config = make_config({"sales.orders": {"date_column": "label"}})
    with pytest.raises(PlanError) as info:
        plan(config, table("orders", col("label", "STRING"), col("d", "DATE")))
    message = str(info.value)
    assert "tables.sales.orders.date_column" in message
    assert "'label'" in message and "STRING" in message


def test_date_column_naming_a_repeated_date_column() -> None:
    config = make_config({"sales.orders": {"date_column": "days"}})
    with pytest.raises(PlanError, match="'days'"):
        plan(config, table("orders", col("days", "DATE", "REPEATED")))


# ------------------------------------------------------------------------- exclude, drop, keep


def test_excluded_table_is_not_planned_and_is_dropped_from_dev() -> None:
    config = make_config({"sales.audit_log": {"exclude": True}})
    p = plan(
        config,
        table("orders", col("id", "INTEGER")),
        table("audit_log", col("d", "DATE")),
        existing=["orders", "audit_log"],
    )
    assert p.excluded == ["audit_log"]
    assert [(a.table, a.action) for a in p.actions] == [("orders", "full_clone"), ("audit_log", "drop")]
    assert only(p, "audit_log").reason == "excluded in config"


def test_excluded_table_absent_from_dev_is_only_listed() -> None:
    config = make_config({"sales.audit_log": {"exclude": True}})
    p = plan(config, table("audit_log", col("d", "DATE")), existing=[])
    assert p.excluded == ["audit_log"]
    assert p.actions == []


def test_dev_only_objects_are_dropped_except_kept_ones() -> None:
    config = make_config(keep=["scratch", "sales.notes", "marketing.sandbox"])
    p = plan(
        config, table("orders", col("id", "INTEGER")), existing=["orders", "old_table", "scratch", "notes", "sandbox"]
    )
    drops = {a.table: a for a in p.actions if a.action == "drop"}
    # marketing.sandbox is kept in marketing only, so sales' dev-only "sandbox" is dropped
    assert set(drops) == {"old_table", "sandbox"}
    assert drops["old_table"].reason == "exists only in dev"
    assert drops["old_table"].target_dataset == "dev_sales"
    assert drops["old_table"].est_jobs == 1


def test_leftover_staging_table_is_dropped_with_the_staging_reason() -> None:
    p = plan(make_config(), table("orders", col("id", "INTEGER")), existing=["orders", "orders" + STAGE_SUFFIX])
    a = only(p, "orders" + STAGE_SUFFIX)
    assert a.action == "drop"
    assert "staging" in a.reason


def test_a_table_filter_never_drops() -> None:
    p = plan(
        make_config(),
        table("orders", col("id", "INTEGER")),
        table("items", col("id", "INTEGER")),
        existing=["orders", "old_table"],
        tables_filter=["orders"],
    )
    assert [(a.table, a.action) for a in p.actions] == [("orders", "full_clone")]


def test_table_filter_accepts_dataset_qualified_names() -> None:
    tables = [table("orders", col("id", "INTEGER")), table("items", col("id", "INTEGER"))]
    assert [a.table for a in plan(make_config(), *tables, existing=None, tables_filter=["sales.items"]).actions] == [
        "items"
    ]
    assert plan(make_config(), *tables, existing=None, tables_filter=["marketing.items"]).actions == []


def test_missing_dev_dataset_plans_no_drops() -> None:
    p = plan(make_config(), table("orders", col("id", "INTEGER")), existing=None)
    assert [a.action for a in p.actions] == ["full_clone"]


def test_check_table_filter_names_unknown_tables() -> None:
    infos = [dataset(table("orders"), table("items")), dataset(table("leads", dataset="marketing"), name="marketing")]
    check_table_filter(["orders", "sales.items", "marketing.leads", "leads"], infos)
    check_table_filter([], infos)
    with pytest.raises(PlanError) as info:
        check_table_filter(["orders", "sales.nope", "zzz", "marketing.orders"], infos)
    message = str(info.value)
    assert "['sales.nope', 'zzz', 'marketing.orders']" in message
    assert "sales.orders" in message  # lists the known tables


# ------------------------------------------------------------------------- views and other kinds


def test_view_is_rewritten_to_dev_datasets() -> None:
    sql = (
        "select o.id, c.name from `envsync-demo.sales.orders` as o "
        "join marketing.campaigns as c on o.campaign_id = c.id"
    )
    a = only(plan(make_config(), view("v_orders", sql)), "v_orders")
    assert a.action == "view"
    assert a.target_dataset == "dev_sales"
    assert a.view_sql is not None
    assert datasets_read(a.view_sql) == {"dev_sales", "dev_marketing"}
    assert a.est_bytes_billed == 0


def test_view_depends_on_everything_it_reads_in_dev() -> None:
    p = plan(
        make_config(),
        view("base", "select * from sales.orders"),
        view("top", "select * from `envsync-demo.sales.base` join sales.orders using (id)"),
        view("other", "select * from marketing.base"),
        table("orders", col("id", "INTEGER")),
    )
    assert only(p, "top").depends_on == ["dev_sales.base", "dev_sales.orders"]
    assert only(p, "base").depends_on == ["dev_sales.orders"]
    assert only(p, "other").depends_on == ["dev_marketing.base"]  # ordered across datasets too
    assert [v.table for v in order_views(p.by_action("view"))].index("base") < [
        v.table for v in order_views(p.by_action("view"))
    ].index("top")


def _view_action(name: str, *deps: str, dataset: str = "sales") -> Action:
    return Action(
        dataset=dataset,
        table=name,
        target_dataset=f"dev_{dataset}",
        action="view",
        reason="",
        depends_on=[d if "." in d else f"dev_{dataset}.{d}" for d in deps],
    )


def test_order_views_puts_dependencies_first() -> None:
    views = [
        _view_action("a_top", "m_mid"),
        _view_action("m_mid", "z_base"),
        _view_action("z_base"),
        _view_action("b_free"),
        _view_action("c_outside", "not_a_view"),
    ]
    ordered = [v.table for v in order_views(views)]
    assert sorted(ordered) == sorted(v.table for v in views)
    assert ordered.index("z_base") < ordered.index("m_mid") < ordered.index("a_top")


def test_order_views_raises_on_a_cycle() -> None:
    with pytest.raises(PlanError, match="cycle") as info:
        order_views([_view_action("a", "b"), _view_action("b", "c"), _view_action("c", "a")])
    assert "dev_sales.a -> dev_sales.b -> dev_sales.c -> dev_sales.a" in str(info.value)


def test_order_views_orders_across_datasets() -> None:
    # a marketing view reading a sales view is created after it, whatever the names
    views = [_view_action("a_report", "dev_sales.z_base", dataset="marketing"), _view_action("z_base")]
    assert [v.key for v in order_views(views)] == ["sales.z_base", "marketing.a_report"]


@pytest.mark.parametrize("kind", ["MATERIALIZED_VIEW", "EXTERNAL", "SNAPSHOT"])
def test_objects_envsync_does_not_copy_are_skipped(kind: str) -> None:
    a = only(plan(make_config(), table("obj", col("d", "DATE"), kind=kind)), "obj")
    assert a.action == "skip"
    assert kind.lower() in a.reason


def test_skipped_prod_objects_existing_in_dev_are_not_dropped() -> None:
    p = plan(make_config(), table("mv", kind="MATERIALIZED_VIEW"), existing=["mv"])
    assert [a.action for a in p.actions] == ["skip"]


# ------------------------------------------------------------------------- estimates


def test_ctas_window_bills_at_least_the_table_bytes() -> None:
    t = table("flat", col("id", "INTEGER"), col("d", "DATE"), num_rows=10_000_000, num_bytes=5 * GB)
    a = only(plan(make_config(), t), "flat")
    assert a.action == "ctas_window"
    assert a.est_bytes_billed >= 5 * GB
    assert a.est_jobs >= 2
    assert a.source_rows == 10_000_000


@pytest.mark.parametrize(
    "t",
    [
        table(
            "part",
            col("d", "DATE"),
            partitioning={"type": "DAY", "field": "d"},
            num_rows=50_000_000,
            num_bytes=200 * GB,
        ),
        table("whole", col("id", "INTEGER"), num_rows=50_000_000, num_bytes=200 * GB),
    ],
    ids=["clone_window", "full_clone"],
)
def test_clone_actions_bill_only_verification(t: TableInfo) -> None:
    a = only(plan(make_config(), t), t.table)
    assert a.action in ("clone_window", "full_clone")
    assert a.est_bytes_billed >= 2 * MIN_BYTES_BILLED_PER_TABLE == 20 * 1024 * 1024
    assert a.est_bytes_billed < t.num_bytes


def test_small_clone_bills_the_minimum_twice() -> None:
    a = only(plan(make_config(), table("tiny", col("id", "INTEGER"), num_rows=3, num_bytes=100)), "tiny")
    assert a.est_bytes_billed == 2 * MIN_BYTES_BILLED_PER_TABLE


def test_clone_window_estimate_shrinks_with_the_window_fraction() -> None:
    t = table(
        "part", col("d", "DATE"), partitioning={"type": "DAY", "field": "d"}, num_rows=100_000_000, num_bytes=400 * GB
    )
    whole = only(plan(make_config(), t, window_fraction=1.0), "part").est_bytes_billed
    part = only(plan(make_config(), t, window_fraction=0.25), "part").est_bytes_billed
    assert part < whole


# ------------------------------------------------------------------------- the plan as a manifest


def test_plan_round_trips_through_json() -> None:
    config = make_config({"sales.audit_log": {"exclude": True}})
    p = plan(
        config,
        table("orders", col("d", "DATE"), partitioning={"type": "DAY", "field": "d"}, num_rows=5),
        view("v", "select * from sales.orders"),
        table("audit_log"),
        existing=["old"],
    )
    again = DatasetPlan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    assert again.tables["orders"].partitioning == {"type": "DAY", "field": "d"}
    assert [a.action for a in again.by_action("clone_window", "drop")] == ["clone_window", "drop"]


# ------------------------------------------------------------- row access policies and CMEK
# https://cloud.google.com/bigquery/docs/using-row-level-security-with-features ("Copy jobs": the
# source's row access policies are copied to the destination; a query result carries none)


def test_row_access_policies_are_reported_and_travel_with_clones() -> None:
    p = plan(
        make_config(),
        table(
            "orders",
            col("order_date", "DATE"),
            partitioning={"type": "DAY", "field": "order_date"},
            row_access_policies=["eu_only", "sales_team"],
        ),
        table("customers", col("id", "INT64"), row_access_policies=["eu_only"]),
        table("plain", col("id", "INT64")),
    )
    orders, customers, plain = only(p, "orders"), only(p, "customers"), only(p, "plain")
    assert orders.action == "clone_window" and orders.row_access_policies == ["eu_only", "sales_team"]
    assert "row access policies (eu_only, sales_team) travel with the clone" in orders.reason
    assert customers.action == "full_clone" and "travel with the clone" in customers.reason
    assert plain.row_access_policies == [] and "row access" not in plain.reason
    assert DatasetPlan.from_dict(json.loads(json.dumps(p.to_dict()))).actions[0].row_access_policies == [
        "eu_only",
        "sales_team",
    ]


def test_a_ctas_copy_is_reported_as_not_carrying_row_access_policies() -> None:
    p = plan(make_config(), table("flat", col("order_date", "DATE"), row_access_policies=["eu_only"]))
    flat = only(p, "flat")
    assert flat.action == "ctas_window"
    assert "(eu_only) are NOT carried by a CTAS copy" in flat.reason and "TRUE-filter" in flat.reason


def test_the_plan_carries_prods_default_encryption_key() -> None:
    key = "projects/k/locations/us/keyRings/r/cryptoKeys/c"
    info = dataset(table("customers", col("id", "INT64")))
    info.kms_key_name = key
    p = plan_dataset(make_config(), info, existing=None)
    assert p.kms_key_name == key
    assert DatasetPlan.from_dict(json.loads(json.dumps(p.to_dict()))).kms_key_name == key
