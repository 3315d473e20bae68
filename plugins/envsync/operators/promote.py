"""Operators of promote_schema: plan (params, gates, validation, the plan), promote, report."""

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
    read_plan,
    run_prefix,
)
from envsync.operators.leasing import renews_taken_leases

if TYPE_CHECKING:
    from airflow.sdk import Context

UNIT = "promote"


class PlanPromotionOperator(BaseOperator):
    """Check the params, select the migrations, pass the gates, check the prod confirmation, validate
    every statement against the target (not in a dry run) and record the plan. Writes nothing to an
    environment; a refusal is recorded in the plan (for the report and the alert) and fails the run."""

    template_fields: Sequence[str] = ("target", "through", "lane", "dry_run", "confirm")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        target: Any = None,
        through: Any = None,
        lane: Any = None,
        dry_run: Any = False,
        confirm: Any = None,
        gcp_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.through = through
        self.lane = lane
        self.dry_run = dry_run  # type: ignore[method-assign]  # a template field; BaseOperator.dry_run() is unused
        self.confirm = confirm
        self.gcp_conn_id = gcp_conn_id

    @renews_taken_leases
    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.bigquery.discovery import DiscoveryError
        from envsync.core.config import ConfigError, load_config
        from envsync.core.guard import ProdWriteRefused
        from envsync.environments.reseed import ContractError
        from envsync.migrations.ledger import MigrationError
        from envsync.migrations.promote import validate_promote_params
        from envsync.operators.leasing import take_leases

        try:
            config = load_config()
            params = validate_promote_params(self.target, self.through, self.lane, self.dry_run, self.confirm)
        except (ConfigError, ValueError) as error:
            raise AirflowFailException(str(error)) from error  # before any BigQuery call
        store = manifest_store(config, self.gcp_conn_id)
        store.ensure_bucket(config.location)
        prefix = run_prefix(store, context)
        if not params.dry_run:  # one writer per environment: before the ledger is read
            take_leases(config, self.gcp_conn_id, context, self.task_id, [params.target])
        manifest: dict[str, Any] = {
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "env": params.target,
            "cut": dt.datetime.now(dt.UTC).isoformat(),
            "units": [],
            "planned": [],
            "params": {
                "target": params.target,
                "through": params.through,
                "lane": params.lane,
                "dry_run": params.dry_run,
                "datasets": [],
            },
            "promotion": {"versions": [], "lane": params.lane, "notes": []},
        }
        try:
            return self._plan(context, config, params, store, prefix, manifest)
        except (MigrationError, ProdWriteRefused, ContractError, DiscoveryError) as error:
            refused = str(error)
            manifest["refused"] = refused
            manifest["planned"] = [{**row, "status": "failed", "error": refused} for row in manifest["planned"]]
            store.write(f"{prefix}/plan.json", manifest)
            raise AirflowFailException(refused) from error

    def _plan(
        self, context: Context, config: Any, params: Any, store: Any, prefix: str, manifest: dict[str, Any]
    ) -> list[dict[str, str]]:
        from envsync.core.guard import WriteGuard, migration_confirmation_phrase
        from envsync.migrations.ledger import load_migrations, read_ledger, validate
        from envsync.migrations.promote import (
            PromotionError,
            check_gates,
            contract_readers,
            environment_views,
            plan_text,
            prod_views_after,
            seed_queries,
            select,
            staging_problems,
            written_tables,
        )
        from envsync.observe.report import result_row

        runner = guarded_runner(config, self.gcp_conn_id, context, self.task_id, env=params.target)
        client = runner.bq.client
        migrations = load_migrations(config)
        ledger = read_ledger(config, client)
        todo = select(migrations, ledger, params.target, params.through)
        manifest["params"]["datasets"] = sorted({ds for m in todo for ds in m.datasets()})
        manifest["promotion"].update(
            versions=[m.version for m in todo], checksums={str(m.version): m.checksum for m in todo}
        )
        manifest["planned"] = [
            {
                **result_row(
                    f"migration {m.version}",
                    f"{params.target}: {m.label}",
                    "migrate",
                    f"{m.phase}: {len(m.statements)} statement(s); writes {', '.join(written_tables(config, [m]))}",
                    env=params.target,
                ),
                "unit": UNIT,
                "status": "planned",
            }
            for m in todo
        ]
        notes = check_gates(todo, ledger, params.target, params.lane)
        manifest["promotion"]["notes"] = notes
        for note in notes:
            self.log.warning("%s", note)
        if params.target == "prod" and todo:
            versions = [m.version for m in todo]
            if not params.dry_run:
                # the exact phrase, checked before any write (the promote task's guard checks it again)
                WriteGuard.from_config(config).for_prod_migrations(
                    versions, manifest["params"]["datasets"], params.confirm
                )
            views = {
                "prod": prod_views_after(environment_views(config, client, "prod"), todo),
                "qa": environment_views(config, client, "qa"),
                "staging": environment_views(config, client, "staging"),
            }
            readers = contract_readers(todo, views, seed_queries(config), config.prod_project)
            if readers:
                raise PromotionError(
                    "refused to promote a contract migration to prod while something still reads "
                    "what it removes: " + "; ".join(readers) + "; change or drop those readers first "
                    "(an expand migration), then promote again; nothing was written"
                )
            problems = staging_problems(config, runner, migrations, ledger)
            if problems:
                raise PromotionError(
                    "refused to promote to prod: staging's views and seeds must still resolve on the "
                    "promoted schema: " + "; ".join(problems) + "; nothing was written"
                )
        text = plan_text(config, todo, ledger, params.target, params.lane, notes)
        if params.target == "prod" and todo:
            text += f"\nto apply, set confirm to exactly: {migration_confirmation_phrase([m.version for m in todo])}"
        manifest["plan"] = text
        if todo and not params.dry_run:
            validate(config, runner, params.target, todo)
        manifest["units"] = [UNIT] if todo else []
        uri = store.write(f"{prefix}/plan.json", manifest)
        self.log.info("%s%s\nmanifest: %s", "DRY RUN, nothing is written: " if params.dry_run else "", text, uri)
        return [{"unit": UNIT}] if todo else []


