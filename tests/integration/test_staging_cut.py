"""The QA -> staging cut (staging_cut) through Airflow on the emulators: a cut makes staging's
fingerprints QA's as of T; a cut that fails verification, or fails while publishing, leaves staging's
fingerprints as they were. A cut carries QA's migrations over as staging's (migration ledger), a failed
one records nothing there. Prod is backupkit's `shop`; qa_shop and staging_shop come from cutkit."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from backupkit import PROJECT, client, ds, fq, make_prod, query, report, states, store, table_names, tref, write_config
from cutkit import SEED_VERSION, fingerprints, make_qa, make_staging, views
from testkit import REPO_ROOT

pytestmark = pytest.mark.integration
UTC = dt.UTC


@pytest.fixture
def envs(emulators: Any) -> None:
    make_prod()
    make_qa()
    make_staging()
    # staging's own view and a staging-only table: what the cut replaces and drops
    query(
        f"create or replace view `{PROJECT}.staging_shop.big_orders` as "
        f"select * from `{PROJECT}.staging_shop.orders` where amount > 80"
    )
    query(f"create table `{PROJECT}.staging_shop.notes` as select 1 as id, 'staging only' as note")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path / "envsync.yaml")


def staging_state() -> dict[str, Any]:
    return {
        "fingerprints": fingerprints("staging_shop"),
        "notes": fingerprints("staging_shop", ("notes",)),
        "tables": table_names("staging_shop"),
        "views": views("staging_shop"),
    }


def test_a_cut_copies_qa_to_staging_with_identical_fingerprints(envs: None, run_dag: Any, cfg: Path) -> None:
    qa = fingerprints("qa_shop")
    assert fingerprints("staging_shop") != qa
    dag_run = run_dag("staging_cut", None, {"datasets": [ds("shop")]}, config_path=cfg)
    assert str(dag_run.state) == "success", states(dag_run)

    assert fingerprints("staging_shop") == qa
    assert table_names("staging_shop") == {"orders", "customers", "big_orders"}  # notes dropped, no stage left
    view = views("staging_shop")["big_orders"]
    assert ds("staging_shop") in view and ds("qa_shop") not in view and "amount > 50" in view
    assert [r["amount"] > 50 for r in query(f"select amount from `{PROJECT}.staging_shop.big_orders`")] != []
    orders = client().get_table(fq("staging_shop.orders"))
    # a standard table (published by a copy job), partitioned as qa's: a new clone/snapshot chain
    assert orders.table_type == "TABLE" and orders.time_partitioning.field == "d"

    # the cut is recorded: T, QA's seed version, the migration version (null: qa holds no migration)
    plan = report("staging_cut")
    record = plan["staging_cut"]
    current = store().read("staging_cut/current.json")
    assert current is not None and current["cut"] == record["cut"] == plan["cut"]
    assert (current["seed_version"], current["migration_version"]) == (SEED_VERSION, None)
    staged = {r["table"]: r for r in plan["results"] if r["action"] == "stage"}
    assert set(staged) == {tref("qa_shop.orders"), tref("qa_shop.customers")}
    assert all(r["checksum"] == r["expected_checksum"] for r in staged.values())
    labels = client().get_dataset(fq("staging_shop")).labels
    assert labels["envsync-seed-version"] == SEED_VERSION and labels["envsync-env"] == "staging"
    [audit] = query(f"select * from `{PROJECT}.envsync_audit.staging_cuts` where run_id = @r", r=dag_run.run_id)
    assert audit["status"] == "success" and audit["seed_version"] == SEED_VERSION
    assert audit["migration_version"] is None
    assert audit["cut"] == dt.datetime.fromisoformat(record["cut"])

    # staging was pinned first, by the ladder's pinned backups, with the state before the cut
    pins = {t.table_id.split("__")[0]: t for t in client().list_tables(fq("backup_staging_shop"))}
    assert set(pins) == {"orders", "customers", "notes"}
    assert all(t.labels["envsync-pinned"] == "true" for t in pins.values())
    assert audit["pinned_backups"].count(ds("backup_staging_shop")) == 3

    # the cut tables can be snapshotted by the ladder and restored from it (chain depth within limits)
    cfg_staging = write_config(cfg.parent / "staging.yaml", environments=["staging"])
    ladder = run_dag("backup_ladder", None, {}, config_path=cfg_staging)
    assert str(ladder.state) == "success", states(ladder)


def test_a_cut_that_fails_verification_leaves_staging_unchanged(envs: None, run_dag: Any, cfg: Path) -> None:
    from envsync.environments.cut import CutSync

    before = staging_state()
    build = CutSync._build

    def lossy_build(self: Any, action: Any, info: Any, source: Any, stage: Any, stats: Any) -> None:
        build(self, action, info, source, stage, stats)
        if action.table == "orders":  # a stage that lost a row (a faulty copy)
            self.runner.run(f"delete from {stage.sql} where id = 20", key=("lossy", action.table))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CutSync, "_build", lossy_build)
        failed = run_dag("staging_cut", None, {}, config_path=cfg)
    assert str(failed.state) == "failed"
    assert states(failed)["stage[0]"] == "failed" and states(failed)["publish[-1]"] == "failed", states(failed)
    assert staging_state() == before  # fingerprints, tables, views: as they were
    rows = {r["table"]: r for r in report("staging_cut")["results"]}
    assert "qa as of T has 35 rows" in rows[tref("qa_shop.orders")]["error"]
    assert "not published, staging left as it was" in rows[ds("staging_shop")]["error"]
    assert store().read("staging_cut/current.json") is None
    [audit] = query(f"select status from `{PROJECT}.envsync_audit.staging_cuts` where run_id = @r", r=failed.run_id)
    assert audit["status"] == "failed"


def test_a_cut_that_fails_while_publishing_is_rolled_back_from_the_pins(envs: None, run_dag: Any, cfg: Path) -> None:
    from envsync.environments.cut import CutSync

    before = staging_state()
    publish = CutSync.publish_table

    def failing_publish(self: Any, plan: Any, action: Any, stats: Any) -> str:
        if action.table == "orders":  # customers is already published when this fails
            raise RuntimeError("injected: the copy job of orders failed")
        return publish(self, plan, action, stats)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CutSync, "publish_table", failing_publish)
        failed = run_dag("staging_cut", None, {}, config_path=cfg)
    assert str(failed.state) == "failed"
    assert states(failed)["publish[-1]"] == "failed", states(failed)
    assert staging_state() == before
    results = report("staging_cut")["results"]
    rolled = {r["table"] for r in results if r["action"] == "rollback" and r["status"] == "ok"}
    assert {tref("staging_shop.orders"), tref("staging_shop.customers"), tref("staging_shop.notes")} <= rolled
    [error] = [r["error"] for r in results if r["action"] == "publish" and r["status"] == "failed"]
    assert "injected: the copy job of orders failed" in error and "rolled back to the pinned backups" in error


def test_a_cut_without_qa_is_refused_before_anything_is_written(envs: None, run_dag: Any, cfg: Path) -> None:
    client().delete_dataset(fq("qa_shop"), delete_contents=True)
    before = staging_state()
    refused = run_dag("staging_cut", None, {}, config_path=cfg)
    assert str(refused.state) == "failed" and states(refused)["plan[-1]"] == "failed"
    assert staging_state() == before
    assert ds("backup_staging_shop") not in {d.dataset_id for d in client().list_datasets()}


ADD_EMAIL = """-- envsync: phase=expand
alter table shop.customers add column email string;
"""
HOTFIX_NOTES = """-- envsync: phase=expand
create table shop.hotfix_notes (id int64, note string);
"""


def apply_migrations(cfg: Path, directory: Path, env: str, versions: list[int]) -> Any:
    """Apply migrations `versions` of `directory` to `env` through the library, as promote_schema does."""
    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import load_config
    from envsync.core.guard import GuardedBigQuery, WriteGuard
    from envsync.migrations.ledger import apply, load_migrations, read_ledger

    config = load_config(cfg)
    runner = JobRunner(
        GuardedBigQuery(client(), WriteGuard.from_config(config), config.location),
        dag_id="promote_schema",
        run_id=f"manual__{uuid.uuid4().hex[:8]}",
        task_id="apply",
        timeout=120,
    )
    files = load_migrations(config, directory)
    todo = [m for m in files if m.version in versions]
    apply(config, runner, env, todo, files=files, ledger=read_ledger(config, client()))
    return config


def staging_ledger(config: Any) -> list[tuple[int, str, str | None, str | None]]:
    from envsync.migrations.ledger import read_ledger

    return [
        (r.version, r.status, r.dag_id, r.run_id) for r in read_ledger(config, client()) if r.environment == "staging"
    ]


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    path = tmp_path / "migrations"
    path.mkdir()
    (path / "0001_add_email.sql").write_text(ADD_EMAIL)
    (path / "0002_hotfix_notes.sql").write_text(HOTFIX_NOTES)
    return path


def cuts_report() -> list[dict[str, Any]]:
    """sql/reports/staging_cuts.sql on this kit's audit dataset."""
    sql = (REPO_ROOT / "sql" / "reports" / "staging_cuts.sql").read_text()
    return query(sql.replace("from envsync_audit.staging_cuts", f"from `{PROJECT}.{ds('envsync_audit')}.staging_cuts`"))


