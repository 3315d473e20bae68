"""Schema promotion without BigQuery: params, selection, the environment gates and the hotfix lane,
the contract gate's readers (views parsed with sqlglot, seeds), the schema a migration declares,
the plan text, and the guard scoped to the tables a promotion writes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from envsync.core.config import EnvsyncConfig, parse_config
from envsync.core.guard import ProdWriteRefused, WriteGuard, WriteTarget
from envsync.migrations.ledger import APPLIED, FAILED, LedgerRow, Migration, MigrationError, carry_over, load_migrations
from envsync.migrations.promote import (
    Expected,
    PromotionError,
    check_gates,
    compare_expected,
    contract_readers,
    expected_after,
    plan_text,
    prod_views_after,
    reads,
    select,
    validate_promote_params,
    written_tables,
)

UTC = dt.UTC
ADD_EMAIL = """-- envsync: phase=expand
alter table sales.customers add column email string;

update sales.customers
set email = concat(name, '@example.com')
where email is null;

create view marketing.customer_emails as
select customer_id, email
from sales.customers;
"""
DROP_SEGMENT = """-- envsync: phase=contract
alter table sales.customers drop column segment;
"""
LOYALTY = """-- envsync: phase=expand
create table sales.loyalty (customer_id int64 not null, points array<int64>, tier struct<name string>);
alter table sales.orders add column if not exists note string, add column channel string;
alter table sales.orders alter column amount set data type numeric;
"""


@pytest.fixture
def config() -> EnvsyncConfig:
    return parse_config(
        {
            "project": "envsync-demo",
            "prod": {"datasets": ["sales", "marketing"]},
            "state": {"bucket": "envsync-demo-state"},
        }
    )


@pytest.fixture
def migrations(tmp_path: Path, config: EnvsyncConfig) -> list[Migration]:
    for name, text in [
        ("0001_add_email.sql", ADD_EMAIL),
        ("0002_drop_segment.sql", DROP_SEGMENT),
        ("0003_loyalty.sql", LOYALTY),
    ]:
        (tmp_path / name).write_text(text, encoding="utf-8")
    return load_migrations(config, tmp_path)


def row(env: str, migration: Migration, status: str = APPLIED, minute: int = 0) -> LedgerRow:
    return LedgerRow(
        applied_at=dt.datetime(2026, 11, 30, 12, minute, tzinfo=UTC),
        environment=env,
        version=migration.version,
        name=migration.name,
        phase=migration.phase,
        checksum=migration.checksum,
        status=status,
        run_id="r1",
    )


# ------------------------------------------------------------------------------------ params


def test_params_are_checked_naming_the_bad_value() -> None:
    assert validate_promote_params("prod", "3", "hotfix", False, "apply schema migrations 3 to prod").through == 3
    assert validate_promote_params("qa", "", None, "true", None) == validate_promote_params(
        "qa", None, "normal", True, ""
    )
    for args, message in [
        (("dev", "", "normal", False, ""), "param target must be one of ['qa', 'staging', 'prod'], got 'dev'"),
        (("qa", "3a", "normal", False, ""), "param through must be a migration version"),
        (("qa", True, "normal", False, ""), "param through must be a migration version"),
        (("qa", "", "fast", False, ""), "param lane must be one of ['normal', 'hotfix'], got 'fast'"),
        (("qa", "", "normal", "maybe", ""), "param dry_run must be true or false, got 'maybe'"),
        (
            ("staging", "", "normal", False, "apply schema migrations 1 to prod"),
            "param confirm is only for target prod",
        ),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            validate_promote_params(*args)


# ------------------------------------------------------------------------------------- gates


def test_select_takes_what_the_target_lacks_through_a_version(migrations: list[Migration]) -> None:
    m1, m2, m3 = migrations
    ledger = [row("qa", m1)]
    assert [m.version for m in select(migrations, ledger, "qa", None)] == [2, 3]
    assert [m.version for m in select(migrations, ledger, "qa", 2)] == [2]
    assert [m.version for m in select(migrations, ledger, "staging", 1)] == [1]
    assert select(migrations, ledger, "qa", 1) == []
    with pytest.raises(
        PromotionError, match=r"param through: there is no migration with version 7; versions are \[1, 2, 3\]"
    ):
        select(migrations, ledger, "qa", 7)


def test_an_edited_applied_migration_and_versions_out_of_order_are_refused(
    tmp_path: Path, config: EnvsyncConfig, migrations: list[Migration]
) -> None:
    m1, m2, m3 = migrations
    with pytest.raises(MigrationError, match=r"version 2 would be applied to qa after version 3"):
        select(migrations, [row("qa", m1), row("qa", m3)], "qa", None)
    (tmp_path / "0001_add_email.sql").write_text(ADD_EMAIL.replace("@example.com", "@example.org"))
    with pytest.raises(MigrationError, match=r"0001_add_email.sql was edited after it was applied to qa"):
        select(load_migrations(config, tmp_path), [row("qa", m1)], "qa", None)


def test_staging_needs_qa_and_prod_needs_staging(migrations: list[Migration]) -> None:
    m1, m2, _ = migrations
    with pytest.raises(
        PromotionError,
        match=r"refused to promote 0001_add_email.sql to staging: qa has not applied it "
        r"\(a migration reaches staging only after it succeeded on qa\)",
    ):
        check_gates([m1], [], "staging", "normal")
    # a failed run on qa is not a success: the newest row decides
    with pytest.raises(PromotionError, match="qa has not applied it"):
        check_gates([m1], [row("qa", m1), row("qa", m1, FAILED, minute=1)], "staging", "normal")
    assert check_gates([m1], [row("qa", m1)], "staging", "normal") == []
    with pytest.raises(
        PromotionError,
        match=r"refused to promote 0002_drop_segment.sql to prod: staging has not "
        r"applied it .*the hotfix lane may skip qa, never staging",
    ):
        check_gates([m1, m2], [row("qa", m1), row("staging", m1), row("qa", m2)], "prod", "normal")
    assert check_gates([m1], [row("qa", m1), row("staging", m1)], "prod", "normal") == []
    assert check_gates([m1], [], "qa", "normal") == []


def test_after_a_cut_the_prod_gate_sees_staging_holding_what_qa_held(migrations: list[Migration]) -> None:
    m1, m2, _ = migrations
    ledger = [row("qa", m1, minute=1), row("staging", m2, minute=2)]  # 2: a hotfix that skipped qa
    with pytest.raises(PromotionError, match="staging has not applied it"):
        check_gates([m1], ledger, "prod", "normal")
    t = dt.datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
    ledger += carry_over(ledger, "qa", "staging", as_of=t, dag_id="staging_cut", run_id="cut")
    assert check_gates([m1], ledger, "prod", "normal") == []
    with pytest.raises(PromotionError, match="refused to promote 0002_drop_segment.sql to prod: staging has not"):
        check_gates([m2], ledger, "prod", "hotfix")  # the cut replaced staging's tables: 2 is gone there


def test_the_hotfix_lane_skips_qa_never_staging_and_says_so(migrations: list[Migration]) -> None:
    m1, _, _ = migrations
    assert check_gates([m1], [], "staging", "hotfix") == ["hotfix lane: 1 skipped qa"]
    assert check_gates([m1], [row("staging", m1)], "prod", "hotfix") == ["hotfix lane: 1 skipped qa"]
    assert check_gates([m1], [row("staging", m1)], "prod", "normal") == [
        "1 reached staging through the hotfix lane and never ran on qa"
    ]
    with pytest.raises(PromotionError, match="staging has not applied it"):
        check_gates([m1], [], "prod", "hotfix")


# ----------------------------------------------------------------------------- contract gate


def test_a_view_reads_a_column_by_name_or_through_a_star_and_a_table_by_name() -> None:
    view = (
        "with o as (select customer_id from `envsync-demo.sales.orders`) "
        "select c.segment, count(*) as n from o join sales.customers as c using (customer_id) group by 1"
    )
    assert reads(view, "sales.customers.segment", "envsync-demo")
    assert reads(view, "sales.orders", "envsync-demo")
    assert not reads(view, "sales.customers.country", "envsync-demo")
    assert not reads(view, "marketing.customers.segment", "envsync-demo")
    assert reads("select * from sales.customers", "sales.customers.country")
    assert reads("select c.* from sales.customers as c", "sales.customers.country")
    assert not reads("select customer_id from `other-project.sales.customers`", "sales.customers", "envsync-demo")


def test_contract_readers_name_each_view_and_seed_that_still_reads_a_removal(migrations: list[Migration]) -> None:
    _, m2, _ = migrations
    views = {
        "prod": {
            "marketing.by_segment": "select segment, count(*) as n from sales.customers group by 1",
            "marketing.ids": "select customer_id from sales.customers",
        },
        "staging": {},
    }
    seeds = {"sales.customers": "select 1 as customer_id, 'a' as name, 'smb' as segment"}
    assert contract_readers([m2], views, seeds) == [
        "0002_drop_segment.sql removes sales.customers.segment, but view marketing.by_segment of prod still reads it",
        "0002_drop_segment.sql removes sales.customers.segment, "
        "but seed sales/customers.sql still yields column segment",
    ]
    assert (
        contract_readers(
            [m2],
            {"prod": {"marketing.ids": views["prod"]["marketing.ids"]}},
            {"sales.customers": "select 1 as customer_id"},
        )
        == []
    )
    # expand migrations remove nothing
    assert contract_readers([migrations[0]], views, seeds) == []


def test_prod_views_are_judged_as_the_promoted_migrations_leave_them(tmp_path: Path, config: EnvsyncConfig) -> None:
    (tmp_path / "0001_switch.sql").write_text(
        "-- envsync: phase=expand\n"
        "create or replace view marketing.by_segment as select country from sales.customers;\n"
        "create view marketing.fresh as select name from sales.customers;\n"
    )
    (tmp_path / "0002_drop.sql").write_text(
        "-- envsync: phase=contract\ndrop view marketing.old;\nalter table sales.customers drop column segment;\n"
    )
    switch, drop = load_migrations(config, tmp_path)
    before = {
        "marketing.by_segment": "select segment from sales.customers",
        "marketing.old": "select segment from sales.customers",
    }
    after = prod_views_after(before, [switch, drop])
    assert set(after) == {"marketing.by_segment", "marketing.fresh"}
    assert contract_readers([switch, drop], {"prod": after}, {}) == []
    assert contract_readers([drop], {"prod": prod_views_after(before, [drop])}, {}) == [
        "0002_drop.sql removes sales.customers.segment, but view marketing.by_segment of prod still reads it"
    ]


# --------------------------------------------------------------------------- declared schema


def test_the_expected_schema_follows_the_ddl(migrations: list[Migration]) -> None:
    m1, m2, m3 = migrations
    customers = Expected("TABLE", {"customer_id": "INT64", "name": "STRING", "segment": "STRING"})
    after = expected_after({"sales.customers": customers, "marketing.customer_emails": Expected("ABSENT")}, m1)
    assert after["sales.customers"].columns == {
        "customer_id": "INT64",
        "name": "STRING",
        "segment": "STRING",
        "email": "STRING",
    }
    assert after["marketing.customer_emails"].kind == "VIEW"
    assert expected_after({"sales.customers": customers}, m2)["sales.customers"].columns == {
        "customer_id": "INT64",
        "name": "STRING",
    }
    orders = Expected("TABLE", {"order_id": "INT64", "amount": "FLOAT64", "note": "STRING"})
    after = expected_after({"sales.orders": orders, "sales.loyalty": Expected("ABSENT")}, m3)
    assert after["sales.loyalty"].columns == {"customer_id": "INT64", "points": "ARRAY<INT64>", "tier": "STRUCT"}
    assert after["sales.orders"].columns == {
        "order_id": "INT64",
        "amount": "NUMERIC",
        "note": "STRING",
        "channel": "STRING",
    }


def test_a_schema_that_differs_from_the_declared_one_is_named() -> None:
    want = {
        "sales.customers": Expected("TABLE", {"customer_id": "INT64", "email": "STRING"}),
        "sales.loyalty": Expected("TABLE"),
        "marketing.old": Expected("ABSENT"),
    }
    got = {
        "sales.customers": Expected("TABLE", {"customer_id": "INT64", "email": "INT64", "x": "STRING"}),
        "sales.loyalty": Expected("TABLE", {"a": "STRING"}),
        "marketing.old": Expected("VIEW"),
    }
    assert compare_expected(want, got) == [
        "marketing.old should be absent, it is a view",
        "sales.customers: column x is not declared; column email is INT64, declared STRING",
    ]
    assert (
        compare_expected(want, {**got, "sales.customers": want["sales.customers"], "marketing.old": Expected("ABSENT")})
        == []
    )


# --------------------------------------------------------------------------------- the plan


def test_the_plan_shows_each_environment_the_tables_and_the_rewritten_sql(
    config: EnvsyncConfig, migrations: list[Migration]
) -> None:
    m1, _, _ = migrations
    text = plan_text(config, [m1], [row("qa", m1)], "staging", "normal", [])
    assert text.splitlines()[:4] == [
        "promotion to staging, lane normal: 0001_add_email.sql",
        "  qa       holds 1",
        "  staging  holds -; would run 1",
        "  prod     holds -",
    ]
    assert (
        "migration 1 (0001_add_email.sql, expand) on staging: touches marketing.customer_emails, "
        "sales.customers; writes marketing.customer_emails, sales.customers"
    ) in text
    assert "    alter table staging_sales.customers add column email string" in text
    assert "    from staging_sales.customers" in text and "create view staging_marketing.customer_emails as" in text
    assert written_tables(config, migrations) == [
        "marketing.customer_emails",
        "sales.customers",
        "sales.loyalty",
        "sales.orders",
    ]


def test_the_prod_guard_opens_only_the_tables_a_promotion_writes(config: EnvsyncConfig) -> None:
    guard = WriteGuard.from_config(config)
    phrase = "apply schema migrations 1 to prod"
    with pytest.raises(ProdWriteRefused, match="set the confirm param to exactly: apply schema migrations 1 to prod"):
        guard.for_prod_migrations([1], [], "apply schema migrations 2 to prod", tables=["sales.customers"])
    opened = guard.for_prod_migrations([1], [], phrase, tables=["sales.customers", "sales.customers__restore"])
    opened.check_statement("alter table sales.customers add column email string")
    opened.check(WriteTarget(config.project, "sales", "customers__restore"), "copy into table")
    with pytest.raises(ProdWriteRefused, match="'sales' is a prod dataset"):
        opened.check_statement("alter table sales.orders add column note string")
    with pytest.raises(ProdWriteRefused, match="'marketing' is a prod dataset"):
        opened.check_statement("create view marketing.v as select 1 as x")
    with pytest.raises(ProdWriteRefused, match="prod is read-only"):
        opened.check(WriteTarget(config.project, "sales"), "delete dataset")
