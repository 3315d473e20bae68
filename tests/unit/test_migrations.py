"""Schema migrations without BigQuery: files, phases, checksums, ordering, the per-environment
rewrite, refusals, the ledger's view of each environment, and the prod confirmation.

Migrations are written to a tmp dir; the rewritten SQL is parsed back with sqlglot's BigQuery dialect
and its table references compared, so a rewrite that breaks the statement fails here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from envsync.core.config import EnvsyncConfig, parse_config
from envsync.core.guard import ProdWriteRefused, WriteGuard, WriteTarget, migration_confirmation_phrase
from envsync.migrations.ledger import (
    APPLIED,
    FAILED,
    REVERTED,
    SYNCED,
    LedgerRow,
    Migration,
    MigrationError,
    MigrationFiles,
    ahead_of,
    applied,
    carry_over,
    check_applied,
    check_order,
    checksum_of,
    load_migrations,
    pending,
    scratch_dataset,
    split_statements,
    synced_rows,
    unapplied,
)

UTC = dt.UTC
ADD_EMAIL = """-- envsync: phase=expand
-- customers get an email address; readers switch in 0003
alter table sales.customers add column email string;

update `envsync-demo.sales.customers`
set email = concat(name, '@example.com')   -- ; inside a comment does not split
where email is null;
"""
DROP_SEGMENT = """-- envsync: phase=contract
alter table sales.customers drop column segment;
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


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def tables_of(sql: str) -> set[str]:
    tree = sqlglot.parse_one(sql, read="bigquery")
    return {".".join(p for p in (t.catalog, t.db, t.name) if p) for t in tree.find_all(exp.Table)}


def row(
    env: str, migration: Migration, status: str = APPLIED, minute: int = 0, run: str = "r1", checksum: str | None = None
) -> LedgerRow:
    return LedgerRow(
        applied_at=dt.datetime(2026, 11, 30, 12, minute, tzinfo=UTC),
        environment=env,
        version=migration.version,
        name=migration.name,
        phase=migration.phase,
        checksum=checksum or migration.checksum,
        status=status,
        run_id=run,
    )


def three(tmp_path: Path, config: EnvsyncConfig) -> MigrationFiles:
    write(tmp_path, "0001_add_email.sql", ADD_EMAIL)
    write(tmp_path, "0003_drop_segment.sql", DROP_SEGMENT)
    write(
        tmp_path,
        "0002_email_view.sql",
        "-- envsync: phase=expand\ncreate or replace view marketing.emails as\n"
        "select customer_id, email from sales.customers\n",
    )
    return load_migrations(config, tmp_path)


def test_migrations_are_loaded_in_version_order_with_phase_statements_and_checksum(
    tmp_path: Path, config: EnvsyncConfig
) -> None:
    migrations = three(tmp_path, config)
    assert [(m.version, m.name, m.phase) for m in migrations] == [
        (1, "add_email", "expand"),
        (2, "email_view", "expand"),
        (3, "drop_segment", "contract"),
    ]
    first = migrations[0]
    assert [s.line for s in first.statements] == [3, 5]
    assert [s.kind for s in first.statements] == ["Alter", "Update"]
    assert first.checksum == checksum_of(ADD_EMAIL.encode())
    assert first.tables() == ["sales.customers"]
    assert migrations[2].removals() == ["sales.customers.segment"]
    assert migrations[1].tables() == ["marketing.emails", "sales.customers"]


def test_the_checksum_ignores_line_ends_but_not_content() -> None:
    assert checksum_of(b"a\r\nb\n") == checksum_of(b"a\nb\n")
    assert checksum_of(b"a\nb\n") != checksum_of(b"a\nb \n")


def test_semicolons_in_strings_and_comments_do_not_split() -> None:
    text = "select ';' as a; -- x; y\nselect 2 /* ; */;\n\n"
    assert [(line, text[s:e]) for line, s, e in split_statements(text)] == [(1, "select ';' as a"), (2, "select 2")]