class PromoteOperator(UnitOperator):
    """Apply the planned migrations to the target: qa/staging through migrations.apply; prod with a
    pinned backup, a schema check after each migration and rollback (envsync.migrations.promote.ProdPromotion)."""

    fingerprints_environment = True  # migrations change tables they do not name

    template_fields: Sequence[str] = ("confirm",)

    def __init__(self, *, confirm: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.confirm = confirm

    def run_unit(self, config: Any, manifest: dict[str, Any], runner: Any, context: Context) -> Any:
        from envsync.core.guard import ProdWriteRefused
        from envsync.migrations.ledger import MigrationError, apply, load_migrations, read_ledger
        from envsync.migrations.promote import ProdPromotion, PromotionError

        if manifest["params"]["dry_run"] or not manifest["units"]:
            self.log.info("dry run: nothing is applied")
            return None
        target = manifest["env"]
        promotion = manifest["promotion"]
        planned = {row["table"]: row for row in manifest["planned"]}
        try:
            files = load_migrations(config)
            by_version = files.by_version()
            todo = [by_version[v] for v in promotion["versions"] if v in by_version]
            changed = [
                v
                for v in promotion["versions"]
                if v not in by_version or by_version[v].checksum != promotion["checksums"][str(v)]
            ]
            if changed:
                raise PromotionError(
                    f"migrations {changed} changed or disappeared since the plan; nothing was "
                    "written: trigger the promotion again"
                )
            ledger = read_ledger(config, runner.bq.client)
            if target == "prod":
                run = ProdPromotion(
                    config,
                    runner,
                    manifest_store(config, self.gcp_conn_id),
                    run_prefix(manifest_store(config, self.gcp_conn_id), context),
                    todo,
                    self.confirm,
                )
                reason = (
                    f"before schema migrations {promotion['versions']} on prod (run {manifest['run_id']}, "
                    f"lane {promotion['lane']})"
                )
                results = run.run(ledger, reason)
            else:
                mine = {
                    r.version
                    for r in ledger
                    if r.environment == target and r.run_id == runner.run_id and r.status == "applied"
                }  # a retried task: what its earlier try applied
                results = [
                    {**planned[f"migration {v}"], "status": "ok", "reason": "applied by an earlier try of this run"}
                    for v in promotion["versions"]
                    if v in mine
                ]
                results += apply(
                    config,
                    runner,
                    target,
                    [m for m in todo if m.version not in mine],
                    files=files,
                    ledger=ledger,
                    validated=True,
                )
        except (MigrationError, ProdWriteRefused) as error:
            self.log.error("%s", error)
            # qa/staging keep the migrations applied before the failing one (recorded by this run)
            done = {
                r.version
                for r in read_ledger(config, runner.bq.client)
                if r.environment == target and r.run_id == runner.run_id and r.status == "applied"
            }
            failing = _failing_row(str(error), planned)
            results = []
            for row in planned.values():
                version = int(row["table"].split()[-1])
                if row is failing or (failing is None and not results):
                    results.append({**row, "status": "failed", "error": str(error)})
                else:
                    results.append({**row, "status": "ok" if version in done else "not applied"})
        return UNIT, results


def _failing_row(message: str, planned: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The planned row of the migration a failure message names (`migration <file> failed ...`)."""
    for row in planned.values():
        label = row["target"].split(": ", 1)[-1]
        if f"migration {label} " in message:
            return row
    return None


class PromoteReportOperator(RunReportOperator):
    """The promotion's report (per migration: status, jobs, errors); a refused plan is reported as such."""

    def report(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.core.config import load_config

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = run_prefix(store, context)
        manifest = read_plan(store, prefix)
        if manifest.get("refused"):
            store.write(
                f"{prefix}/report.json",
                {**manifest, "results": manifest["planned"], "summary": {"refused": manifest["refused"]}},
            )
            self.log.error("promotion to %s refused: %s", manifest["env"], manifest["refused"])
            raise AirflowFailException(f"promotion to {manifest['env']} refused: {manifest['refused']}")
        promotion = manifest["promotion"]
        self.log.info(
            "promotion of %s to %s, lane %s%s",
            promotion["versions"] or "nothing",
            manifest["env"],
            promotion["lane"],
            "".join(f"; {n}" for n in promotion["notes"]),
        )
        return super().report(context)
