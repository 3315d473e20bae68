"""Schema migrations on the emulators: validated, applied through the guard, recorded in the ledger,
kept by reseeds, brought to dev by the weekly sync once prod has them.

The prod here is the demo prod (envsync.dev.demo) in its own project, so the shipped seeds fit it; every
migration is written to a tmp dir (ENVSYNC_MIGRATIONS_DIR). Assertions are on tables, schemas and the
ledger rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sandbox
from testkit import REPO_ROOT, add_customer_seed_columns, create_demo_prod_in, states

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NS = sandbox.namespace("envsync-migrate")
PROJECT = NS.project
ds, tref, fq = NS.ds, NS.tref, NS.fq
SALT = "test-salt-not-a-secret"

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


def client():
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def rows(sql: str) -> list[dict[str, Any]]:
    return [dict(r) for r in client().query(NS.sql(sql), job_retry=None).result()]


def columns(table: str) -> list[str]:
    return [f.name for f in client().get_table(fq(table)).schema]


def datasets() -> set[str]:
    return {name for d in client().list_datasets() if (name := NS.logical(d.dataset_id))}


@pytest.fixture(scope="module")
def demo_prod(emulators: Any) -> dict[str, Any]:
    return create_demo_prod_in(NS)


@pytest.fixture
def fresh(demo_prod: Any) -> Iterator[None]:
    """Every environment and the ledger gone, prod as the demo made it (before and after)."""

    def reset() -> None:
        for name in datasets():
            if name.startswith(("qa_", "staging_", "dev_", "drill_", "envsync_audit")):
                client().delete_dataset(fq(name), delete_contents=True, not_found_ok=True)
        if "email" in columns("sales.customers") or "marketing.customer_emails" in {
            f"marketing.{t.table_id}" for t in client().list_tables(fq("marketing"))
        }:
            client().delete_table(fq("marketing.customer_emails"), not_found_ok=True)
            create_demo_prod_in(NS)

    reset()
    yield
    reset()


@pytest.fixture
def config(config_file: Any, demo_prod: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from envsync.core.config import load_config

    monkeypatch.setenv("ENVSYNC_MASKING_SALT", SALT)
    path = config_file(project=NS.virtual_project, state__bucket="envsync-migrate-state", tables={})
    monkeypatch.setenv("ENVSYNC_CONFIG", str(path))
    return load_config(path)


def runner(config: Any, run_id: str | None = None) -> Any:
    from envsync.bigquery.jobs import JobRunner
    from envsync.core.guard import GuardedBigQuery, WriteGuard

    bq = GuardedBigQuery(client(), WriteGuard.from_config(config), config.location)
    return JobRunner(
        bq, dag_id="promote_schema", run_id=run_id or f"manual__{uuid.uuid4().hex[:8]}", task_id="apply", timeout=120
    )


def ledger(config: Any) -> list[tuple[str, int, str]]:
    from envsync.migrations.ledger import read_ledger

    return [(r.environment, r.version, r.status) for r in read_ledger(config, client())]


def promote(config: Any, env: str, confirm: str | None = None) -> list[dict[str, Any]]:
    from envsync.migrations.ledger import apply, load_migrations, read_ledger, unapplied

    migrations = load_migrations(config)
    return apply(
        config,
        runner(config),
        env,
        unapplied(migrations, read_ledger(config, client()), env),
        files=migrations,
        ledger=read_ledger(config, client()),
        confirm=confirm,
    )


def migrations_report() -> list[dict[str, Any]]:
    """sql/reports/migrations_per_environment.sql on this kit's audit dataset."""
    sql = (REPO_ROOT / "sql" / "reports" / "migrations_per_environment.sql").read_text()
    sql = sql.replace("from envsync_audit.migrations", f"from `{PROJECT}.{ds('envsync_audit')}.migrations`")
    return [
        {k: r[k] for k in ("environment", "version", "ahead_of_prod", "not_here_yet", "failed")}
        for r in client().query(sql, job_retry=None).result()
    ]


def reseed_qa(run_dag: Any, config: Any) -> Any:
    from envsync.core.config import config_path

    return run_dag("reseed_environments", None, {"environments": ["qa"]}, config_path=config_path())


# ---------------------------------------------------------------------------------------------


def test_an_expand_migration_is_validated_applied_to_qa_and_recorded(
    fresh: None, migrations_dir: Path, config: Any, run_dag: Any
) -> None:
    dag_run = reseed_qa(run_dag, config)
    assert str(dag_run.state) == "success", states(dag_run)
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)

    results = promote(config, "qa")

    assert [(r["action"], r["status"], r["jobs"]) for r in results] == [("migrate", "ok", 3)]
    assert columns("qa_sales.customers")[-1] == "email"
    assert "email" not in columns("sales.customers")  # prod untouched
    emails = rows(f"select customer_id, email from `{PROJECT}.qa_marketing.customer_emails` order by 1")
    names = rows(f"select customer_id, name from `{PROJECT}.qa_sales.customers` order by 1")
    assert emails and [e["email"] for e in emails] == [f"{n['name'].lower()}@example.com" for n in names]
    assert ledger(config) == [("qa", 1, "applied")]
    assert not {d for d in datasets() if "migcheck" in d}  # the rehearsal datasets are gone