def test_no_migrations_directory_means_no_migrations(tmp_path: Path, config: EnvsyncConfig) -> None:
    assert load_migrations(config, tmp_path / "missing") == MigrationFiles()


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "alter table sales.customers add column x string;\n",
            "0001_x.sql: a migration must start with its phase, the line '-- envsync: phase=expand'",
        ),
        (
            "-- a comment first\n-- envsync: phase=expand\nalter table sales.customers add column x string;\n",
            "0001_x.sql: a migration must start with its phase",
        ),
        (
            "-- envsync: phase=grow\nalter table sales.customers add column x string;\n",
            "0001_x.sql:1: phase 'grow' is not allowed; use one of expand, contract",
        ),
        ("-- envsync: phase=expand\n\n", "0001_x.sql: the migration has no statement"),
    ],
)
def test_a_file_without_a_valid_phase_header_is_refused_naming_the_file(
    tmp_path: Path, config: EnvsyncConfig, text: str, message: str
) -> None:
    write(tmp_path, "0001_x.sql", text)
    with pytest.raises(MigrationError, match=None) as caught:
        load_migrations(config, tmp_path)
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["1-add.sql", "add_email.sql", "0001_Add.sql", "0001_.sql"])
def test_badly_named_files_are_refused(tmp_path: Path, config: EnvsyncConfig, name: str) -> None:
    write(tmp_path, name, ADD_EMAIL)
    with pytest.raises(MigrationError, match=r"is named <version>_<name>\.sql"):
        load_migrations(config, tmp_path)


def test_two_files_with_one_version_are_refused(tmp_path: Path, config: EnvsyncConfig) -> None:
    write(tmp_path, "0001_a.sql", ADD_EMAIL)
    write(tmp_path, "1_b.sql", ADD_EMAIL)
    with pytest.raises(MigrationError, match="version 1 is also .*0001_a.sql; versions must be unique"):
        load_migrations(config, tmp_path)


@pytest.mark.parametrize(
    "statement, why",
    [
        ("alter table sales.customers drop column segment", "drops column segment of sales.customers"),
        ("alter table sales.customers rename column name to full_name", "renames column name of sales.customers"),
        ("drop table sales.audit_log", "drops table sales.audit_log"),
        ("delete from sales.orders where order_id < 0", "deletes rows of sales.orders"),
        ("truncate table sales.orders", "truncates sales.orders"),
        ("create or replace table sales.customers as select 1 as customer_id", "replaces table sales.customers"),
        ("alter table sales.orders rename to orders_old", "renames sales.orders"),
    ],
)
def test_an_expand_migration_with_a_destructive_statement_is_refused(
    tmp_path: Path, config: EnvsyncConfig, statement: str, why: str
) -> None:
    write(tmp_path, "0004_sneaky.sql", f"-- envsync: phase=expand\n\n{statement};\n")
    with pytest.raises(MigrationError) as caught:
        load_migrations(config, tmp_path)
    assert f"0004_sneaky.sql:3: an expand migration may only add; this statement {why}" in str(caught.value)
    write(tmp_path, "0004_sneaky.sql", f"-- envsync: phase=contract\n\n{statement};\n")
    assert load_migrations(config, tmp_path)[0].statements[0].destructive == why


@pytest.mark.parametrize(
    "statement, message",
    [
        (
            "alter table finance.ledger add column x string",
            "2: finance.ledger is outside the configured prod datasets (sales, marketing)",
        ),
        (
            "insert into sales.orders_copy select * from `other-project.sales.orders`",
            "other-project.sales.orders is in project 'other-project'",
        ),
        (
            "update sales.customers set segment = (select max(x) from dev_sales.customers) where true",
            "dev_sales.customers is outside the configured prod datasets",
        ),
        ("alter table customers add column x string", "table 'customers' has no dataset"),
        ("create schema reporting", "CREATE SCHEMA is not a migration statement"),
        ("create function sales.f(x int64) as (x)", "CREATE FUNCTION is not a migration statement"),
        ("declare x int64", "envsync cannot run 'declare x int64' as a migration statement"),
        (
            "alter table sales.customers alter column name set options (description = 'x')",
            "envsync cannot run 'alter table sales.customers'",
        ),
    ],
)
def test_statements_naming_anything_outside_the_configured_datasets_or_unanalysable_are_refused(
    tmp_path: Path, config: EnvsyncConfig, statement: str, message: str
) -> None:
    write(tmp_path, "0005_x.sql", f"-- envsync: phase=expand\n{statement};\n")
    with pytest.raises(MigrationError) as caught:
        load_migrations(config, tmp_path)
    assert "0005_x.sql:" in str(caught.value)
    assert message in str(caught.value)


