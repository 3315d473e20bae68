"""Schema promotion: versioned migrations (envsync.migrations.ledger) promoted qa -> staging -> prod.

What a promotion to `target` runs: the migrations `target` does not hold yet, in version order, up to
`through` (default: all). Before anything is written it passes the gates (`check_gates`,
`contract_readers`, `staging_problems`):

  * staging takes a migration only after it succeeded on qa; prod only after it succeeded on staging.
    The `hotfix` lane may skip qa (never staging): the report and the alert say which versions did;
  * prod: staging's views still resolve (each is read with `LIMIT 0`) and the seeds still fit
    staging's schema (the reseed's contract check), so what prod will look like works where it was
    tried;
  * prod: a `contract` migration goes only when nothing still reads what it removes: no view of prod
    (as the promoted migrations leave it) or of qa or staging, parsed with sqlglot like views.py does,
    and no seed (`sql/seeds`) yields a removed column or fills a removed table.

Then every statement is validated against the target's schema (`migrations.validate`: a rehearsal
with BigQuery dry runs); a refusal names file and line, nothing written.

Prod (`ProdPromotion`), through the write guard opened with the confirmation phrase for exactly the
tables the migrations write (`WriteGuard.for_prod_migrations(..., tables=...)`):
  1. a pinned backup (the backup ladder's pinned snapshots, `backup_<ds>`, with manifests) of every
     table the migrations write, and the definitions of the views they write; recorded in the run's
     state (`<run>/prod_backup.json`) before the first statement;
  2. each migration's statements, one job each; after each migration its tables' schemas are
     compared with what its DDL declares (`expected_after`: columns added, dropped, renamed or
     retyped, tables and views created, dropped or renamed);
  3. on a failed statement or a schema that differs: rollback. Every written table is restored from
     its pinned snapshot (restore.py's publish path: verified stage, copy job WRITE_TRUNCATE into the
     existing table, or a new table when the migration dropped it), every view gets its former
     definition back, tables and views the migrations created are dropped. The run fails naming the
     migration and the statement; the ledger gets one `failed` row for it and nothing `applied`.
  4. only when every migration passed are they recorded `applied`, together.
A retried task that finds the backup record of an earlier try first rolls prod back to it, then
applies again: a promotion converges instead of applying twice.

Projects: each environment is read and written in its own project (`config.project_of(env)`; prod in
`config.prod_project`), its statements written in that project once environments live in several
(`ledger.statement_project`); views are compared with prod's dataset names in prod's project; the
pinned backups live in the backup environment's project.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envsync.migrations.ledger import (
    APPLIED,
    FAILED,
    LedgerRow,
    Migration,
    MigrationError,
    MigrationFiles,
    applied,
    check_applied,
    check_order,
    dataset_map,
    unapplied,
)

if TYPE_CHECKING:
    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import EnvsyncConfig
    from envsync.core.manifest import ManifestStore

log = logging.getLogger(__name__)

TARGETS = ("qa", "staging", "prod")
LANES = ("normal", "hotfix")
PREVIOUS = {"staging": "qa", "prod": "staging"}
VERSION_PATTERN = r"^([0-9]{1,9})?$"
BACKUP_RECORD = "prod_backup.json"


class PromotionError(MigrationError):
    """A gate or check refused the promotion; the message says which and why."""


class MigrationFailed(PromotionError):
    """A migration failed on prod (a statement, or the schema it left); prod was rolled back."""


def labels(migrations: Iterable[Migration]) -> str:
    return ", ".join(m.label for m in migrations)


# ------------------------------------------------------------------------------------- params


@dataclass(frozen=True)
class PromoteParams:
    target: str
    through: int | None
    lane: str
    dry_run: bool
    confirm: str


def validate_promote_params(target: Any, through: Any, lane: Any, dry_run: Any, confirm: Any) -> PromoteParams:
    """The promote_schema params, checked in the task (a REST trigger may bypass the form)."""
    if target not in TARGETS:
        raise ValueError(f"param target must be one of {list(TARGETS)}, got {target!r}")
    if through in (None, ""):
        version = None
    elif isinstance(through, int) and not isinstance(through, bool) and through >= 0:
        version = through
    elif isinstance(through, str) and re.fullmatch(VERSION_PATTERN, through.strip()):
        version = int(through.strip())
    else:
        raise ValueError(
            f"param through must be a migration version (digits, e.g. 3) or empty for every "
            f"pending one, got {through!r}"
        )
    lane = lane or "normal"
    if lane not in LANES:
        raise ValueError(f"param lane must be one of {list(LANES)}, got {lane!r}")
    if isinstance(dry_run, str) and dry_run.strip().lower() in ("true", "false"):
        dry_run = dry_run.strip().lower() == "true"
    if not isinstance(dry_run, bool):
        raise ValueError(f"param dry_run must be true or false, got {dry_run!r}")
    confirm = "" if confirm is None else confirm
    if not isinstance(confirm, str):
        raise ValueError(f"param confirm must be text, got {confirm!r}")
    if confirm and target != "prod":
        raise ValueError(f"param confirm is only for target prod; a promotion to {target} needs none (got {confirm!r})")
    return PromoteParams(target, version, lane, dry_run, confirm)


# ------------------------------------------------------------------------------------- gates


def select(
    migrations: MigrationFiles, ledger: Sequence[LedgerRow], target: str, through: int | None
) -> list[Migration]:
    """The migrations a promotion to `target` runs: not yet held there, up to `through`, in version
    order. Refuses a migration edited since it was applied to any environment (what staging and prod
    get must be what qa and staging ran), an unknown `through` and versions out of order."""
    for env in TARGETS:
        check_applied(migrations, ledger, env)
    if through is not None and through not in {m.version for m in migrations}:
        raise PromotionError(
            f"param through: there is no migration with version {through}; versions are "
            f"{[m.version for m in migrations] or 'none (sql/migrations is empty)'}"
        )
    todo = [m for m in unapplied(migrations, ledger, target) if through is None or m.version <= through]
    check_order(todo, ledger, target)
    return todo


def check_gates(todo: Sequence[Migration], ledger: Sequence[LedgerRow], target: str, lane: str) -> list[str]:
    """The environment gates; returns the notes the report and the alert carry (the hotfix lane's
    skips), raises PromotionError naming the versions a gate refuses. Writes nothing."""
    notes: list[str] = []
    if target == "qa" or not todo:
        return notes
    missing_qa = [m for m in todo if m.version not in applied(ledger, "qa")]
    if target == "staging":
        if missing_qa and lane != "hotfix":
            raise PromotionError(
                f"refused to promote {labels(missing_qa)} to staging: qa has not applied "
                f"{'it' if len(missing_qa) == 1 else 'them'} (a migration reaches staging only after it succeeded "
                "on qa); promote to qa first, or use lane hotfix to skip qa; nothing was written"
            )
    else:
        missing_staging = [m for m in todo if m.version not in applied(ledger, "staging")]
        if missing_staging:
            raise PromotionError(
                f"refused to promote {labels(missing_staging)} to prod: staging has not applied "
                f"{'it' if len(missing_staging) == 1 else 'them'} (a migration reaches prod only after it "
                "succeeded on staging; the hotfix lane may skip qa, never staging); nothing was written"
            )
    if missing_qa:
        versions = ", ".join(str(m.version) for m in missing_qa)
        if lane == "hotfix":
            notes.append(f"hotfix lane: {versions} skipped qa")
        else:
            notes.append(f"{versions} reached staging through the hotfix lane and never ran on qa")
    return notes


def _parse(sql: str) -> Any:
    import sqlglot

    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    return sqlglot.parse_one(sql, read="bigquery")


def reads(sql: str, removal: str, project: str | None = None) -> bool:
    """Whether a query (a view's SQL, prod dataset names) reads `removal`: a table `ds.t` it names, or
    a column `ds.t.c` of a table it names, by name or through `*` (conservative: any column of that
    name in a query that reads the table counts)."""
    from sqlglot import exp

    tree = _parse(sql)
    dataset, table, column = (removal.split(".") + [""])[:3]
    names = {
        (t.db, t.name)
        for t in tree.find_all(exp.Table)
        if t.db and (not t.catalog or project is None or t.catalog == project)
    }
    if (dataset, table) not in names:
        return False
    if not column:
        return True
    if any(
        isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
        for select in tree.find_all(exp.Select)
        for e in select.expressions
    ):
        return True  # `select *` or `t.*` (count(*) reads no column)
    return any(c.name.lower() == column.lower() for c in tree.find_all(exp.Column))


def seed_columns(sql: str) -> list[str]:
    """The column names a seed SELECT yields."""
    return [name.lower() for name in _parse(sql).named_selects]


def prod_views_after(views: Mapping[str, str], migrations: Sequence[Migration]) -> dict[str, str]:
    """Prod's views (`ds.v` -> SQL) as `migrations` leave them: views they create or replace get the
    statement's query, views they drop are gone."""
    from sqlglot import exp

    out = dict(views)
    for migration in migrations:
        for statement in migration.statements:
            if statement.kind not in ("Create", "Drop") or not statement.references:
                continue
            tree = _parse(statement.sql)
            if str(tree.args.get("kind") or "").upper() != "VIEW":
                continue
            key = statement.references[0].key
            if isinstance(tree, exp.Drop):
                out.pop(key, None)
            elif tree.expression is not None:
                out[key] = tree.expression.sql(dialect="bigquery")
    return out


def contract_readers(
    todo: Sequence[Migration],
    views: Mapping[str, Mapping[str, str]],
    seeds: Mapping[str, str],
    project: str | None = None,
) -> list[str]:
    """What still reads what the `contract` migrations of `todo` remove: `views` is environment ->
    {`ds.v`: SQL with prod's dataset names}, `seeds` is `ds.t` -> seed SELECT. One message per reader."""
    problems: list[str] = []
    for migration in todo:
        if migration.phase != "contract":
            continue
        for removal in migration.removals():
            dataset, table, column = (removal.split(".") + [""])[:3]
            for env, env_views in views.items():
                for key, sql in sorted(env_views.items()):
                    if key == f"{dataset}.{table}":
                        continue  # the removed view itself
                    try:
                        found = reads(sql, removal, project)
                    except Exception as error:  # a view sqlglot cannot parse: refuse rather than guess
                        found, key = True, f"{key} (its SQL cannot be parsed: {error})"
                    if found:
                        problems.append(f"{migration.label} removes {removal}, but view {key} of {env} still reads it")
            seed = seeds.get(f"{dataset}.{table}")
            if seed is not None and (not column or column.lower() in seed_columns(seed)):
                what = f"yields column {column}" if column else "fills that table"
                problems.append(f"{migration.label} removes {removal}, but seed {dataset}/{table}.sql still {what}")
    return problems


# --------------------------------------------------------------------------- declared schema


@dataclass
class Expected:
    """What a table or view must look like after a migration: `kind` TABLE, VIEW or ABSENT;
    `columns` lowercased name -> normalised type (a type None, or columns None: the DDL does not say,
    e.g. CTAS or a view)."""

    kind: str
    columns: dict[str, str | None] | None = None


_ALIASES = {
    "INTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "RECORD": "STRUCT",
    "DECIMAL": "NUMERIC",
    "BIGDECIMAL": "BIGNUMERIC",
}


def normal_type(field_repr: Mapping[str, Any]) -> str:
    """A schema field (API representation) as a comparable type: STRING, INT64, ARRAY<STRUCT>, ..."""
    base = str(field_repr.get("type") or "").upper()
    base = _ALIASES.get(base, base)
    return f"ARRAY<{base}>" if str(field_repr.get("mode") or "").upper() == "REPEATED" else base


def declared_type(data_type: Any) -> str:
    """A sqlglot DataType of a column definition, as `normal_type` writes it."""
    text = data_type.sql(dialect="bigquery").upper()
    if text.startswith("ARRAY<"):
        inner = re.split(r"[<(]", text[len("ARRAY<") :], maxsplit=1)[0].rstrip(">")
        return f"ARRAY<{_ALIASES.get(inner, inner)}>"
    base = re.split(r"[<(]", text, maxsplit=1)[0].strip()
    return _ALIASES.get(base, base)


def describe_object(info: Any) -> Expected:
    """The Expected form of a table as it is now (a TableInfo-like: kind, schema), or ABSENT for None."""
    if info is None:
        return Expected("ABSENT")
    kind = "VIEW" if info.kind in ("VIEW", "MATERIALIZED_VIEW") else "TABLE"
    return Expected(kind, {f["name"].lower(): normal_type(f) for f in info.schema})


def expected_after(before: Mapping[str, Expected], migration: Migration) -> dict[str, Expected]:
    """What `migration`'s DDL declares for the tables it names, starting from `before` (`ds.t` ->
    Expected, as they are just before it runs). DML declares nothing about schemas."""
    from sqlglot import exp

    state = {k: Expected(v.kind, dict(v.columns) if v.columns is not None else None) for k, v in before.items()}
    for statement in migration.statements:
        if statement.kind not in ("Create", "Alter", "Drop") or not statement.references:
            continue
        tree = _parse(statement.sql)
        key = statement.references[0].key
        current = state.get(key, Expected("ABSENT"))
        kind = str(tree.args.get("kind") or "TABLE").upper()
        if isinstance(tree, exp.Drop):
            if kind == "SCHEMA":
                continue
            state[key] = Expected("ABSENT")
        elif isinstance(tree, exp.Create):
            if tree.args.get("exists") and current.kind != "ABSENT":
                continue  # CREATE ... IF NOT EXISTS of an existing object leaves it as it is
            if kind in ("VIEW", "MATERIALIZED VIEW"):
                state[key] = Expected("VIEW")
            elif isinstance(tree.this, exp.Schema) and tree.this.expressions and tree.expression is None:
                defs = [d for d in tree.this.expressions if isinstance(d, exp.ColumnDef)]
                state[key] = Expected(
                    "TABLE",
                    {d.name.lower(): declared_type(d.args["kind"]) if d.args.get("kind") else None for d in defs},
                )
            else:
                state[key] = Expected("TABLE")  # CTAS, LIKE, CLONE, COPY: the columns come from elsewhere
        elif type(tree).__name__ == "Alter":
            if current.kind == "ABSENT":
                continue  # ALTER ... IF EXISTS of a missing table (else the statement failed)
            columns = current.columns
            for action in tree.args.get("actions") or []:
                name = type(action).__name__
                if isinstance(action, exp.ColumnDef) and columns is not None:
                    column = action.name.lower()
                    if action.args.get("exists") and column in columns:
                        # ADD COLUMN IF NOT EXISTS: it must now have the declared type
                        columns[column] = (
                            declared_type(action.args["kind"]) if action.args.get("kind") else columns[column]
                        )
                    else:
                        columns[column] = declared_type(action.args["kind"]) if action.args.get("kind") else None
                elif isinstance(action, exp.Drop) and columns is not None:
                    for node in action.args.get("tables") or [action.this]:
                        columns.pop(getattr(node, "name", "").lower(), None)
                elif name == "RenameColumn" and columns is not None and action.this is not None:
                    old = action.this.name.lower()
                    if old in columns:
                        columns[action.args["to"].name.lower()] = columns.pop(old)
                elif name == "AlterColumn" and columns is not None and action.args.get("dtype") is not None:
                    columns[action.name.lower()] = declared_type(action.args["dtype"])
                elif name == "AlterRename" and action.this is not None:
                    new_key = f"{key.split('.')[0]}.{action.this.name}"
                    state[new_key] = Expected(current.kind, columns)
                    state[key] = Expected("ABSENT")
                    key, current = new_key, state[new_key]
                    columns = current.columns
    return state


def compare_expected(expected: Mapping[str, Expected], actual: Mapping[str, Expected]) -> list[str]:
    """Where the schemas after a migration differ from what it declares; one message per object."""
    problems: list[str] = []
    for key, want in sorted(expected.items()):
        got = actual.get(key, Expected("ABSENT"))
        if want.kind != got.kind:
            problems.append(
                f"{key} should be {'absent' if want.kind == 'ABSENT' else 'a ' + want.kind.lower()}, "
                f"it is {'absent' if got.kind == 'ABSENT' else 'a ' + got.kind.lower()}"
            )
            continue
        if want.kind != "TABLE" or want.columns is None or got.columns is None:
            continue
        missing = [c for c in want.columns if c not in got.columns]
        extra = [c for c in got.columns if c not in want.columns]
        retyped = [
            f"{c} is {got.columns[c]}, declared {t}"
            for c, t in want.columns.items()
            if t is not None and c in got.columns and got.columns[c] != t
        ]
        details = (
            [f"column {c} is missing" for c in missing]
            + [f"column {c} is not declared" for c in extra]
            + [f"column {r}" for r in retyped]
        )
        if details:
            problems.append(f"{key}: " + "; ".join(details))
    return problems


# -------------------------------------------------------------------------- plan rendering


def written_tables(config: EnvsyncConfig, migrations: Iterable[Migration]) -> list[str]:
    """Every `ds.t` a statement of `migrations` writes (the guard's own analysis of the statements as
    written, in prod's project), plus the new names of renames and the tables and views they create."""
    from envsync.core.guard import statement_write_targets

    keys: set[str] = set()
    for migration in migrations:
        for statement in migration.statements:
            keys |= {
                f"{t.dataset}.{t.table}" for t in statement_write_targets(statement.sql, config.prod_project) if t.table
            }
        keys |= {item for item in migration.additions() if item.count(".") == 1}
    return sorted(keys)


def plan_text(
    config: EnvsyncConfig,
    todo: Sequence[Migration],
    ledger: Sequence[LedgerRow],
    target: str,
    lane: str,
    notes: Sequence[str],
) -> str:
    """The promotion plan: per environment what it holds and what would run, then per migration the
    tables it touches and its statements rewritten for the target."""
    versions = {m.version for m in todo}
    lines = [f"promotion to {target}, lane {lane}: " + (", ".join(m.label for m in todo) or "nothing pending")]
    for env in TARGETS:
        held = [v for v in applied(ledger, env)]
        line = f"  {env:<8} holds {', '.join(map(str, held)) or '-'}"
        if env == target:
            line += f"; would run {', '.join(str(v) for v in sorted(versions)) or 'nothing'}"
        lines.append(line)
    lines += [f"  note: {n}" for n in notes]
    for migration in todo:
        lines.append(
            f"migration {migration.version} ({migration.label}, {migration.phase}) on {target}: "
            f"touches {', '.join(migration.tables())}; writes {', '.join(written_tables(config, [migration]))}"
        )
        for number, sql in migration.rewrite_for(config, target):
            lines.append(f"  line {number}:")
            lines += [f"    {text}" for text in sql.splitlines()]
    return "\n".join(lines)


# ----------------------------------------------------------------------- reads of environments


def environment_views(config: EnvsyncConfig, client: Any, env: str) -> dict[str, str]:
    """The views of `env`'s datasets (in env's project), keyed `ds.v` with prod's dataset names, their
    SQL rewritten back to prod's dataset names in prod's project ({} for a dataset that does not exist)."""
    from google.api_core.exceptions import NotFound

    from envsync.bigquery.views import rewrite_view_sql

    mapping = dataset_map(config, env)
    back = {env_ds: ds for ds, env_ds in mapping.items()}
    project = config.project_of(env)
    views: dict[str, str] = {}
    for ds, env_ds in mapping.items():
        try:
            items = list(client.list_tables(f"{project}.{env_ds}"))
        except NotFound:
            continue
        for item in items:
            if (item.table_type or "").upper() != "VIEW":
                continue
            query = client.get_table(item.reference).view_query or ""
            views[f"{ds}.{item.table_id}"] = (
                rewrite_view_sql(query, back, project, target_project=config.prod_project).sql
                if back != mapping or project != config.prod_project
                else query
            )
    return views


def seed_queries(config: EnvsyncConfig) -> dict[str, str]:
    """`ds.t` -> the seed SELECT of every seed file of the configured datasets (unreadable ones skipped:
    the reseed reports them)."""
    from envsync.environments.seeds import SeedError, find_seeds, load_seed

    out: dict[str, str] = {}
    for ds in config.prod.datasets:
        for table, path in find_seeds(config, ds).items():
            try:
                out[f"{ds}.{table}"] = load_seed(path)
            except SeedError as error:
                log.warning("seed %s/%s.sql not checked for contract readers: %s", ds, table, error)
    return out


def staging_problems(
    config: EnvsyncConfig, runner: JobRunner, migrations: MigrationFiles, ledger: Sequence[LedgerRow]
) -> list[str]:
    """Before prod: every view of staging resolves (read with LIMIT 0, no rows) and every seed fits
    staging's schema (the reseed's contract check). Reads only."""
    from dataclasses import replace

    from envsync.bigquery.discovery import discover_dataset
    from envsync.bigquery.jobs import JobStats
    from envsync.core.guard import TableRef
    from envsync.core.sqltemplates import render
    from envsync.environments.reseed import ContractError, Reseeder
    from envsync.migrations.ledger import _bigquery_message, ahead_of

    problems: list[str] = []
    client = runner.bq.client
    reseeder = Reseeder(config, runner, dt.datetime.now(dt.UTC))
    ahead = frozenset(ahead_of(migrations, ledger, "staging"))
    stats = JobStats()
    project = config.project_of("staging")
    for ds, env_ds in dataset_map(config, "staging").items():
        info = discover_dataset(client, project, env_ds)
        for table in info.tables:
            if table.kind != "VIEW":
                continue
            try:
                runner.run(
                    render("sync/probe_view", target=TableRef(project, env_ds, table.table).sql),
                    key=("promote_probe", env_ds, table.table),
                    stats=stats,
                )
            except Exception as error:
                from envsync.migrations.ledger import _refused_by_bigquery

                if not _refused_by_bigquery(error):
                    raise
                problems.append(
                    f"view {config.qualified(project, env_ds, table.table)} of staging does not resolve: "
                    f"{_bigquery_message(error)}"
                )
        as_prod = replace(info, dataset=ds)
        try:
            sources = reseeder.sources(as_prod)
        except ContractError as error:
            problems.append(f"seeds do not fit staging: {error}")
            continue
        problems += reseeder.check_contract(
            as_prod, sources, stats, schema_name="staging's schema", ahead=ahead, env="staging"
        )
    log.info("staging checked before prod: %d view/seed problem(s), %d read-only jobs", len(problems), stats.jobs)
    return problems


# --------------------------------------------------------------------------------- prod run


class ProdPromotion:
    """Applies confirmed migrations to prod (in prod's project) with a pinned backup, schema checks and
    rollback."""

    def __init__(
        self,
        config: EnvsyncConfig,
        runner: JobRunner,
        store: ManifestStore,
        prefix: str,
        migrations: Sequence[Migration],
        confirm: object,
    ):
        from envsync.backups.restore import RESTORE_SUFFIX
        from envsync.bigquery.jobs import JobRunner as Runner
        from envsync.core.guard import GuardedBigQuery, WriteGuard

        self.config = config
        self.project = config.prod_project
        self.migrations = list(migrations)
        self.store = store
        self.path = f"{prefix}/{BACKUP_RECORD}"
        self.written = written_tables(config, self.migrations)
        scope = set(self.written) | {f"{key}{RESTORE_SUFFIX}" for key in self.written}
        guard = WriteGuard.from_config(config).for_prod_migrations(
            [m.version for m in self.migrations],
            sorted({k.split(".")[0] for k in self.written}),
            confirm,
            tables=sorted(scope),
        )  # refuses here, before any write, without the exact phrase
        self.bq = GuardedBigQuery(runner.bq.client, guard, runner.bq.location)
        self.runner = Runner(
            self.bq,
            dag_id=runner.dag_id,
            run_id=runner.run_id,
            task_id=runner.task_id,
            timeout=runner.timeout,
            retry=runner.retry,
            sleep=runner.sleep,
            rng=runner.rng,
        )
        self.ledger_runner = runner

    # state --------------------------------------------------------------------------------
    def describe(self, keys: Iterable[str]) -> dict[str, Expected]:
        from google.api_core.exceptions import NotFound

        from envsync.bigquery.discovery import TableInfo

        out: dict[str, Expected] = {}
        for key in keys:
            try:
                table = self.bq.client.get_table(f"{self.project}.{key}")
            except NotFound:
                out[key] = Expected("ABSENT")
                continue
            out[key] = describe_object(TableInfo.from_api(table))
        return out

    def _engines(self) -> tuple[Any, Any]:
        from envsync.backups.restore import RestoreEngine
        from envsync.backups.snapshots import BackupCatalog, BackupEngine

        catalog = BackupCatalog(self.config, self.bq.client, self.store)
        return RestoreEngine(self.config, self.bq, self.runner, catalog), BackupEngine(
            self.config, self.bq, self.runner, catalog
        )

    # 1. backup ----------------------------------------------------------------------------
    def backup(self, reason: str) -> tuple[dict[str, Any], bool]:
        """Pin every written table, note the views' definitions and what is absent; recorded (status
        `pinned`) before the first statement. Returns (record, interrupted): a retried task finds the
        record of an earlier try that stopped while applying (still `pinned`) and gets it back, to roll
        back to it first. A record that was rolled back or applied is not reused: prod may have
        changed since, so a new backup is taken."""
        from google.api_core.exceptions import NotFound

        recorded = self.store.read(self.path)
        if recorded is not None and recorded.get("status") == "pinned":
            log.info("the pinned backup of an earlier try of this run is recorded at %s", self.store.uri(self.path))
            return recorded, True
        objects: dict[str, dict[str, Any]] = {}
        tables_by_ds: dict[str, list[str]] = {}
        for key in self.written:
            ds, _, name = key.partition(".")
            try:
                table = self.bq.client.get_table(f"{self.project}.{key}")
            except NotFound:
                objects[key] = {"kind": "ABSENT"}
                continue
            kind = (table.table_type or "TABLE").upper()
            if kind == "VIEW":
                objects[key] = {"kind": "VIEW", "query": table.view_query or ""}
            elif kind == "TABLE":
                objects[key] = {"kind": "TABLE"}
                tables_by_ds.setdefault(ds, []).append(name)
            else:
                raise PromotionError(
                    f"{key} is a {kind.lower()}: migrations only change tables and views; nothing was written"
                )
        restore, backups = self._engines()
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.config.backups.pinned_expiry_days)
        for ds, names in sorted(tables_by_ds.items()):
            for manifest in restore.pin_current(ds, names, reason, expires, backups):
                objects[f"{ds}.{manifest['table']}"].update(
                    snapshot=manifest["snapshot"],
                    taken_at=manifest["taken_at"],
                    rows=manifest["rows"],
                    checksum=manifest["checksum"],
                )
        record = {
            "taken_at": dt.datetime.now(dt.UTC).isoformat(),
            "reason": reason,
            "status": "pinned",
            "versions": [m.version for m in self.migrations],
            "objects": objects,
        }
        self.store.write(self.path, record)
        log.info(
            "pinned backup of prod before the promotion: %s",
            ", ".join(
                f"{k} -> {v['snapshot']}" if "snapshot" in v else f"{k} ({v['kind'].lower()})"
                for k, v in sorted(objects.items())
            ),
        )
        return record, False

    def _snapshot_api(self, snapshot: str) -> str:
        """`project.dataset.table` of a pinned snapshot recorded as `dataset.table` (in the backup
        environment's project) or, once environments live in several projects, `project.dataset.table`."""
        return snapshot if snapshot.count(".") == 2 else f"{self.config.project_of('backup')}.{snapshot}"

    def _mark(self, record: dict[str, Any], status: str) -> None:
        self.store.write(self.path, {**record, "status": status})

    # 2. apply -----------------------------------------------------------------------------
    def apply_one(self, migration: Migration) -> dict[str, Any]:
        """Run one migration's statements, then compare its tables with what its DDL declares."""
        from envsync.migrations.ledger import _bigquery_message, _file_line
        from envsync.observe.report import result_row

        keys = sorted(set(migration.tables()) | {k for k in migration.additions() if k.count(".") == 1})
        expected = expected_after(self.describe(keys), migration)
        row = result_row(
            f"migration {migration.version}",
            f"prod: {migration.label}",
            "migrate",
            f"{migration.phase}: {len(migration.statements)} statement(s)",
            env="prod",
        )
        clock = dt.datetime.now(dt.UTC)
        for number, (line, sql) in enumerate(migration.rewrite_for(self.config, "prod")):
            try:
                job = self.runner.run(sql, key=("promote", "prod", str(migration.version), str(number)))
            except Exception as error:
                message = _bigquery_message(error)
                first = sql.strip().splitlines()[0][:200]
                raise MigrationFailed(
                    f"migration {migration.label} failed on prod at "
                    f"{migration.where(_file_line(line, message))} ({first!r}): {message}"
                ) from error
            row["jobs"] += 1
            billed = getattr(job, "total_bytes_billed", None)
            row["bytes_billed"] += billed if isinstance(billed, int) else 0
        problems = compare_expected(expected, self.describe(sorted(expected)))
        if problems:
            raise MigrationFailed(
                f"migration {migration.label} ran on prod, but the schema it left differs from what "
                f"its statements declare: {'; '.join(problems)}"
            )
        row.update(status="ok", seconds=round((dt.datetime.now(dt.UTC) - clock).total_seconds(), 3))
        log.info(
            "applied %s to prod (%d statements); its schema is as declared", migration.label, len(migration.statements)
        )
        return row

    # 3. rollback --------------------------------------------------------------------------
    def rollback(self, record: Mapping[str, Any]) -> list[str]:
        """Bring every written table and view back to the recorded backup; returns what was done.
        Raises PromotionError naming what could not be restored."""
        from envsync.backups.restore import RestoreError, Source, publish_disposition
        from envsync.core.guard import TableRef
        from envsync.core.sqltemplates import render

        restore, _ = self._engines()
        done: list[str] = []
        failures: list[str] = []
        objects = record["objects"]
        now = self.describe(sorted(objects))
        order = sorted(objects, key=lambda k: ({"ABSENT": 0, "TABLE": 1, "VIEW": 2}[objects[k]["kind"]], k))
        for key in order:
            entry = objects[key]
            ds, _, name = key.partition(".")
            ref = TableRef(self.project, ds, name)
            try:
                if entry["kind"] == "ABSENT":
                    if now[key].kind != "ABSENT":
                        self.bq.delete_table(ref)
                        done.append(f"dropped {key} (created by the promotion)")
                elif entry["kind"] == "VIEW":
                    if now[key].kind == "TABLE":
                        self.bq.delete_table(ref)
                    self.runner.run(
                        render("sync/create_view", target=ref.sql, query=entry["query"]), key=("rollback", "view", key)
                    )
                    done.append(f"view {key}: its former definition")
                else:
                    if now[key].kind != "ABSENT":
                        current = self.bq.client.get_table(ref.api)
                        snapshot = self.bq.client.get_table(self._snapshot_api(entry["snapshot"]))
                        try:
                            publish_disposition(str(ref), current, snapshot)
                        except RestoreError:  # replaced by a view or repartitioned: make room
                            self.bq.delete_table(ref)
                    taken_at = dt.datetime.fromisoformat(entry["taken_at"])
                    source = Source(
                        "snapshot", name, taken_at, entry["snapshot"], "pinned before the promotion (rollback)"
                    )
                    result = restore.restore_table(ds, source, ds, taken_at)
                    if result["status"] != "ok":
                        raise RestoreError(str(result.get("error")))
                    done.append(f"{key} restored from {entry['snapshot']} ({result['rows']} rows, checksum verified)")
            except Exception as error:
                failures.append(f"{key}: {type(error).__name__}: {error}")
        for line in done:
            log.info("rollback: %s", line)
        if failures:
            raise PromotionError(
                "ROLLBACK INCOMPLETE, prod may be partly migrated: "
                + "; ".join(failures)
                + f"; the pinned backup is recorded at {self.store.uri(self.path)} (restore DAG)"
            )
        return done

    # the whole run --------------------------------------------------------------------------
    def run(self, ledger: Sequence[LedgerRow], reason: str) -> list[dict[str, Any]]:
        """Backup, apply each migration with its schema check, record them applied; on failure roll
        back, record the failing migration `failed` and raise MigrationFailed."""
        from envsync.migrations.ledger import _ledger_row, record

        runner = self.ledger_runner
        mine = {
            r.version for r in ledger if r.environment == "prod" and r.run_id == runner.run_id and r.status == APPLIED
        }
        if mine and mine >= {m.version for m in self.migrations}:
            log.info("migrations %s were applied to prod by an earlier try of this run", sorted(mine))
            return [self._done_row(m) for m in self.migrations]
        record_, interrupted = self.backup(reason)
        if interrupted:
            log.warning(
                "an earlier try of this run stopped while promoting to prod: rolling back to its pinned "
                "backup before applying again"
            )
            self.rollback(record_)
        rows: list[dict[str, Any]] = []
        for migration in self.migrations:
            try:
                rows.append(self.apply_one(migration))
            except MigrationFailed as failure:
                log.error("%s; rolling prod back to the pinned backup", failure)
                try:
                    undone = self.rollback(record_)
                except PromotionError as rollback_error:
                    message = f"{failure}; {rollback_error}"
                else:
                    self._mark(record_, "rolled_back")
                    message = (
                        f"{failure}; prod was rolled back to the pinned backup taken at {record_['taken_at']} "
                        f"({len(undone)} object(s)); nothing was recorded as applied"
                    )
                record(
                    self.config,
                    runner,
                    [
                        _ledger_row(
                            migration, "prod", FAILED, dag_id=runner.dag_id, run_id=runner.run_id, error=message[:2000]
                        )
                    ],
                )
                raise MigrationFailed(message) from failure
        record(
            self.config,
            runner,
            [_ledger_row(m, "prod", APPLIED, dag_id=runner.dag_id, run_id=runner.run_id) for m in self.migrations],
        )
        self._mark(record_, "applied")
        return rows

    @staticmethod
    def _done_row(migration: Migration) -> dict[str, Any]:
        from envsync.observe.report import result_row

        return {
            **result_row(
                f"migration {migration.version}",
                f"prod: {migration.label}",
                "migrate",
                "applied by an earlier try of this run",
                env="prod",
            ),
            "status": "ok",
        }
