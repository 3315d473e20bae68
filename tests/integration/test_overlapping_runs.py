"""Two runs against one environment at once: one writer per environment across all DAGs (the lease),
and a run that dies leaves nothing behind.

Each test starts two real DAG runs concurrently, each in an OS process of its own (its own Airflow
home and metadata database: another deployment, tests/integration/dagproc.py), on emulators of this
test's own (`estate`). The second run starts once the first holds the environment's lease. In every
case the environment ends equal to one complete run's result (the fingerprints that run recorded,
re-read), no stage table is left, the loser's log names the winner, and the audit has both runs.

The emulator answers every job after a configurable latency (bqfidelity.latency), so a run is still
working when the other starts, and a run killed mid-way leaves a BigQuery job running.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sandbox

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.overlap, pytest.mark.gcp_incompatible]

NS = sandbox.namespace("envsync-overlap")
PROJECT = NS.project
BUCKET = "envsync-overlap-state"
SALT = "overlap-salt-not-a-secret"
STAGE_SUFFIXES = ("__envsync_stage", "__restore")
ADD_EMAIL = """-- envsync: phase=expand
-- customers get an email address
alter table sales.customers add column email string;
"""
REFUNDS = """-- envsync: phase=expand
-- refunds get a table of their own (no seed: created empty in qa and staging)
create table sales.refunds (refund_id int64, order_id int64, refunded_on date, amount numeric);
"""


def client() -> Any:
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def leases() -> Any:
    from envsync.core.clients import storage_client
    from envsync.core.lease import Leases

    return Leases(storage_client(PROJECT), BUCKET)


def store() -> Any:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    return ManifestStore(storage_client(PROJECT), BUCKET)


@dataclass
class Estate:
    config: Path
    latency: Path
    migrations: Path

    def slow(self, seconds: float) -> None:
        """Every BigQuery job from now on waits `seconds` before it runs (0: none)."""
        self.latency.write_text(f"{seconds}\n")

    def cfg(self) -> Any:
        from envsync.core.config import load_config

        return load_config(self.config)


@pytest.fixture
def estate(
    make_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_file: Any, migrations_dir: Path
) -> Estate:
    """Emulators of this test's own (with a job-latency file), the demo prod, and a config whose leases
    do not wait (a second writer fails at once) and go stale after 10 s."""
    from envsync.dev import devstack
    from envsync.dev.demo import create_demo_prod

    latency = tmp_path / "latency"
    latency.write_text("0\n")
    stack = make_stack(latency_file=latency)
    devstack.up(stack, timeout=120)
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ENVSYNC_MASKING_SALT", SALT)
    create_demo_prod(
        client(), PROJECT, "US", 200, (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date(), dataset_prefix=NS.prefix
    )
    path = config_file(
        project=NS.virtual_project,
        state__bucket=BUCKET,
        alerts__enabled=False,
        backups__environments=["prod", "staging"],
        leases__wait_seconds=0,
        leases__poll_seconds=1,
        leases__heartbeat_seconds=2,
        leases__stale_after_seconds=10,
    )
    monkeypatch.setenv("ENVSYNC_CONFIG", str(path))
    return Estate(path, latency, migrations_dir)


# ----------------------------------------------------------------------------------------- checks


def wait_for_lease(env: str, dag_id: str, timeout: float = 180) -> Any:
    """The holder of `env`'s lease once a run of `dag_id` holds it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = leases().read(env)
        if state is not None and state.holder.dag_id == dag_id:
            return state.holder
        time.sleep(0.3)
    raise AssertionError(f"no run of {dag_id} took the lease of {env} within {timeout:g} s")


