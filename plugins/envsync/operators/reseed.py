"""Operators of reseed_environments (plan + contract check, mapped reseed, report) and the test
environment cleanup. Each task's BigQuery jobs run in the jobs project of the environment it writes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from envsync.core.clients import DEFAULT_CONN_ID
from envsync.operators.common import (
    RunReportOperator,
    UnitOperator,
    guarded_runner,
    manifest_store,
    record_run_audit,
    recorded_cut,
    run_prefix,
)
from envsync.operators.leasing import renews_taken_leases

if TYPE_CHECKING:
    from airflow.sdk import Context

    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import EnvsyncConfig
    from envsync.environments.reseed import ReseedUnit


def env_runner(
    operator: UnitOperator, config: EnvsyncConfig, context: Context, runner: JobRunner, env: str
) -> JobRunner:
    """A unit's runner whose jobs run in `env`'s jobs project: `runner` when its jobs run there already,
    else a runner of the same task behind the same lease fence (the one the operator cancels when killed)."""
    if runner.bq.client.project == config.jobs_project_of(env):
        return runner
    own = guarded_runner(config, operator.gcp_conn_id, context, operator.task_id, env=env)
    own.bq.fence = runner.bq.fence
    operator._runner = own
    return own


class PlanReseedOperator(BaseOperator):
    """Validate the params, discover prod, check every seed against prod's schema, record the plan.

    Nothing is dropped here: a contract failure fails the run and leaves every environment as it was.
    """

    template_fields: Sequence[str] = ("environments", "datasets", "test_env", "ttl_days")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        environments: Any = None,
        datasets: Any = None,
        test_env: Any = None,
        ttl_days: Any = None,
        gcp_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.environments = environments
        self.datasets = datasets
        self.test_env = test_env
        self.ttl_days = ttl_days
        self.gcp_conn_id = gcp_conn_id

    @renews_taken_leases
    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.bigquery.discovery import DiscoveryError
        from envsync.core.config import ConfigError, load_config
        from envsync.environments.reseed import ContractError
        from envsync.environments.seeds import SeedError
        from envsync.migrations.ledger import MigrationError
        from envsync.operators.params import validate_reseed_params

        try:
            config = load_config()
            envs, datasets, test_name, ttl = validate_reseed_params(
                config, self.environments, self.datasets, self.test_env, self.ttl_days
            )
        except (ConfigError, ValueError) as error:
            raise AirflowFailException(str(error)) from error  # before any BigQuery call
        try:
            return self._plan(context, config, envs, datasets, test_name, ttl)
        except (ContractError, SeedError, DiscoveryError, MigrationError) as error:
            raise AirflowFailException(str(error)) from error

    def _plan(
        self, context: Context, config: Any, envs: list[str], datasets: list[str], test_name: str | None, ttl: int
    ) -> list[dict[str, str]]:
        from envsync.bigquery.discovery import discover_dataset
        from envsync.bigquery.jobs import JobStats
        from envsync.core.window import new_cut
        from envsync.environments.reseed import ContractError, Reseeder, reseed_privacy, sources_to_dict, units_for
        from envsync.environments.seeds import seed_version
        from envsync.observe.report import privacy_table, result_row
        from envsync.operators.leasing import take_leases

        store = manifest_store(config, self.gcp_conn_id)
        store.ensure_bucket(config.location)
        prefix = run_prefix(store, context)
        # one writer per environment across every DAG: before the ledger and schemas are read
        take_leases(config, self.gcp_conn_id, context, self.task_id, [f"test_{test_name}"] if test_name else envs)
        cut = recorded_cut(store, prefix) or new_cut()
        version = seed_version(config)
        self.log.info(
            "seed version %s (git %s%s, %d files); cut T = %s",
            version["version"],
            version["git"],
            ", uncommitted changes" if version["dirty"] else "",
            version["files"],
            cut.isoformat(),
        )
        # reads only (prod's schemas, the seeds' contract): billed to the first environment it re-seeds
        runner = guarded_runner(config, self.gcp_conn_id, context, self.task_id, env="test" if test_name else envs[0])
        reseeder = Reseeder(config, runner, cut)
        stats = JobStats()
        infos = {ds: discover_dataset(runner.bq.client, config.prod_project, ds) for ds in datasets}
        sources = {ds: reseeder.sources(info) for ds, info in infos.items()}
        migrations = schema_migrations(config, runner, ["prod"] if test_name else envs, self.log)
        problems: list[str] = []
        for group in contract_groups(migrations):
            label = ", ".join(group["envs"]) if group["versions"] else ""
            name = (
                f"{label}'s schema (prod + migrations {', '.join(map(str, group['versions']))})"
                if group["versions"]
                else "prod"
            )
            for ds, info in infos.items():
                problems += reseeder.check_contract(
                    info,
                    sources[ds],
                    stats,
                    migrated=group["schemas"],
                    schema_name=name,
                    ahead=frozenset(group["ahead"]),
                    env=label,
                )
        problems = list(dict.fromkeys(problems))
        if problems:
            raise ContractError("seeds do not match the schema they fill; nothing was dropped: " + "; ".join(problems))
        self.log.info(
            "contract check passed for %d seeded tables (%d jobs)",
            sum(1 for s in sources.values() for t in s if t.source == "seed"),
            stats.jobs,
        )
        units = units_for(config, envs, datasets, test_name)
        pending_by_env = {env: spec["versions"] for env, spec in migrations.items() if env != "prod"}
        expires = (cut + dt.timedelta(days=ttl)).isoformat() if test_name else None
        manifest: dict[str, Any] = {
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "cut": cut.isoformat(),
            "seed_version": version,
            "expires": expires,
            "params": {
                "environments": envs,
                "datasets": datasets,
                "test_env": test_name,
                "ttl_days": ttl,
                "dry_run": False,
            },
            "datasets": {ds: info.to_dict() for ds, info in infos.items()},
            "sources": {ds: sources_to_dict(s) for ds, s in sources.items()},
            "unit_specs": [u.__dict__ for u in units],
            "privacy": reseed_privacy(config, units, infos, sources),
            "units": [u.name for u in units] + ["views"] + ([] if test_name else ["migrate"]),
            "migrations": pending_by_env,
            "planned": [
                {
                    **result_row(
                        config.qualified(config.project_of(u.env), u.target_dataset, s.table),
                        config.qualified(config.project_of(u.env), u.target_dataset, s.table),
                        s.source,
                        s.reason,
                        env=u.env,
                    ),
                    "unit": "views" if s.source == "view" else u.name,
                    "status": "planned",
                }
                for u in units
                for s in sources[u.dataset]
            ]
            + [
                {
                    **result_row(
                        f"migration {v}",
                        f"{env}: version {v}",
                        "migrate",
                        "pending: applied again after the rebuild from prod",
                        env=env,
                    ),
                    "unit": "migrate",
                    "status": "planned",
                }
                for env, versions in pending_by_env.items()
                for v in versions
            ],
        }
        uri = store.write(f"{prefix}/plan.json", manifest)
        self.log.info("reseeding %s; manifest %s", ", ".join(u.name for u in units), uri)
        self.log.info("privacy report (prod samples):\n%s", privacy_table(manifest["privacy"]))
        return [{"unit": u.name} for u in units]


def schema_migrations(config: Any, runner: Any, envs: list[str], log: Any) -> dict[str, dict[str, Any]]:
    """Per environment: its pending migrations (promoted to it, not in prod), validated against prod's
    schema as a rebuild leaves it, the migrated schemas, and what migrations it lacks add."""
    from envsync.migrations.ledger import ahead_of, load_migrations, pending, read_ledger, validate

    migrations = load_migrations(config)
    ledger = read_ledger(config, runner.bq.client)
    out: dict[str, dict[str, Any]] = {}
    for env in envs:
        todo = pending(migrations, ledger, env)
        spec: dict[str, Any] = {
            "versions": [m.version for m in todo],
            "schemas": None,
            "ahead": sorted(ahead_of(migrations, ledger, env)),
        }
        if todo:
            log.info(
                "%s has %d pending schema migration(s) %s: they are applied again after the rebuild, and the "
                "seeds must fit the migrated schema",
                env,
                len(todo),
                spec["versions"],
            )
            spec["schemas"] = validate(config, runner, env, todo, base="prod").schemas
        out[env] = spec
    return out


def contract_groups(migrations: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Environments whose seeds are checked against the same schema, checked once together."""
    groups: dict[str, dict[str, Any]] = {}
    for env, spec in migrations.items():
        key = repr((spec["versions"], spec["ahead"]))
        group = groups.setdefault(key, {**spec, "envs": []})
        group["envs"].append(env)
    return list(groups.values())


