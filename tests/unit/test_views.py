"""Rewriting view SQL onto an environment's datasets (envsync.bigquery.views), checked by re-parsing the output."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from envsync.bigquery.views import rewrite_view_sql, view_dependencies

PROJECT = "envsync-demo"
DEV = {"sales": "dev_sales", "marketing": "dev_marketing"}


def refs(sql: str) -> set[tuple[str, str, str]]:
    """(project, dataset, table) of every table reference in `sql`, CTE names excluded."""
    tree = sqlglot.parse_one(sql, read="bigquery")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    out = set()
    for t in tree.find_all(exp.Table):
        if not t.db and t.name in ctes:
            continue
        out.add((t.catalog or "", t.db or "", t.name))
    return out


def datasets(sql: str) -> set[str]:
    return {db for _, db, _ in refs(sql) if db}


def test_backticked_project_dataset_table() -> None:
    r = rewrite_view_sql("select * from `envsync-demo.sales.orders`", DEV, PROJECT)
    assert refs(r.sql) == {("envsync-demo", "dev_sales", "orders")}
    assert r.references == [("envsync-demo", "dev_sales", "orders")]
    assert r.unmapped == []


def test_backticked_project_then_dataset_table() -> None:
    r = rewrite_view_sql("select * from `envsync-demo`.sales.orders", DEV, PROJECT)
    assert refs(r.sql) == {("envsync-demo", "dev_sales", "orders")}
    assert r.unmapped == []


def test_unqualified_dataset_table() -> None:
    r = rewrite_view_sql("select * from sales.orders where amount > 0", DEV, PROJECT)
    assert refs(r.sql) == {("", "dev_sales", "orders")}


def test_references_inside_ctes_are_rewritten_and_cte_names_are_untouched() -> None:
    sql = """
        with orders as (select * from sales.orders where status = 'paid'),
             campaigns as (select * from `envsync-demo.marketing.campaigns`),
             joined as (select * from orders join campaigns using (campaign_id))
        select * from joined
    """
    r = rewrite_view_sql(sql, DEV, PROJECT)
    tree = sqlglot.parse_one(r.sql, read="bigquery")
    assert {c.alias_or_name for c in tree.find_all(exp.CTE)} == {"orders", "campaigns", "joined"}
    assert refs(r.sql) == {("", "dev_sales", "orders"), ("envsync-demo", "dev_marketing", "campaigns")}
    # the CTE references stay bare
    bare = {t.name for t in tree.find_all(exp.Table) if not t.db}
    assert bare == {"orders", "campaigns", "joined"}
    # and the reported references are the real tables only, not the CTEs
    assert sorted(r.references) == [("", "dev_sales", "orders"), ("envsync-demo", "dev_marketing", "campaigns")]


def test_subqueries_are_rewritten() -> None:
    sql = (
        "select * from (select id from sales.orders) as o "
        "where o.id in (select order_id from marketing.leads) "
        "and exists (select 1 from `envsync-demo.sales.refunds` r where r.id = o.id)"
    )
    r = rewrite_view_sql(sql, DEV, PROJECT)
    assert datasets(r.sql) == {"dev_sales", "dev_marketing"}
    assert {name for _, _, name in refs(r.sql)} == {"orders", "leads", "refunds"}


def test_joins_across_both_datasets() -> None:
    sql = (
        "select o.id, l.source from sales.orders o "
        "left join `envsync-demo.marketing.leads` l on o.lead_id = l.id "
        "join `envsync-demo`.marketing.campaigns c on c.id = l.campaign_id"
    )
    r = rewrite_view_sql(sql, DEV, PROJECT)
    assert refs(r.sql) == {
        ("", "dev_sales", "orders"),
        ("envsync-demo", "dev_marketing", "leads"),
        ("envsync-demo", "dev_marketing", "campaigns"),
    }
    assert r.unmapped == []


def test_implicit_unnest_of_an_alias_is_not_a_table() -> None:
    r = rewrite_view_sql("select o.id, li.sku from sales.orders as o, o.line_items as li", DEV, PROJECT)
    assert refs(r.sql) == {("", "dev_sales", "orders")}
    assert r.unmapped == []


@pytest.mark.parametrize(
    "sql",
    [
        "select table_name from sales.INFORMATION_SCHEMA.TABLES",
        "select table_name from `envsync-demo`.sales.INFORMATION_SCHEMA.TABLES",
        "select table_name from `envsync-demo.sales.INFORMATION_SCHEMA.TABLES`",
    ],
)
def test_information_schema_keeps_its_name_and_moves_to_the_dev_dataset(sql: str) -> None:
    r = rewrite_view_sql(sql, DEV, PROJECT)
    found = refs(r.sql)
    assert len(found) == 1
    _, db, name = found.pop()
    if not db and "." in name:  # sqlglot may keep `dataset.INFORMATION_SCHEMA.X` as one identifier
        db, _, name = name.partition(".")
    assert db == "dev_sales"
    assert name.upper() == "INFORMATION_SCHEMA.TABLES"
    assert r.unmapped == []


def test_information_schema_implicit_alias_survives_the_rewrite() -> None:
    sql = "select TABLES.table_name from `envsync-demo.sales.INFORMATION_SCHEMA.TABLES`"
    r = rewrite_view_sql(sql, DEV, PROJECT)
    table = sqlglot.parse_one(r.sql, read="bigquery").find(exp.Table)
    assert table is not None and table.db == "dev_sales"
    assert table.alias in ("", "TABLES"), f"alias {table.alias!r} in {r.sql}"


def test_another_project_is_left_alone_and_reported() -> None:
    r = rewrite_view_sql("select * from `other-proj.sales.orders` join sales.items using (id)", DEV, PROJECT)
    assert refs(r.sql) == {("other-proj", "sales", "orders"), ("", "dev_sales", "items")}
    assert r.unmapped == ["other-proj.sales"]


def test_unmapped_dataset_is_left_alone_and_reported() -> None:
    r = rewrite_view_sql("select * from finance.ledger l join sales.orders o on o.id = l.order_id", DEV, PROJECT)
    assert refs(r.sql) == {("", "finance", "ledger"), ("", "dev_sales", "orders")}
    assert r.unmapped == ["finance"]


def test_rewrite_with_an_empty_map_reports_every_dataset() -> None:
    r = rewrite_view_sql("select * from dev_sales.orders join dev_marketing.leads using (id)", {}, PROJECT)
    assert r.unmapped == ["dev_marketing", "dev_sales"]
    assert datasets(r.sql) == {"dev_sales", "dev_marketing"}


def test_a_dataset_named_like_a_table_is_not_confused() -> None:
    # a table called "sales" in marketing must not be renamed; only the dataset part is mapped
    r = rewrite_view_sql("select * from marketing.sales", DEV, PROJECT)
    assert refs(r.sql) == {("", "dev_marketing", "sales")}


def test_rewritten_sql_is_stable_when_rewritten_again() -> None:
    once = rewrite_view_sql("select * from sales.orders join marketing.leads using (id)", DEV, PROJECT).sql
    twice = rewrite_view_sql(once, DEV, PROJECT)
    assert datasets(twice.sql) == {"dev_sales", "dev_marketing"}  # dev_ names are not in the map
    assert twice.unmapped == ["dev_marketing", "dev_sales"]


def test_unparseable_view_sql_raises_value_error() -> None:
    with pytest.raises(ValueError, match="cannot parse view SQL"):
        rewrite_view_sql("select * from (", DEV, PROJECT)


def test_view_dependencies_lists_every_dataset_table_read() -> None:
    sql = (
        "with x as (select * from dev_sales.orders) select * from `envsync-demo.dev_sales.base` "
        "join x using (id) join dev_marketing.base using (id)"
    )
    assert view_dependencies(sql) == {"dev_sales.base", "dev_sales.orders", "dev_marketing.base"}