def test_rewrite_renames_every_dataset_reference_keeping_the_rest_of_the_text(
    tmp_path: Path, config: EnvsyncConfig
) -> None:
    write(
        tmp_path,
        "0001_mixed.sql",
        """-- envsync: phase=expand
create view marketing.revenue_by_email as
with recent as (select * from sales.orders where order_date >= '2026-01-01')
select c.email, count(*) as orders   -- sales.customers in a comment stays
from recent
join `envsync-demo.sales.customers` as c using (customer_id)
join `envsync-demo`.marketing.ad_spend as a on a.spend_date = recent.order_date
join `envsync-demo.marketing`.campaigns using (campaign_id)
cross join `sales`.`audit_log`
group by c.email;
""",
    )
    migration = load_migrations(config, tmp_path)[0]
    ((line, qa_sql),) = migration.rewrite_for(config, "qa")
    assert line == 2
    assert tables_of(qa_sql) == {
        "qa_marketing.revenue_by_email",
        "qa_sales.orders",
        "envsync-demo.qa_sales.customers",
        "envsync-demo.qa_marketing.ad_spend",
        "envsync-demo.qa_marketing.campaigns",
        "qa_sales.audit_log",
        "recent",
    }
    assert "-- sales.customers in a comment stays" in qa_sql
    assert "`envsync-demo.qa_marketing`.campaigns" in qa_sql and "`qa_sales`.`audit_log`" in qa_sql
    ((_, prod_sql),) = migration.rewrite_for(config, "prod")
    assert prod_sql == migration.statements[0].sql
    ((_, test_sql),) = migration.rewrite_for(config, "test", "feature1")
    assert "test_feature1_marketing.revenue_by_email" in test_sql


def ledger_for(migrations: list[Migration]) -> list[LedgerRow]:
    m1, m2, m3 = migrations
    return [
        row("qa", m1, minute=1),
        row("qa", m2, minute=2),
        row("qa", m3, minute=3),
        row("staging", m1, minute=4),
        row("staging", m2, minute=5),
        row("prod", m1, minute=6),
    ]


def test_pending_is_what_an_environment_has_that_prod_lacks(tmp_path: Path, config: EnvsyncConfig) -> None:
    migrations = three(tmp_path, config)
    ledger = ledger_for(migrations)
    assert [m.version for m in pending(migrations, ledger, "qa")] == [2, 3]
    assert [m.version for m in pending(migrations, ledger, "staging")] == [2]
    assert pending(migrations, ledger, "dev") == []
    assert pending(migrations, ledger, "prod") == []
    assert [m.version for m in unapplied(migrations, ledger, "staging")] == [3]
    # once prod has 2 (the weekly sync then copies it), staging has nothing pending any more
    ledger.append(row("prod", migrations[1], minute=7))
    assert pending(migrations, ledger, "staging") == []
    assert [m.version for m in pending(migrations, ledger, "qa")] == [3]


def test_the_newest_ledger_row_of_a_version_decides(tmp_path: Path, config: EnvsyncConfig) -> None:
    migrations = three(tmp_path, config)
    m1, m2, _ = migrations
    ledger = [
        row("qa", m1, minute=1),
        row("qa", m2, minute=2),
        row("qa", m2, FAILED, minute=3),
        row("dev", m1, SYNCED, minute=4),
    ]
    assert list(applied(ledger, "qa")) == [1]
    assert list(applied(ledger, "dev")) == [1]
    assert [m.version for m in pending(migrations, ledger, "qa")] == [1]