class ReseedDatasetOperator(UnitOperator):
    """Destroy and re-seed one environment dataset (mapped: one task instance per env x dataset)."""

    template_fields: Sequence[str] = ("unit_ref",)

    def __init__(self, *, unit_ref: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unit_ref = unit_ref

    def unit(self, manifest: dict[str, Any]) -> ReseedUnit:
        """The unit this task instance re-seeds."""
        from envsync.environments.reseed import ReseedUnit

        name = self.unit_ref["unit"]
        return next(u for u in (ReseedUnit(**spec) for spec in manifest["unit_specs"]) if u.name == name)

    def writes_env(self, manifest: dict[str, Any], context: Context) -> str | None:
        return self.unit(manifest).env

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from envsync.bigquery.discovery import DatasetInfo
        from envsync.environments.reseed import Reseeder, sources_from_dict

        unit = self.unit(manifest)
        name = unit.name
        expires = dt.datetime.fromisoformat(manifest["expires"]) if manifest.get("expires") else None
        self.log.info("re-seeding %s (%s) with seed version %s", name, unit.env, manifest["seed_version"]["version"])
        defer = bool((manifest.get("migrations") or {}).get(unit.env))
        results = Reseeder(config, runner, dt.datetime.fromisoformat(manifest["cut"])).execute(
            unit,
            DatasetInfo.from_dict(manifest["datasets"][unit.dataset]),
            sources_from_dict(manifest["sources"][unit.dataset]),
            seed_version=manifest["seed_version"]["version"],
            expires=expires,
            defer_seeds=defer,
        )
        return name, results


class ReseedViewsOperator(UnitOperator):
    """Re-create the views of every re-seeded environment dataset, after all tables, in dependency order
    (one environment after the other, each with its jobs in its own jobs project)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from envsync.environments.reseed import Reseeder, ReseedUnit, sources_from_dict

        work = [
            (ReseedUnit(**spec), sources_from_dict(manifest["sources"][spec["dataset"]]))
            for spec in manifest["unit_specs"]
        ]
        cut = dt.datetime.fromisoformat(manifest["cut"])
        results: list[dict[str, Any]] = []
        for env in dict.fromkeys(unit.env for unit, _ in work):
            reseeder = Reseeder(config, env_runner(self, config, context, runner, env), cut)
            results += reseeder.views([(unit, sources) for unit, sources in work if unit.env == env])
        return "views", results


class ReseedMigrateOperator(UnitOperator):
    """Apply each re-seeded environment's pending schema migrations again (it was rebuilt from prod),
    fill the seeded tables on the migrated schema, and note in the ledger the versions prod brought."""

    fingerprints_environment = True  # migrations and the seed refill change tables they do not name

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.environments.reseed import Reseeder, ReseedUnit, sources_from_dict
        from envsync.migrations.ledger import MigrationError, load_migrations, read_ledger, reapply

        if manifest["params"].get("test_env"):
            return None
        cut = dt.datetime.fromisoformat(manifest["cut"])
        results: list[dict[str, Any]] = []
        try:
            migrations = load_migrations(config)
            ledger = read_ledger(config, runner.bq.client)
        except MigrationError as error:
            raise AirflowFailException(str(error)) from error
        for env, versions in (manifest.get("migrations") or {}).items():
            reseeder = Reseeder(config, env_runner(self, config, context, runner, env), cut)
            done = reapply(config, reseeder.runner, env, migrations, ledger, versions, validated=True)
            if done.synced:
                self.log.info(
                    "%s holds prod's migrations %s through the rebuild (recorded as synced)", env, done.synced
                )
            results += done.results  # a migration not applied again is a failed row: the task fails
            # the seeded tables were created empty for the migrated schema: fill them whatever happened
            # above (on a failure, with the seed's columns the table has), never leave them empty
            for spec in manifest["unit_specs"]:
                if versions and spec["env"] == env:
                    sources = sources_from_dict(manifest["sources"][spec["dataset"]])
                    results += reseeder.fill_seeds(ReseedUnit(**spec), sources, fit=not done.ok)
        return "migrate", results


class ReseedReportOperator(RunReportOperator):
    """The reseed run's report: per table source, rows, checksum status; seed version in the header."""


class CleanupTestEnvironmentsOperator(BaseOperator):
    """Delete the test environment datasets whose time-to-live has passed, and nothing else."""

    ui_color = "#fce8e6"

    def __init__(self, *, gcp_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from envsync.core.config import load_config
        from envsync.core.window import anchor_from_context
        from envsync.observe.report import result_row

        config = load_config()
        runner = guarded_runner(config, self.gcp_conn_id, context, self.task_id, env="test")
        # expiry is judged at the run's logical date (the daily tick), or the trigger time of a manual run
        now = anchor_from_context(context)
        deleted: list[dict[str, Any]] = []
        error: BaseException | None = None

        def named(item: dict[str, Any]) -> str:
            return config.qualified(config.project_of("test"), item["dataset"])

        try:
            deleted = self._delete_expired(config, runner, context, now)
        except BaseException as failure:
            error = failure
            raise
        finally:
            try:
                rows = [
                    {**result_row(named(d), named(d), "drop", f"expired at {d['expires']}"), "status": "dropped"}
                    for d in deleted
                ]
                record_run_audit(
                    config,
                    self.gcp_conn_id,
                    context,
                    self.task_id,
                    {"cut": now.isoformat(), "env": "test", "params": {}},
                    rows,
                    error,
                )
            except Exception as failure:  # the audit never fails the data work
                self.log.warning("could not record this run in the audit tables: %s", failure)
        return {"deleted": [named(d) for d in deleted], "checked_at": now.isoformat()}

    def _delete_expired(self, config: Any, runner: Any, context: Context, now: dt.datetime) -> list[dict[str, Any]]:
        """Delete each expired test environment under its lease; one another run is writing is left for
        the next day's run (said in the log)."""
        from envsync.core.lease import LeaseHeld
        from envsync.environments.testenvs import delete_expired, expired_test_datasets
        from envsync.operators.leasing import leases_for, me, target_lease

        leases = leases_for(config, self.gcp_conn_id)
        leases.settings.wait_seconds = 0
        holder = me(context, self.task_id)
        project = config.project_of("test")
        expired = expired_test_datasets(config, runner.bq.client, now)
        deleted: list[dict[str, Any]] = []
        for env in sorted({target_lease(config, d["dataset"], project) for d in expired}):
            try:
                leases.acquire([env], holder)
            except LeaseHeld as busy:
                self.log.warning("leaving expired test environment %s for the next run: %s", env, busy)
                continue
            try:

                def mine(item: dict[str, Any], env: str = env) -> bool:
                    return target_lease(config, item["dataset"], project) == env

                deleted += delete_expired(config, runner.bq, now, only=mine)
            finally:
                leases.release(env, holder)
        return deleted