def recorded_fingerprints(dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    """What the run's units recorded, as its report task reads it (envsync.operators.common)."""
    from envsync.operators.common import recorded_fingerprints as recorded

    prefix = store().run_prefix(dag_id, run_id)
    plan = store().read(f"{prefix}/plan.json")
    assert plan is not None, f"{dag_id} {run_id} recorded no plan"
    return recorded(store(), prefix, plan)


def assert_environment_is_the_winners(dag_id: str, run_id: str, datasets: list[str]) -> int:
    """Every table the winning run wrote holds what it recorded; no stage table is left in `datasets`."""
    from envsync.bigquery.verify import fingerprint

    recorded = recorded_fingerprints(dag_id, run_id)
    assert recorded, f"{dag_id} {run_id} recorded no fingerprints"
    now = {target: fingerprint(client(), PROJECT, target) for target in recorded}
    assert now == recorded
    leftovers = [
        f"{ds}.{t.table_id}"
        for ds in datasets
        for t in client().list_tables(f"{PROJECT}.{ds}")
        if t.table_id.endswith(STAGE_SUFFIXES)
    ]
    assert leftovers == []
    return len(recorded)


def audit_runs(estate: Estate, *run_ids: str) -> dict[str, dict[str, Any]]:
    from google.cloud import bigquery

    sql = (
        f"select run_id, dag_id, status, error from `{PROJECT}.{estate.cfg().audit.dataset}.runs` "
        "where run_id in unnest(@ids)"
    )
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ArrayQueryParameter("ids", "STRING", list(run_ids))])
    return {r["run_id"]: dict(r) for r in client().query(sql, job_config=config, job_retry=None).result()}


def env_datasets(estate: Estate, env: str) -> list[str]:
    from envsync.operators.leasing import env_datasets as datasets

    return datasets(estate.cfg(), env)