def test_a_statement_BigQuery_refuses_stops_before_anything_is_written_naming_file_and_line(
    fresh: None, migrations_dir: Path, config: Any, run_dag: Any
) -> None:
    from envsync.migrations.ledger import MigrationValidationError

    dag_run = reseed_qa(run_dag, config)
    assert str(dag_run.state) == "success", states(dag_run)
    before = columns("qa_sales.customers")
    # line 7 reads the column the ALTER on line 3 adds, misspelled: only a rehearsal with line 3
    # applied can tell that apart from a correct backfill
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL.replace("where email is null", "where emial is null"))

    with pytest.raises(MigrationValidationError) as caught:
        promote(config, "qa")

    assert "0001_add_email.sql:7: Unrecognized name: emial" in str(caught.value)
    assert "nothing was written" in str(caught.value)
    assert columns("qa_sales.customers") == before
    assert ledger(config) == []
    assert not {d for d in datasets() if "migcheck" in d}


def test_an_edited_applied_migration_is_refused(fresh: None, migrations_dir: Path, config: Any, run_dag: Any) -> None:
    from envsync.migrations.ledger import MigrationError

    dag_run = reseed_qa(run_dag, config)
    assert str(dag_run.state) == "success", states(dag_run)
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    promote(config, "qa")
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL.replace("@example.com", "@example.org"))
    (migrations_dir / "0002_more.sql").write_text(
        "-- envsync: phase=expand\nalter table sales.orders add column note string;\n"
    )

    with pytest.raises(MigrationError, match=r"0001_add_email.sql was edited after it was applied to qa"):
        promote(config, "qa")
    assert "note" not in columns("qa_sales.orders")
    assert ledger(config) == [("qa", 1, "applied")]


def contract_problems(config: Any, envs: list[str]) -> list[str]:
    """What the reseed's plan finds, computed the way its task does."""
    import logging

    from envsync.bigquery.discovery import discover_dataset
    from envsync.bigquery.jobs import JobStats
    from envsync.environments.reseed import Reseeder
    from envsync.operators.reseed import contract_groups, schema_migrations

    reseeder = Reseeder(config, runner(config), dt.datetime.now(dt.UTC))
    problems: list[str] = []
    for group in contract_groups(schema_migrations(config, reseeder.runner, envs, logging.getLogger("test"))):
        label = ", ".join(group["envs"]) if group["versions"] else ""
        name = f"{label}'s schema (prod + migrations {', '.join(map(str, group['versions']))})" if label else "prod"
        for dataset in config.prod.datasets:
            info = discover_dataset(client(), PROJECT, dataset)
            problems += reseeder.check_contract(
                info,
                reseeder.sources(info),
                JobStats(),
                migrated=group["schemas"],
                schema_name=name,
                ahead=frozenset(group["ahead"]),
                env=label,
            )
    return problems


def seeds_with_email(tmp_path: Path) -> Path:
    """The shipped seeds, with sales/customers yielding the email column the migration adds."""
    import shutil

    target = tmp_path / "seeds"
    shutil.copytree(REPO_ROOT / "sql" / "seeds", target)
    add_customer_seed_columns(target, email="concat('seed', cast(customer_id as string), '@example.com')")
    return target


def test_a_reseed_of_qa_after_a_promotion_keeps_the_migrated_schema(
    fresh: None, migrations_dir: Path, config: Any, config_file: Any, run_dag: Any, tmp_path: Path
) -> None:
    dag_run = reseed_qa(run_dag, config)
    assert str(dag_run.state) == "success", states(dag_run)
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    promote(config, "qa")
    seeds = seeds_with_email(tmp_path)
    path = config_file(
        project=NS.virtual_project, state__bucket="envsync-migrate-state", tables={}, seeds__dir=str(seeds)
    )

    dag_run = run_dag("reseed_environments", None, {"environments": ["qa", "staging"]}, config_path=path)

    assert str(dag_run.state) == "success", states(dag_run)
    assert columns("qa_sales.customers") == ["customer_id", "name", "segment", "country", "email"]
    got = rows(f"select customer_id, email from `{PROJECT}.qa_sales.customers` order by 1")
    assert got == [{"customer_id": i, "email": f"seed{i}@example.com"} for i in range(1, 21)]
    assert len(rows(f"select * from `{PROJECT}.qa_marketing.customer_emails`")) == 20
    # staging never had the migration: prod's schema, the seed's email column left out
    assert columns("staging_sales.customers") == ["customer_id", "name", "segment", "country"]
    assert len(rows(f"select * from `{PROJECT}.staging_sales.customers`")) == 20
    assert ledger(config) == [("qa", 1, "applied"), ("qa", 1, "applied")]
    assert not {d for d in datasets() if "migcheck" in d}
    assert migrations_report() == [
        {"environment": "prod", "version": None, "ahead_of_prod": [], "not_here_yet": [1], "failed": []},
        {"environment": "staging", "version": None, "ahead_of_prod": [], "not_here_yet": [1], "failed": []},
        {"environment": "qa", "version": 1, "ahead_of_prod": [1], "not_here_yet": [], "failed": []},
        {"environment": "dev", "version": None, "ahead_of_prod": [], "not_here_yet": [1], "failed": []},
    ]