def test_applied_as_of_an_instant_reads_only_the_rows_recorded_by_then(tmp_path: Path, config: EnvsyncConfig) -> None:
    m1, m2, _ = three(tmp_path, config)
    ledger = [row("qa", m1, minute=1), row("qa", m2, minute=5), row("qa", m1, FAILED, minute=6)]
    at = dt.datetime(2026, 11, 30, 12, 3, tzinfo=UTC)
    assert list(applied(ledger, "qa", at)) == [1]
    assert list(applied(ledger, "qa", at.replace(minute=5))) == [1, 2]
    assert list(applied(ledger, "qa")) == [2]  # the newest row of 1 is failed
    assert applied(ledger, "qa", at.replace(minute=0)) == {}


def test_a_cut_makes_the_target_hold_exactly_what_the_source_held_as_of_t(
    tmp_path: Path, config: EnvsyncConfig
) -> None:
    m1, m2, m3 = three(tmp_path, config)
    t = dt.datetime(2026, 11, 30, 12, 10, tzinfo=UTC)
    now = t + dt.timedelta(minutes=5)
    ledger = [
        row("prod", m1, minute=0),
        row("qa", m1, SYNCED, minute=1),  # qa's reseed brought prod's 1
        row("qa", m2, minute=2),  # promoted to qa
        row("staging", m1, minute=3),
        row("staging", m3, minute=4, run="hotfix"),  # a hotfix that skipped qa
        row("qa", m3, minute=20),  # promoted to qa after T: not in the cut
    ]
    rows = carry_over(ledger, "qa", "staging", as_of=t, dag_id="staging_cut", run_id="cut1", now=now)
    assert [(r.environment, r.version, r.status) for r in rows] == [("staging", 2, SYNCED), ("staging", 3, REVERTED)]
    synced, reverted = rows
    assert (synced.name, synced.phase, synced.checksum) == (m2.name, m2.phase, m2.checksum)
    assert (synced.dag_id, synced.run_id, synced.applied_at, synced.error) == ("staging_cut", "cut1", now, None)
    assert reverted.checksum == m3.checksum and "did not hold version 3" in (reverted.error or "")
    after = ledger + rows
    assert list(applied(after, "staging")) == [1, 2]
    assert list(applied(after, "staging")) == list(applied(ledger, "qa", t))
    # staging now holds what qa held: nothing more to record (a retried cut writes no second row)
    assert carry_over(after, "qa", "staging", as_of=t, dag_id="staging_cut", run_id="cut1", now=now) == []
    # 2 and 3 are not in prod; 3 is no longer pending on staging, a promotion may apply it again
    files = MigrationFiles([m1, m2, m3])
    assert [m.version for m in pending(files, after, "staging")] == [2]
    assert [m.version for m in unapplied(files, after, "staging")] == [3]


def test_a_cut_from_a_source_without_migrations_reverts_what_the_target_held(
    tmp_path: Path, config: EnvsyncConfig
) -> None:
    m1, _, _ = three(tmp_path, config)
    t = dt.datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
    assert carry_over([], "qa", "staging", as_of=t, dag_id="d", run_id="r") == []
    ledger = [row("staging", m1, SYNCED, minute=1), row("dev", m1, minute=2)]
    [only] = carry_over(ledger, "qa", "staging", as_of=t, dag_id="d", run_id="r")
    assert (only.environment, only.version, only.status) == ("staging", 1, REVERTED)
    assert applied([*ledger, only], "staging") == {} and list(applied([*ledger, only], "dev")) == [1]