@pytest.mark.slow
def test_a_cut_carries_qas_migrations_over_as_stagings(envs: None, run_dag: Any, cfg: Path, migrations: Path) -> None:
    from envsync.migrations.ledger import REVERTED, SYNCED, applied, load_migrations, read_ledger
    from envsync.migrations.promote import check_gates

    config = apply_migrations(cfg, migrations, "qa", [1])  # promoted to qa: qa_shop.customers.email
    apply_migrations(cfg, migrations, "staging", [2])  # a hotfix on staging that skipped qa
    assert "hotfix_notes" in table_names("staging_shop")
    m1, m2 = load_migrations(config, migrations)
    # before the cut, promote_schema's gate refuses 1 for prod: staging does not hold it
    with pytest.raises(Exception, match="staging has not applied it"):
        check_gates([m1], read_ledger(config, client()), "prod", "normal")

    dag_run = run_dag("staging_cut", None, {"datasets": [ds("shop")]}, config_path=cfg)
    assert str(dag_run.state) == "success", states(dag_run)

    # staging's schema is qa's: the email column came with the copy, the hotfix's table is gone
    assert "email" in [f.name for f in client().get_table(fq("staging_shop.customers")).schema]
    assert "hotfix_notes" not in table_names("staging_shop")
    # the cut recorded qa's migration version, in the plan, as staging's current state and in the audit
    plan = report("staging_cut")
    assert plan["staging_cut"]["migration_version"] == "1"
    assert store().read("staging_cut/current.json")["migration_version"] == "1"
    [audit] = query(f"select * from `{PROJECT}.envsync_audit.staging_cuts` where run_id = @r", r=dag_run.run_id)
    assert (audit["status"], audit["migration_version"]) == ("success", "1")
    [latest] = cuts_report()
    assert (
        latest["run_id"],
        latest["t"],
        latest["seed_version"],
        latest["migration_version"],
        latest["status"],
        latest["is_latest_success"],
    ) == (dag_run.run_id, audit["cut"], SEED_VERSION, "1", "success", True)
    # the ledger: 1 synced into staging by this cut, the hotfix 2 reverted there
    ledger = read_ledger(config, client())
    cut_rows = [(v, s) for v, s, dag, run in staging_ledger(config) if (dag, run) == ("staging_cut", dag_run.run_id)]
    assert cut_rows == [(1, SYNCED), (2, REVERTED)]
    assert list(applied(ledger, "staging")) == list(applied(ledger, "qa")) == [1]
    [carried] = [r for r in plan["results"] if r["action"] == "migrations"]
    assert (carried["status"], carried["synced"], carried["reverted"]) == ("ok", [1], [2])
    # promote_schema's gate to prod now sees staging holding 1; the hotfix must reach staging again
    assert check_gates([m1], ledger, "prod", "normal") == []
    with pytest.raises(Exception, match="staging has not applied it"):
        check_gates([m2], ledger, "prod", "hotfix")