def overlap(
    estate: Estate,
    dag_processes: Any,
    first: tuple[str, dict[str, Any]],
    env: str,
    second: tuple[str, dict[str, Any]],
    *,
    latency: float = 0.4,
    second_env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """Start `first`; once it holds `env`'s lease, start `second`; wait for both."""
    estate.slow(latency)  # the first run is still working when the second starts
    a = dag_processes(first[0], conf=first[1])
    holder = wait_for_lease(env, first[0])
    b = dag_processes(second[0], conf=second[1], env=second_env)
    b_result = b.wait(timeout=600)
    a_result = a.wait(timeout=600)
    estate.slow(0)
    assert a_result["run_id"] == holder.run_id
    return a_result, b_result, a, b


def assert_loser_named_the_winner(estate: Estate, winner: dict[str, Any], loser: dict[str, Any], log: str) -> None:
    assert winner["state"] == "success", winner
    assert loser["state"] == "failed", loser
    assert f"is being written by run {winner['run_id']} of DAG {winner['dag_id']}" in log
    audited = audit_runs(estate, winner["run_id"], loser["run_id"])
    assert audited[winner["run_id"]]["status"] == "success"
    assert audited[loser["run_id"]]["status"] == "failed"
    assert winner["run_id"] in audited[loser["run_id"]]["error"]


# ------------------------------------------------------------------------------------------ tests


def test_a_cut_started_during_a_staging_reseed_writes_nothing_and_names_the_reseed(
    estate: Estate, run_dag: Any, dag_processes: Any
) -> None:
    assert run_dag("reseed_environments", None, {}, config_path=estate.config).state == "success"  # qa and staging
    staging, qa = env_datasets(estate, "staging"), env_datasets(estate, "qa")
    qa_before = {t: v for t, v in recorded_fingerprints_now(qa).items()}

    reseed, cut, _, cut_proc = overlap(
        estate,
        dag_processes,
        ("reseed_environments", {"environments": ["staging"]}),
        "staging",
        ("staging_cut", {}),
    )

    assert_loser_named_the_winner(estate, reseed, cut, cut_proc.log_text())
    pins = [state for task, state in cut["tasks"].items() if task.startswith("pin")]
    assert pins and set(pins) <= {"upstream_failed", "skipped"}, cut  # nothing of the cut ran
    assert assert_environment_is_the_winners("reseed_environments", reseed["run_id"], staging) > 0
    assert recorded_fingerprints_now(qa) == qa_before  # qa was only ever read
    assert leases().read("staging") is None and leases().read("qa") is None


def recorded_fingerprints_now(datasets: list[str]) -> dict[str, Any]:
    from envsync.bigquery.verify import fingerprint

    return {
        f"{ds}.{t.table_id}": fingerprint(client(), PROJECT, f"{ds}.{t.table_id}")
        for ds in datasets
        for t in client().list_tables(f"{PROJECT}.{ds}")
    }


def test_the_ladder_skips_staging_while_a_reseed_rebuilds_it_and_says_so(
    estate: Estate, run_dag: Any, dag_processes: Any
) -> None:
    assert run_dag("reseed_environments", None, {"environments": ["staging"]}, config_path=estate.config).state == (
        "success"
    )

    reseed, ladder, _, ladder_proc = overlap(
        estate,
        dag_processes,
        ("reseed_environments", {"environments": ["staging"]}),
        "staging",
        ("backup_ladder", {"environments": ["staging"]}),
    )

    assert reseed["state"] == "success" and ladder["state"] == "success", (reseed, ladder)
    # the reseed holds staging's lease when the ladder plans, or released it between the ladder's T and
    # its plan (backups.busy_sources): either way staging is skipped, naming the reseed's run
    log = ladder_proc.log_text()
    assert (
        f"not backing up staging this run: staging is being written by run {reseed['run_id']}" in log
        or "not backing up staging this run: staging was being written at T = " in log
        and f"by run {reseed['run_id']} of DAG reseed_environments" in log
    ), log[-3000:]
    assert assert_environment_is_the_winners("reseed_environments", reseed["run_id"], env_datasets(estate, "staging"))
    # no snapshot of a half-seeded staging: the ladder took none, so no drill can restore one
    snapshots = [
        t.table_id
        for ds in env_datasets(estate, "backup_staging")
        if ds in {d.dataset_id for d in client().list_datasets()}
        for t in client().list_tables(f"{PROJECT}.{ds}")
    ]
    assert snapshots == []
    audited = audit_runs(estate, reseed["run_id"], ladder["run_id"])
    assert {audited[r]["status"] for r in audited} == {"success"} and len(audited) == 2


def test_a_promotion_to_qa_during_a_qa_reseed_writes_nothing_and_the_ledger_stays_true(
    estate: Estate, run_dag: Any, dag_processes: Any
) -> None:
    from envsync.migrations.ledger import read_ledger

    (estate.migrations / "0001_add_email.sql").write_text(ADD_EMAIL)
    assert run_dag("reseed_environments", None, {"environments": ["qa"]}, config_path=estate.config).state == (
        "success"
    )

    reseed, promote, _, promote_proc = overlap(
        estate,
        dag_processes,
        ("reseed_environments", {"environments": ["qa"]}),
        "qa",
        ("promote_schema", {"target": "qa"}),
    )

    assert_loser_named_the_winner(estate, reseed, promote, promote_proc.log_text())
    assert assert_environment_is_the_winners("reseed_environments", reseed["run_id"], env_datasets(estate, "qa"))
    qa_customers = next(ds for ds in env_datasets(estate, "qa") if ds.endswith("sales"))
    assert "email" not in [f.name for f in client().get_table(f"{PROJECT}.{qa_customers}.customers").schema]
    qa_rows = [r for r in read_ledger(estate.cfg(), client()) if r.environment == "qa"]
    assert not [r for r in qa_rows if r.status == "applied"], qa_rows  # the ledger says what qa holds


def test_a_prod_restore_during_a_prod_migration_writes_nothing(
    estate: Estate, run_dag: Any, dag_processes: Any, tmp_path: Path
) -> None:
    from envsync.core.guard import confirmation_phrase, migration_confirmation_phrase

    (estate.migrations / "0001_refunds.sql").write_text(REFUNDS)
    for target in ("qa", "staging"):
        assert run_dag("reseed_environments", None, {"environments": [target]}, config_path=estate.config).state == (
            "success"
        )
        assert run_dag("promote_schema", None, {"target": target}, config_path=estate.config).state == "success"
    point = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).replace(microsecond=0)
    sales = NS.ds("sales")
    live = tmp_path / "live.yaml"
    live.write_text(estate.config.read_text().replace("stale_after_seconds: 10", "stale_after_seconds: 300"))
    assert "stale_after_seconds: 300" in live.read_text()

    promote, restore, _, restore_proc = overlap(
        estate,
        dag_processes,
        ("promote_schema", {"target": "prod", "confirm": migration_confirmation_phrase([1])}),
        "prod",
        (
            "restore",
            {
                "dataset": "sales",
                "point_in_time": point.isoformat(),
                "target": sales,
                "confirm": confirmation_phrase(sales, point),
            },
        ),
        # the promotion's few prod jobs must outlast the restore's start-up (a new Airflow process,
        # 10-15 s on a busy 2-core machine): slower jobs keep prod leased until the restore asks. The
        # promotion's plan task renews no lease, so the restore judges staleness with a window longer
        # than that plan (this test is about a live writer, not a dead one)
        latency=2.0,
        second_env={"ENVSYNC_CONFIG": str(live)},
    )

    assert_loser_named_the_winner(estate, promote, restore, restore_proc.log_text())
    assert [f.name for f in client().get_table(f"{PROJECT}.{sales}.refunds").schema][0] == "refund_id"
    assert assert_environment_is_the_winners("promote_schema", promote["run_id"], env_datasets(estate, "prod"))