def test_an_edited_applied_migration_is_refused_naming_the_file(tmp_path: Path, config: EnvsyncConfig) -> None:
    migrations = three(tmp_path, config)
    ledger = ledger_for(migrations)
    write(tmp_path, "0001_add_email.sql", ADD_EMAIL.replace("@example.com", "@example.org"))
    edited = load_migrations(config, tmp_path)
    with pytest.raises(MigrationError, match=r"0001_add_email.sql was edited after it was applied to qa \(checksum"):
        pending(edited, ledger, "qa")
    with pytest.raises(MigrationError, match="write a new migration instead"):
        check_applied(edited, ledger, "prod")
    check_applied(edited, ledger, "dev")  # dev holds nothing: nothing to compare


def test_an_applied_migration_whose_file_is_gone_is_refused(tmp_path: Path, config: EnvsyncConfig) -> None:
    migrations = three(tmp_path, config)
    with pytest.raises(
        MigrationError, match=r"version 3 \(drop_segment\) is applied to qa but there is no migration file"
    ):
        check_applied(MigrationFiles(migrations[:2]), ledger_for(migrations), "qa")


def test_versions_applied_out_of_order_are_refused(tmp_path: Path, config: EnvsyncConfig) -> None:
    migrations = three(tmp_path, config)
    m1, m2, m3 = migrations
    ledger = [row("staging", m1), row("staging", m3, minute=1)]
    with pytest.raises(
        MigrationError,
        match=r"0002_email_view.sql: version 2 would be applied to staging after "
        r"version 3 \(drop_segment\)",
    ):
        check_order([m2], ledger, "staging")
    check_order([m2, m3], [row("staging", m1)], "staging")


def test_scratch_datasets_of_the_rehearsal_are_drill_datasets_the_guard_allows(config: EnvsyncConfig) -> None:
    guard = WriteGuard.from_config(config)
    for env, name in [("qa", None), ("prod", None), ("test", "feature1")]:
        dataset = scratch_dataset(config, env, "sales", name)
        assert dataset.startswith("drill_migcheck_")
        guard.check(WriteTarget(config.project, dataset, "customers"), "write")
    assert scratch_dataset(config, "test", "sales", "feature1") == "drill_migcheck_test_feature1_sales"
    assert scratch_dataset(config, "qa", "sales", tag="1a2b3c4d") == "drill_migcheck_qa_1a2b3c4d_sales"


def test_prod_tables_are_writable_only_with_the_exact_phrase_naming_the_versions(config: EnvsyncConfig) -> None:
    guard = WriteGuard.from_config(config)
    phrase = migration_confirmation_phrase([4, 3])
    assert phrase == "apply schema migrations 3, 4 to prod"
    for confirm in (None, "", "apply schema migrations 3 to prod", phrase.upper()):
        with pytest.raises(
            ProdWriteRefused, match="set the confirm param to exactly: apply schema migrations 3, 4 to prod"
        ):
            guard.for_prod_migrations([3, 4], ["sales"], confirm)
    opened = guard.for_prod_migrations([3, 4], ["sales"], phrase)
    opened.check_statement("alter table `envsync-demo.sales.customers` add column email string")
    with pytest.raises(ProdWriteRefused, match="'marketing' is a prod dataset"):
        opened.check_statement("alter table marketing.ad_spend add column x string")
    with pytest.raises(ProdWriteRefused, match="prod is read-only"):
        opened.check(WriteTarget(config.project, "sales"), "delete dataset")
    with pytest.raises(ProdWriteRefused, match="prod is read-only"):
        guard.check_statement("alter table sales.customers add column email string")
    with pytest.raises(ProdWriteRefused, match="are not prod datasets"):
        guard.for_prod_migrations([3], ["qa_sales"], "apply schema migrations 3 to prod")


def test_additions_and_what_an_environment_is_behind_on(tmp_path: Path, config: EnvsyncConfig) -> None:
    from envsync.migrations.ledger import ahead_of

    migrations = three(tmp_path, config)
    assert migrations[0].additions() == ["sales.customers.email"]
    assert migrations[1].additions() == []  # CREATE OR REPLACE VIEW replaces, adds no name
    ledger = ledger_for(migrations)
    assert ahead_of(migrations, ledger, "prod") == set()  # prod holds 1; 2 and 3 add nothing
    assert ahead_of(migrations, ledger[:3], "staging") == {"sales.customers.email"}
    assert ahead_of(migrations, ledger, "qa") == set()