@pytest.mark.slow
def test_a_failed_cut_records_nothing_in_the_migration_ledger(
    envs: None, run_dag: Any, cfg: Path, migrations: Path
) -> None:
    from envsync.environments.cut import CutSync

    config = apply_migrations(cfg, migrations, "qa", [1])
    apply_migrations(cfg, migrations, "staging", [2])
    before = staging_ledger(config)
    assert [(v, s) for v, s, _, _ in before] == [(2, "applied")]
    publish = CutSync.publish_table

    def failing_publish(self: Any, plan: Any, action: Any, stats: Any) -> str:
        if action.table == "orders":
            raise RuntimeError("injected: the copy job of orders failed")
        return publish(self, plan, action, stats)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CutSync, "publish_table", failing_publish)
        failed = run_dag("staging_cut", None, {}, config_path=cfg)
    assert str(failed.state) == "failed" and states(failed)["publish[-1]"] == "failed", states(failed)
    assert "hotfix_notes" in table_names("staging_shop")  # rolled back: staging as it was
    assert staging_ledger(config) == before  # and its ledger untouched
    assert not [r for r in report("staging_cut")["results"] if r["action"] == "migrations"]
    [audit] = query(f"select * from `{PROJECT}.envsync_audit.staging_cuts` where run_id = @r", r=failed.run_id)
    assert (audit["status"], audit["migration_version"]) == ("failed", "1")
    [latest] = cuts_report()
    assert (latest["run_id"], latest["status"], latest["is_latest_success"]) == (failed.run_id, "failed", False)