def test_a_seed_that_does_not_fit_the_promoted_schema_fails_the_reseed_before_anything_is_dropped(
    fresh: None, migrations_dir: Path, config: Any, run_dag: Any
) -> None:
    dag_run = reseed_qa(run_dag, config)
    assert str(dag_run.state) == "success", states(dag_run)
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    promote(config, "qa")
    before = rows(f"select to_json_string(t) as j from `{PROJECT}.qa_sales.customers` as t order by 1")
    qa_tables = sorted(t.table_id for t in client().list_tables(fq("qa_sales")))

    dag_run = reseed_qa(run_dag, config)  # the shipped seeds have no email column

    assert str(dag_run.state) == "failed"
    assert states(dag_run)["plan[-1]"] == "failed"
    assert not any(v == "success" for k, v in states(dag_run).items() if k.startswith("reseed")), states(dag_run)
    assert contract_problems(config, ["qa"]) == [
        f"qa: {tref('sales.customers')}: column email is in qa's schema (prod + migrations 1) but not in the seed"
    ]
    assert rows(f"select to_json_string(t) as j from `{PROJECT}.qa_sales.customers` as t order by 1") == before
    assert sorted(t.table_id for t in client().list_tables(fq("qa_sales"))) == qa_tables
    assert ledger(config) == [("qa", 1, "applied")]


def test_prod_is_migrated_only_through_the_guard_with_the_phrase_and_the_weekly_sync_brings_it_to_dev(
    fresh: None, migrations_dir: Path, config: Any, run_dag: Any
) -> None:
    from envsync.core.config import config_path
    from envsync.core.guard import ProdWriteRefused
    from envsync.migrations.ledger import pending, read_ledger

    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    for confirm in (None, "apply schema migrations 2 to prod"):
        with pytest.raises(
            ProdWriteRefused, match="set the confirm param to exactly: apply schema migrations 1 to prod"
        ):
            promote(config, "prod", confirm=confirm)
    assert "email" not in columns("sales.customers") and ledger(config) == []

    results = promote(config, "prod", confirm="apply schema migrations 1 to prod")

    assert [(r["action"], r["status"]) for r in results] == [("migrate", "ok")]
    assert columns("sales.customers")[-1] == "email"
    assert ledger(config) == [("prod", 1, "applied")]
    dag_run = run_dag("prod_to_dev_sync", dt.datetime(2026, 11, 21, 2, tzinfo=dt.UTC), {}, config_path=config_path())
    assert str(dag_run.state) == "success", states(dag_run)
    assert columns("dev_sales.customers")[-1] == "email"
    assert (
        rows(f"select count(*) as n from `{PROJECT}.dev_marketing.customer_emails` where email like '%@example.com'")[
            0
        ]["n"]
        == rows(f"select count(*) as n from `{PROJECT}.sales.customers`")[0]["n"]
    )
    assert ledger(config) == [("prod", 1, "applied"), ("dev", 1, "synced")]
    assert [(r["environment"], r["version"], r["ahead_of_prod"], r["not_here_yet"]) for r in migrations_report()] == [
        ("prod", 1, [], []),
        ("staging", None, [], [1]),
        ("qa", None, [], [1]),
        ("dev", 1, [], []),
    ]
    from envsync.migrations.ledger import load_migrations

    assert pending(load_migrations(config), read_ledger(config, client()), "dev") == []


# ------------------------------------------------------------- runs that build on earlier runs


def test_the_weekly_dev_sync_keeps_succeeding_once_prod_holds_a_migration(
    fresh: None, migrations_dir: Path, config: Any, run_dag: Any
) -> None:
    """The first sync records prod's version 1 as synced for dev; the next week's sync checks dev's
    history against every migration file (not only the pending ones, of which there are none)."""
    from envsync.core.config import config_path

    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    promote(config, "prod", confirm="apply schema migrations 1 to prod")

    for day in (21, 28):  # two Saturdays, a week apart
        dag_run = run_dag(
            "prod_to_dev_sync", dt.datetime(2026, 11, day, 2, tzinfo=dt.UTC), {}, config_path=config_path()
        )
        assert str(dag_run.state) == "success", (day, states(dag_run))
        assert columns("dev_sales.customers")[-1] == "email"
    assert ledger(config) == [("prod", 1, "applied"), ("dev", 1, "synced")]  # synced once, not again


