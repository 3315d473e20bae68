"""A season of the schedule: several simulated weeks of envsync's DAGs, each run building on what the
earlier ones left, with the README's invariants checked after every run.

The emulators and this test process share a virtual clock (`devstack.Stack.clock_file`: libfaketime in
the emulator processes, restarted on each new offset by `devstack.set_clock`; time-machine here), moved
forward to each run's logical date, so scheduled
runs see the dates they would see in production: time travel, snapshot times, expirations, the backup
ladder's thinning and the drills' "state one day ago" all follow the simulated calendar. Every run is
the real DAG through Airflow (`dag.test`), scheduled runs with their logical dates and manual runs with
none. Between runs prod changes as an application would change it: rows arrive, a table is created,
one is dropped, and schema migrations reach it through promote_schema (one by the hotfix lane).

After every run (`Season.check`):
- the run is green, and audited (envsync_audit.runs has it with its status);
- dev equals prod's window as of the sync's T, object for object (fingerprints);
- qa, staging and test environments hold prod's schema plus exactly the migrations their ledger says
  are pending there, with their seed rows; the reseed's and the cut's reported checksums are the
  tables' own;
- each snapshot the ladder took holds prod as of its T, and what a drill or a restore put in drill
  datasets equals prod at the backup's instant (fingerprints recorded when the backups were taken);
- no stage table, restore scratch table or migration-rehearsal dataset is left anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sandbox
from testkit import REPO_ROOT, add_customer_seed_columns, add_seed_columns, states

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.season, pytest.mark.gcp_incompatible]

NS = sandbox.namespace("envsync-season")
PROJECT = NS.project
BUCKET = "envsync-season-state"
SALT = "season-salt-not-a-secret"
UTC = dt.UTC
WEEKS = int(__import__("os").environ.get("ENVSYNC_SEASON_WEEKS", "3"))

ADD_EMAIL = """-- envsync: phase=expand
-- customers get an email address, backfilled from their name
alter table sales.customers add column email string;

update sales.customers
set email = concat(lower(name), '@example.com')
where email is null;
"""
ADD_CHANNEL = """-- envsync: phase=expand
-- a hotfix: orders record their sales channel
alter table sales.orders_flat add column channel string;
"""
REFUNDS = """create table `{p}.{sales}.refunds` (refund_id int64, order_id int64, refunded_on date, amount numeric)
partition by refunded_on
as select id as refund_id, id * 7 as order_id, date_sub(@day, interval mod(id, 20) day) as refunded_on,
       cast(id as numeric) as amount
from unnest(generate_array(1, 30)) as id"""


# ------------------------------------------------------------------------------------- clock


class VirtualClock:
    """One clock for the emulators (their clock file: `+<seconds>` from the real time, the emulators
    restarted on it by `devstack.set_clock`) and this process (time-machine), moved forward only."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.traveller: Any = None
        self.now: dt.datetime | None = None

    def to(self, when: dt.datetime) -> None:
        import time_machine

        if self.now is not None and when < self.now:
            raise AssertionError(f"the season's clock only moves forward: {when} is before {self.now}")
        real = real_time()
        from envsync.dev import devstack

        offset = math.ceil(when.timestamp() - real)  # never before `when`: a scheduled run's logical date is past
        devstack.set_clock(self.stack, offset)
        if self.traveller is not None:
            self.traveller.stop()
        self.traveller = time_machine.travel(real + offset, tick=True)
        self.traveller.start()
        self.now = when

    def stop(self) -> None:
        if self.traveller is not None:
            self.traveller.stop()
            self.traveller = None


def real_time() -> float:
    """The real time, also while this process travels."""
    import time_machine

    hatch = time_machine.escape_hatch
    return hatch.time.time() if hatch.is_travelling() else time.time()


def next_saturday(after: dt.datetime) -> dt.datetime:
    day = (after + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    while day.weekday() != 5:
        day += dt.timedelta(days=1)
    return day


# ------------------------------------------------------------------------------------ queries


def client() -> Any:
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter(
                k, "TIMESTAMP" if isinstance(v, dt.datetime) else "DATE" if isinstance(v, dt.date) else "STRING", v
            )
            for k, v in params.items()
        ]
    )
    return [dict(r) for r in client().query(sql, job_config=config, job_retry=None).result()]