def test_the_seed_contract_names_the_migrated_schema_and_tolerates_columns_the_env_is_behind_on() -> None:
    from envsync.environments.reseed import schema_contract
    from envsync.operators.reseed import contract_groups

    migrated = [{"name": "customer_id", "type": "INT64"}, {"name": "email", "type": "STRING"}]
    seed = [{"name": "customer_id", "type": "INTEGER"}]
    assert schema_contract("sales", "customers", migrated, seed, schema_name="qa's schema (prod + migrations 1)") == [
        "sales.customers: column email is in qa's schema (prod + migrations 1) but not in the seed"
    ]
    prod = [{"name": "customer_id", "type": "INT64"}]
    assert schema_contract("sales", "customers", prod, migrated) == [
        "sales.customers: column email is in the seed but not in prod"
    ]
    assert schema_contract("sales", "customers", prod, migrated, ahead=frozenset({"email"})) == []
    groups = contract_groups(
        {
            "qa": {"versions": [1], "schemas": {"sales.customers": migrated}, "ahead": []},
            "staging": {"versions": [], "schemas": None, "ahead": ["sales.customers.email"]},
            "dev": {"versions": [], "schemas": None, "ahead": ["sales.customers.email"]},
        }
    )
    assert [(g["envs"], g["versions"]) for g in groups] == [(["qa"], [1]), (["staging", "dev"], [])]


def test_every_check_of_a_ledger_history_refuses_a_subset_of_the_files(tmp_path: Path, config: EnvsyncConfig) -> None:
    """qa holds 1 and 2 and is about to get 3: checks given only [3] (the migrations about to run)
    would call 1 and 2 deleted files. A slice of the files is a plain tuple, refused by type."""
    migrations = three(tmp_path, config)
    m1, m2, m3 = migrations
    ledger = [row("qa", m1), row("qa", m2, minute=1)]
    for call in (
        lambda f: check_applied(f, ledger, "qa"),
        lambda f: pending(f, ledger, "qa"),
        lambda f: unapplied(f, ledger, "qa"),
        lambda f: ahead_of(f, ledger, "qa"),
        lambda f: synced_rows(f, ledger, "qa", dag_id="d", run_id="r"),
    ):
        with pytest.raises(TypeError, match="needs every migration file"):
            call(migrations[2:])
        with pytest.raises(TypeError, match="needs every migration file"):
            call([m3])
    check_applied(migrations, ledger, "qa")
    assert [m.version for m in unapplied(migrations, ledger, "qa")] == [3]


def test_after_a_rebuild_every_version_prod_holds_is_recorded_synced_once(
    tmp_path: Path, config: EnvsyncConfig
) -> None:
    """The README: versions prod holds are recorded `synced` for a rebuilt environment, also those
    its ledger already held (as `applied` through a promotion); none twice (a retried task)."""
    m1, m2, m3 = three(tmp_path, config)
    files = MigrationFiles([m1, m2, m3])
    ledger = [
        row("qa", m1),
        row("staging", m1),
        row("prod", m1, minute=1),
        row("qa", m2, minute=2),
        row("prod", m2, FAILED, minute=3),
        row("qa", m3, minute=4),
    ]
    rows = synced_rows(files, ledger, "qa", dag_id="reseed_environments", run_id="r1")
    assert [(r.environment, r.version, r.status, r.run_id) for r in rows] == [("qa", 1, SYNCED, "r1")]
    after = ledger + rows
    assert synced_rows(files, after, "qa", dag_id="reseed_environments", run_id="r2") == []
    assert [m.version for m in pending(files, after, "qa")] == [2, 3]  # prod holds 1 only (2 failed there)
    dev = synced_rows(files, after, "dev", dag_id="prod_to_dev_sync", run_id="s1")
    assert [(r.environment, r.version, r.status) for r in dev] == [("dev", 1, SYNCED)]