def test_the_sunday_reseed_after_a_promotion_to_prod_records_prods_versions_as_synced(
    fresh: None, migrations_dir: Path, config: Any, config_file: Any, run_dag: Any, tmp_path: Path
) -> None:
    """qa holds version 1 (promoted), prod then gets it too: the reseed rebuilds qa and staging from
    prod (nothing pending) and records 1 as synced for both, as the README says."""
    dag_run = reseed_qa(run_dag, config)
    assert str(dag_run.state) == "success", states(dag_run)
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    promote(config, "qa")
    promote(config, "prod", confirm="apply schema migrations 1 to prod")
    path = config_file(
        project=NS.virtual_project,
        state__bucket="envsync-migrate-state",
        tables={},
        seeds__dir=str(seeds_with_email(tmp_path)),
    )

    for _week in (1, 2):
        dag_run = run_dag("reseed_environments", None, {"environments": ["qa", "staging"]}, config_path=path)
        assert str(dag_run.state) == "success", states(dag_run)

    for env in ("qa", "staging"):
        assert columns(f"{env}_sales.customers")[-1] == "email"
        got = rows(f"select customer_id, email from `{PROJECT}.{env}_sales.customers` order by 1")
        assert got == [{"customer_id": i, "email": f"seed{i}@example.com"} for i in range(1, 21)]
    assert ledger(config) == [
        ("qa", 1, "applied"),
        ("prod", 1, "applied"),
        ("qa", 1, "synced"),
        ("staging", 1, "synced"),
    ]


def test_a_reseed_whose_migration_fails_after_the_rebuild_leaves_the_environment_seeded_and_says_what_is_missing(
    fresh: None,
    migrations_dir: Path,
    config: Any,
    config_file: Any,
    run_dag: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """qa holds version 1, prod does not. The reseed rebuilds qa from prod; applying 1 again fails
    (BigQuery refuses the job at run time). qa keeps its seed rows on prod's schema, the ledger says
    qa no longer holds 1, and the migrate task fails naming it."""
    from google.api_core.exceptions import BadRequest

    from envsync.bigquery.jobs import JobRunner

    dag_run = reseed_qa(run_dag, config)
    assert str(dag_run.state) == "success", states(dag_run)
    (migrations_dir / "0001_add_email.sql").write_text(ADD_EMAIL)
    promote(config, "qa")
    path = config_file(
        project=NS.virtual_project,
        state__bucket="envsync-migrate-state",
        tables={},
        seeds__dir=str(seeds_with_email(tmp_path)),
    )
    real_run = JobRunner.run

    def refused_on_qa(self: Any, sql: str, *, key: tuple[str, ...], **kwargs: Any) -> Any:
        if key[:2] == ("migrate", "qa"):
            raise BadRequest("Exceeded rate limits: too many table update operations for this table")
        return real_run(self, sql, key=key, **kwargs)

    monkeypatch.setattr(JobRunner, "run", refused_on_qa)
    dag_run = run_dag("reseed_environments", None, {"environments": ["qa"]}, config_path=path)

    assert str(dag_run.state) == "failed"
    assert states(dag_run)["migrate[-1]"] == "failed", states(dag_run)
    assert columns("qa_sales.customers") == ["customer_id", "name", "segment", "country"]  # prod's schema
    assert len(rows(f"select * from `{PROJECT}.qa_sales.customers`")) == 20  # seeded, not empty
    assert ledger(config) == [("qa", 1, "applied"), ("qa", 1, "failed")]
    from envsync.migrations.ledger import load_migrations, pending, read_ledger, unapplied

    held = read_ledger(config, client())
    assert pending(load_migrations(config), held, "qa") == []
    assert [m.version for m in unapplied(load_migrations(config), held, "qa")] == [1]  # a promotion may re-apply it
    from envsync.operators.common import manifest_store

    store = manifest_store(config, "google_cloud_default")
    prefix = store.run_prefix("reseed_environments", dag_run.run_id)
    [failed] = [r for r in store.read(f"{prefix}/results/migrate.json")["results"] if r["status"] == "failed"]
    assert failed["table"] == "migration 1"
    assert "qa was rebuilt from prod but its pending migrations [1] could not be applied again" in failed["error"]
    assert "qa now holds prod's schema" in failed["error"]
    seeded = [r for r in store.read(f"{prefix}/results/migrate.json")["results"] if r["action"] == "seed"]
    assert {r["status"] for r in seeded} == {"ok"} and len(seeded) >= 1