def fingerprint(table: str, *, as_of: dt.datetime | None = None, where: str = "true") -> tuple[int, str]:
    """(rows, bit_xor of farm_fingerprint of every row's JSON) of `project.table`, optionally as of T."""
    clause = " for system_time as of @t" if as_of else ""
    params = {"t": as_of} if as_of else {}
    got = rows(
        f"select count(*) as n, coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as c "
        f"from `{PROJECT}.{table}` as t{clause} where {where}",
        **params,
    )[0]
    return int(got["n"]), str(got["c"])


def dataset_ids() -> set[str]:
    return {d.dataset_id for d in client().list_datasets()}


def table_kinds(dataset: str) -> dict[str, str]:
    return {t.table_id: t.table_type for t in client().list_tables(f"{PROJECT}.{dataset}")}


def num_rows(table: str) -> int:
    return int(client().get_table(f"{PROJECT}.{table}").num_rows or 0)


def columns(table: str) -> list[str]:
    return [f.name for f in client().get_table(f"{PROJECT}.{table}").schema]


# ------------------------------------------------------------------------------------ season


@dataclass
class Season:
    config_path: Path
    run_dag: Callable[..., Any]
    clock: VirtualClock
    seeds: Path
    runs: list[tuple[str, str, str]] = field(default_factory=list)  # (when, dag_id, state)
    checks: int = 0
    # prod fingerprints at each backup instant: (dataset, table, taken_at) -> (snapshot, fingerprint)
    backed_up: dict[tuple[str, str, dt.datetime], tuple[str, tuple[int, str]]] = field(default_factory=dict)
    seed_rows: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ config and stores
    @property
    def config(self) -> Any:
        from envsync.core.config import load_config

        return load_config(self.config_path)

    def store(self) -> Any:
        from envsync.core.clients import storage_client
        from envsync.core.manifest import ManifestStore

        return ManifestStore(storage_client(PROJECT), BUCKET)

    def manifest(self, dag_id: str, run_id: str, name: str) -> dict[str, Any]:
        store = self.store()
        found = store.read(f"{store.run_prefix(dag_id, run_id)}/{name}")
        assert found is not None, f"{dag_id} {run_id}: no {name} in the state bucket"
        return found

    def ledger_files(self) -> tuple[Any, Any]:
        from envsync.migrations.ledger import load_migrations, read_ledger

        return load_migrations(self.config), read_ledger(self.config, client())

    # ------------------------------------------------------------------ running
    def at(self, when: dt.datetime) -> None:
        self.clock.to(when)

    def run(self, when: dt.datetime, dag_id: str, conf: dict[str, Any] | None = None, *, scheduled: bool = True) -> Any:
        """Run `dag_id` at `when` (a scheduled run has `when` as its logical date; a manual one none),
        require it green, and check every invariant."""
        self.at(when)
        dag_run = self.run_dag(dag_id, when if scheduled else None, conf or {}, config_path=self.config_path)
        self.runs.append((when.isoformat(), dag_id, str(dag_run.state)))
        assert str(dag_run.state) == "success", (when, dag_id, conf, states(dag_run))
        self.check(dag_id, dag_run)
        return dag_run

    # ------------------------------------------------------------------ invariants
    def ok(self) -> None:
        self.checks += 1

    def check(self, dag_id: str, dag_run: Any) -> None:
        self.check_audited(dag_id, dag_run.run_id)
        getattr(self, f"check_{dag_id}", lambda run: None)(dag_run)
        self.check_environments()
        self.check_no_leftovers()

    def check_audited(self, dag_id: str, run_id: str) -> None:
        audit = self.config.audit.dataset
        found = rows(
            f"select status from `{PROJECT}.{NS.ds(audit)}.runs` where dag_id = @d and run_id = @r", d=dag_id, r=run_id
        )
        assert [r["status"] for r in found] == ["success"], (dag_id, run_id, found)
        self.ok()

    def check_no_leftovers(self) -> None:
        """No rehearsal dataset, stage table or restore scratch table anywhere in the project (one
        query of the region's INFORMATION_SCHEMA.TABLES)."""
        from envsync.sync.plan import STAGE_SUFFIX

        names = dataset_ids()
        assert not [d for d in names if "migcheck" in d], names
        self.ok()
        left = rows(
            f"select table_schema, table_name from `{PROJECT}.region-us.INFORMATION_SCHEMA.TABLES` "
            f"where ends_with(table_name, @stage) or ends_with(table_name, '__load')",
            stage=STAGE_SUFFIX,
        )
        assert not left, left
        self.ok()

    def prod_tables(self) -> dict[str, dict[str, str]]:
        return {ds: table_kinds(NS.ds(ds)) for ds in self.config.prod.datasets}

    def check_prod_to_dev_sync(self, dag_run: Any) -> None:
        """dev holds exactly prod's objects, each table equal to prod's window as of the run's T."""
        plan = self.manifest("prod_to_dev_sync", dag_run.run_id, "plan.json")
        report = self.manifest("prod_to_dev_sync", dag_run.run_id, "report.json")
        cut = dt.datetime.fromisoformat(plan["cut"])
        start = dt.datetime.fromisoformat(plan["window"]["start"])
        reported = {r["target"]: r for r in report["results"]}
        for dataset_plan in plan["plans"]:
            dataset, target = dataset_plan["dataset"], dataset_plan["target_dataset"]
            prod = table_kinds(dataset)
            dev = table_kinds(target)
            excluded = set(dataset_plan["excluded"])
            assert set(dev) == set(prod) - excluded, (target, sorted(dev), sorted(prod), excluded)
            self.ok()
            for action in dataset_plan["actions"]:
                if action["action"] in ("view", "drop", "skip"):
                    continue
                column, kind = action.get("date_column"), action.get("column_type")
                where = "true"
                if action["action"] != "full_clone" and column:
                    bound = (
                        f"date('{start.date()}')"
                        if kind == "DATE"
                        else (
                            f"datetime('{start.replace(tzinfo=None).isoformat()}')"
                            if kind == "DATETIME"
                            else f"timestamp('{start.isoformat()}')"
                        )
                    )
                    where = f"`{column}` >= {bound}"
                expected = fingerprint(f"{dataset}.{action['table']}", as_of=cut, where=where)
                got = fingerprint(f"{target}.{action['table']}")
                assert got == expected, (f"{target}.{action['table']}", action["action"], where, got, expected)
                row = reported.get(f"{target}.{action['table']}")
                assert row is not None and row["status"] == "ok" and int(row["rows"]) == got[0], (action, row)
                self.ok()

    def check_reseed_environments(self, dag_run: Any) -> None:
        """Each re-seeded environment has exactly prod's objects; the reported checksums are the tables' own."""
        report = self.manifest("reseed_environments", dag_run.run_id, "report.json")
        plan = self.manifest("reseed_environments", dag_run.run_id, "plan.json")
        for unit in plan["unit_specs"]:
            got = set(table_kinds(unit["target_dataset"]))
            want = {t for t in table_kinds(unit["dataset"]) if not self.config.override(unit["dataset"], t).exclude}
            assert got == want, (unit["target_dataset"], sorted(got), sorted(want))
            self.ok()
        for row in report["results"]:
            if row.get("checksum") and row["status"] == "ok" and row["action"] in ("seed", "empty", "prod_sample"):
                got = rows(
                    f"select count(*) as n, coalesce(bit_xor(farm_fingerprint(to_json_string(t))), 0) as c "
                    f"from `{PROJECT}.{row['target']}` as t"
                )[0]
                assert (int(got["n"]), str(got["c"])) == (int(row["rows"]), str(row["checksum"])), row
                self.ok()

    def check_staging_cut(self, dag_run: Any) -> None:
        """staging holds qa's tables (qa has not changed since the cut) and qa's migration versions."""
        from envsync.migrations.ledger import applied

        for dataset in self.config.prod.datasets:
            for table, kind in table_kinds(NS.ds(f"qa_{dataset}")).items():
                if kind == "TABLE":
                    assert fingerprint(f"staging_{dataset}.{table}") == fingerprint(f"qa_{dataset}.{table}"), table
                    self.ok()
        _, ledger = self.ledger_files()
        assert list(applied(ledger, "staging")) == list(applied(ledger, "qa"))
        self.ok()

    def check_backup_ladder(self, dag_run: Any) -> None:
        """Every snapshot this run took holds prod as of the run's T; remembered for drills and restores."""
        plan = self.manifest("backup_ladder", dag_run.run_id, "plan.json")
        cut = dt.datetime.fromisoformat(plan["cut"])
        for dataset, decisions in plan["decisions"].items():
            for table, decision in decisions.items():
                if not decision["take"]:
                    continue
                expected = fingerprint(f"{dataset}.{table}", as_of=cut)
                snapshot = f"{self.config.env_dataset('backup', dataset)}.{decision['name']}"
                assert fingerprint(snapshot) == expected, snapshot
                self.backed_up[(dataset, table, cut)] = (snapshot, expected)
                self.ok()

    def expected_at(self, dataset: str, table: str, instant: dt.datetime) -> tuple[dt.datetime, tuple[int, str]]:
        """The newest snapshot of `table` taken by `instant` that the ladder kept, and prod's fingerprint then."""
        kept = {
            f"{self.config.env_dataset('backup', dataset)}.{name}"
            for name in table_kinds(self.config.env_dataset("backup", dataset))
        }
        taken = [
            t
            for (d, n, t), (snap, _) in self.backed_up.items()
            if d == dataset and n == table and t <= instant and snap in kept
        ]
        assert taken, (dataset, table, instant)
        return max(taken), self.backed_up[(dataset, table, max(taken))][1]

    def check_recovery_drill(self, dag_run: Any) -> None:
        audit = self.config.audit.dataset
        drilled = rows(
            f"select dataset, table_name, target, point_in_time, backup_taken_at, status "
            f"from `{PROJECT}.{NS.ds(audit)}.recovery_drills` where run_id = @r",
            r=dag_run.run_id,
        )
        assert drilled and {r["status"] for r in drilled} == {"ok"}, drilled
        for row in drilled:
            dataset = NS.logical(row["dataset"]) or row["dataset"]
            taken, expected = self.expected_at(dataset, row["table_name"], row["point_in_time"])
            assert row["backup_taken_at"] == taken, row
            target = ".".join(row["target"].split(".")[-2:])  # [project.]dataset.table
            assert fingerprint(target) == expected, row
            self.ok()

    def check_restore(self, dag_run: Any) -> None:
        conf = dag_run.conf or {}
        point = dt.datetime.fromisoformat(conf["point_in_time"])
        dataset = conf["dataset"]
        for table in conf.get("tables") or []:
            _, expected = self.expected_at(dataset, table, point)
            assert fingerprint(f"drill_{dataset}.{table}") == expected, table
            self.ok()

    def check_environments(self) -> None:
        """qa, staging and each test environment: prod's schema plus the migrations their ledger says
        they hold and prod does not (pending), minus what migrations prod holds and they do not yet
        add (a hotfix that skipped qa); test environments: prod's schema as of their creation. Every
        seeded table with its seed's rows."""
        from envsync.migrations.ledger import applied

        files, ledger = self.ledger_files()
        by_version = files.by_version()
        names = dataset_ids()
        prod = self.prod_tables()
        in_prod = set(applied(ledger, "prod"))
        for env in ("qa", "staging"):
            held = set(applied(ledger, env))
            ahead = {a for v in held - in_prod for a in by_version[v].additions()}
            behind = {a for v in in_prod - held for a in by_version[v].additions()}
            for dataset, tables in prod.items():
                target = f"{env}_{dataset}"
                if NS.ds(target) not in names:
                    continue
                for table, kind in tables.items():
                    if kind != "TABLE" or table not in table_kinds(NS.ds(target)):
                        continue
                    prefix = f"{dataset}.{table}."
                    expected = [c for c in columns(f"{NS.ds(dataset)}.{table}") if prefix + c not in behind] + sorted(
                        a.split(".")[2] for a in ahead if a.startswith(prefix) and a.count(".") == 2
                    )
                    assert columns(f"{NS.ds(target)}.{table}") == expected, (env, table, sorted(held), sorted(in_prod))
                    self.ok()
                    if table in self.seed_rows:
                        assert num_rows(f"{NS.ds(target)}.{table}") == self.seed_rows[table], (env, table)
                        self.ok()
        for name in sorted(names):
            logical = NS.logical(name) or name
            if logical.startswith("test_"):
                for table, kind in table_kinds(name).items():
                    if kind == "TABLE" and table in self.seed_rows:
                        assert num_rows(f"{name}.{table}") == self.seed_rows[table], (logical, table)
                        self.ok()


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture
def season_stack(make_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Emulators of their own on a virtual clock, used by this test's clients and DAG runs."""
    from envsync.dev import devstack

    stack = make_stack(clock_file=tmp_path / "clock")
    devstack.up(stack, timeout=120)
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    yield stack


def season_seeds(tmp_path: Path) -> Path:
    """A copy of the shipped seeds, which the season's team changes with its migrations."""
    target = tmp_path / "seeds"
    shutil.copytree(REPO_ROOT / "sql" / "seeds", target)
    return target


def seed_counts(seeds: Path) -> dict[str, int]:
    counts = {}
    for path in sorted(seeds.glob("*/*.sql")):
        sql = path.read_text()
        counts[path.stem] = int(rows(f"select count(*) as n from ({sql})")[0]["n"])
    return counts


# --------------------------------------------------------------------------------------- test


def test_a_season_of_the_schedule_keeps_every_invariant_after_every_run(
    season_stack: Any,
    run_dag: Any,
    config_file: Any,
    migrations_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from envsync.dev.demo import create_demo_prod

    began = time.monotonic()
    monkeypatch.setenv("ENVSYNC_MASKING_SALT", SALT)
    clock = VirtualClock(season_stack)
    start = next_saturday(dt.datetime.fromtimestamp(real_time(), UTC))
    seeds = season_seeds(tmp_path)
    path = config_file(
        project=NS.virtual_project,
        state__bucket=BUCKET,
        seeds__dir=str(seeds),
        alerts__enabled=False,
        backups__restore_time_travel_hours=0,
    )
    monkeypatch.setenv("ENVSYNC_CONFIG", str(path))
    season = Season(path, run_dag, clock, seeds)
    try:
        clock.to(start - dt.timedelta(hours=6))
        create_demo_prod(client(), PROJECT, "US", 400, (start - dt.timedelta(days=1)).date(), dataset_prefix=NS.prefix)
        season.seed_rows = seed_counts(seeds)
        play(season, start, migrations_dir)
    finally:
        clock.stop()
    seconds = time.monotonic() - began
    summary = (
        f"season: {WEEKS} simulated weeks ({start:%Y-%m-%d} to {clock.now:%Y-%m-%d}), {len(season.runs)} DAG "
        f"runs of {len({d for _, d, _ in season.runs})} DAGs, {season.checks} invariants checked, all green, "
        f"in {seconds:.0f} s"
    )
    with capsys.disabled():
        print("\n" + summary)
    figure = REPO_ROOT / ".devstack" / "season.json"  # shown in pytest's summary (tests/conftest.py)
    figure.parent.mkdir(exist_ok=True)
    figure.write_text(
        json.dumps(
            {"summary": summary, "runs": season.runs, "checks": season.checks, "seconds": round(seconds)}, indent=1
        )
    )
    assert len(season.runs) >= 8 * WEEKS and season.checks > 50 * WEEKS


def play(season: Season, start: dt.datetime, migrations: Path) -> None:
    """The calendar: week by week, what the schedule and the team do."""
    day = dt.timedelta(days=1)
    hour = dt.timedelta(hours=1)
    for week in range(WEEKS):
        sat = start + week * 7 * day
        sun, mon, tue, wed, thu, fri = (sat + n * day for n in range(1, 7))
        # the weekend: the weekly dev sync after an hourly ladder run, the daily cleanup, the reseed
        season.run(sat + 1 * hour, "backup_ladder")
        season.run(sat + 2 * hour, "prod_to_dev_sync")
        season.run(sat + 4 * hour, "cleanup_test_environments")
        season.run(sun + 3 * hour, "reseed_environments")
        # Monday: the daily drill restores yesterday's state from the backups
        season.run(mon, "recovery_drill")
        if week == 0:
            # a schema change starts its way qa -> staging (its seed change released with it); a test
            # environment for a feature, with a time-to-live of three days; prod's rows keep coming
            (migrations / "0001_add_email.sql").write_text(ADD_EMAIL)
            add_customer_seed_columns(season.seeds, email="concat('seed', cast(customer_id as string), '@example.com')")
            season.run(mon + 10 * hour, "promote_schema", {"target": "qa"}, scheduled=False)
            season.run(tue + 10 * hour, "reseed_environments", {"test_env": "feature1", "ttl_days": 3}, scheduled=False)
            season.run(wed + 10 * hour, "promote_schema", {"target": "staging"}, scheduled=False)
            prod_gets_rows(season, thu + 9 * hour)
            season.run(thu + 10 * hour, "backup_ladder")
            # migration 1 reaches prod: the next two weekly syncs and the reseeds build on it
            season.run(
                fri + 10 * hour,
                "promote_schema",
                {"target": "prod", "confirm": "apply schema migrations 1 to prod"},
                scheduled=False,
            )
        elif week == 1:
            # a hotfix goes staging -> prod skipping qa, then to qa; prod's team adds a table and drops
            # one (and its seed); prod's sales tables are restored into drill as of Saturday's ladder
            # run; at the sprint's end QA is cut to staging; the parity report
            (migrations / "0002_add_channel.sql").write_text(ADD_CHANNEL)
            add_seed_columns(season.seeds, "sales/orders_flat", channel="'web'")
            season.run(tue + 10 * hour, "promote_schema", {"target": "staging", "lane": "hotfix"}, scheduled=False)
            season.run(
                tue + 11 * hour,
                "promote_schema",
                {"target": "prod", "lane": "hotfix", "confirm": "apply schema migrations 2 to prod"},
                scheduled=False,
            )
            prod_changes_tables(season, wed + 9 * hour)
            point = sat + 1 * hour + dt.timedelta(minutes=30)
            season.run(
                wed + 10 * hour,
                "restore",
                {"dataset": "sales", "tables": ["orders", "customers"], "point_in_time": point.isoformat()},
                scheduled=False,
            )
            season.run(thu + 10 * hour, "promote_schema", {"target": "qa"}, scheduled=False)
            season.run(fri + 16 * hour, "staging_cut", scheduled=False)
            season.run(fri + 17 * hour, "parity", scheduled=False)
        # later weeks: the weekend runs build on all of the above (prod's migrations, its new and
        # dropped tables, the cut)


def prod_gets_rows(season: Season, when: dt.datetime) -> None:
    """Prod's application writes: new orders and sessions of the last days."""
    season.at(when)
    day = when.date()
    rows(
        f"insert into `{PROJECT}.{NS.ds('sales')}.orders` (order_id, customer_id, order_date) "
        f"select 100000 + id, 1 + mod(id, 10), date_sub(@day, interval mod(id, 3) day) "
        f"from unnest(generate_array(1, 25)) as id",
        day=day,
    )
    rows(
        f"insert into `{PROJECT}.{NS.ds('marketing')}.sessions` (session_id, session_start) "
        f"select 900000 + id, timestamp_sub(@t, interval id hour) from unnest(generate_array(1, 12)) as id",
        t=when,
    )


def prod_changes_tables(season: Season, when: dt.datetime) -> None:
    """Prod's team creates sales.refunds and drops marketing.ad_spend (and its seed with it)."""
    season.at(when)
    rows(REFUNDS.format(p=PROJECT, sales=NS.ds("sales")), day=when.date())
    client().delete_table(f"{PROJECT}.{NS.ds('marketing')}.ad_spend")
    (season.seeds / "marketing" / "ad_spend.sql").unlink()
    season.seed_rows.pop("ad_spend", None)