def test_two_deployments_syncing_dev_run_one_after_the_other(
    estate: Estate, dag_processes: Any, config_file: Any, tmp_path: Path
) -> None:
    patient = tmp_path / "patient.yaml"
    patient.write_text(estate.config.read_text().replace("wait_seconds: 0", "wait_seconds: 300"))
    assert "wait_seconds: 300" in patient.read_text()

    first, second, first_proc, second_proc = overlap(
        estate,
        dag_processes,
        ("prod_to_dev_sync", {}),
        "dev",
        ("prod_to_dev_sync", {}),
        second_env={"ENVSYNC_CONFIG": str(patient)},
    )

    assert first["state"] == "success" and second["state"] == "success", (first, second)
    log = second_proc.log_text()
    assert f"environment dev is being written by run {first['run_id']} of DAG prod_to_dev_sync" in log
    assert "waiting" in log
    assert first_proc.log_text().count("taking the leases of dev") == 1
    # the second ran after the first released dev: dev is the second's result
    assert assert_environment_is_the_winners("prod_to_dev_sync", second["run_id"], env_datasets(estate, "dev"))
    audited = audit_runs(estate, first["run_id"], second["run_id"])
    assert {audited[r]["status"] for r in audited} == {"success"} and len(audited) == 2


def test_a_sync_killed_mid_way_is_cleaned_up_by_the_next_run(estate: Estate, dag_processes: Any) -> None:
    from envsync.bigquery.jobs import label_value

    doomed = dag_processes("prod_to_dev_sync", conf={})
    holder = wait_for_lease("dev", "prod_to_dev_sync")
    doomed.wait_for_log(r"running task <TaskInstance: prod_to_dev_sync\.sync_dataset", timeout=180)
    estate.slow(120)  # the jobs it starts from now on keep running long after it is killed

    def its_running_jobs() -> list[Any]:
        return [
            j
            for j in client().list_jobs(state_filter="running", all_users=True)
            if (j.labels or {}).get("envsync-run") == label_value(holder.run_id)
        ]

    deadline = time.monotonic() + 120
    while not its_running_jobs():
        assert time.monotonic() < deadline, "the sync started no job to orphan"
        time.sleep(0.3)
    doomed.kill()
    orphans = [j.job_id for j in its_running_jobs()]
    assert orphans
    estate.slow(0)

    patient = Path(estate.config).parent / "patient.yaml"
    patient.write_text(estate.config.read_text().replace("wait_seconds: 0", "wait_seconds: 120"))
    rerun = dag_processes("prod_to_dev_sync", conf={}, env={"ENVSYNC_CONFIG": str(patient)}).wait(600)

    assert rerun["state"] == "success", rerun
    for job_id in orphans:
        job = client().get_job(job_id)
        assert job.state == "DONE" and (job.error_result or {}).get("reason") == "stopped", (job_id, job.error_result)
    assert assert_environment_is_the_winners("prod_to_dev_sync", rerun["run_id"], env_datasets(estate, "dev"))
    audited = audit_runs(estate, holder.run_id, rerun["run_id"])
    assert audited[holder.run_id]["status"] == "killed"
    assert rerun["run_id"] in audited[holder.run_id]["error"] and "cancelled" in audited[holder.run_id]["error"]
    assert audited[rerun["run_id"]]["status"] == "success"
    assert leases().read("dev") is None
