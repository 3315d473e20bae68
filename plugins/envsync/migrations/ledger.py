"""Versioned schema migrations: `sql/migrations/<version>_<name>.sql`, applied per environment.

A migration is a BigQuery script (statements separated by `;`) written against prod's dataset names.
Its first lines declare its phase, and nothing else may come before that comment:

    -- envsync: phase=expand
    alter table sales.customers add column email string;

`expand` is additive (new tables, new nullable columns, new views, widened types, backfills);
`contract` is destructive (drops, renames, deletes, replaced tables). An `expand` migration that holds
a destructive statement is refused, naming the file and line. Versions are the file name's leading
digits (`0001_add_email.sql` is version 1); names are lowercase letters, digits and `_`.

Public API (used by the sync and reseed DAGs, and by schema promotion):

    load_migrations(config, directory=None) -> MigrationFiles
                                                            every file of sql/migrations (or
                                                            ENVSYNC_MIGRATIONS_DIR), ordered by version,
                                                            parsed and checked offline (phase, names,
                                                            statement kinds); raises MigrationError
    MigrationFiles                                          the whole set of files (a tuple, version
                                                            order): what every check of an environment's
                                                            ledger history is given; a plain list (a
                                                            subset, such as the migrations about to run)
                                                            is refused there with a TypeError
    Migration                                               version, name, phase, path, label (file name),
                                                            checksum (sha256 of the file, CRLF read as
                                                            LF), statements (Statement: line, sql, kind,
                                                            destructive, changes_schema), datasets(),
                                                            tables(), additions(), removals(), where(line)
    Migration.rewrite_for(config, env, test_name=None)      [(line, SQL)]: every dataset reference renamed
                                                            to env's datasets (prod: exactly as written);
                                                            with environments in several projects, every
                                                            reference also names env's project
    read_ledger(config, client) -> [LedgerRow]              envsync_audit.migrations (in the audit
                                                            dataset's project), oldest first
    applied(ledger, env, as_of=None) -> {version: LedgerRow}
                                                            versions env holds (newest row applied/synced;
                                                            as_of: only rows recorded by then)
    check_applied(files, ledger, env)                       refuses an edited applied migration (checksum
                                                            mismatch names the file) or a missing file
    pending(files, ledger, env) -> [Migration]              promoted to env and not applied in prod: what
                                                            a rebuild of env from prod applies again
    unapplied(files, ledger, env) -> [Migration]            not yet applied to env (what a promotion runs)
    check_order(migrations, ledger, env)                    refuses a version older than env's newest
    ahead_of(files, ledger, env) -> {str}                   tables/columns the migrations env lacks add
    validate(config, runner, env, migrations, *, test_name=None, base=None) -> Rehearsal
                                                            every statement checked against env's schema
                                                            (or base's: "prod" predicts env after a
                                                            rebuild) as it will be at that point; raises
                                                            MigrationValidationError (file:line: message)
    apply(config, runner, env, migrations, *, files, ledger, rebuild=False, confirm=None, test_name=None,
          validated=False) -> [report row]                  validates, then runs them through the write
                                                            guard, recording each in the ledger; prod
                                                            only with confirm = guard's
                                                            migration_confirmation_phrase(versions);
                                                            env's history is checked against `files`
    record(config, runner, rows)                            appends LedgerRows (batched, bound parameters)
    record_synced(config, runner, env, files, ledger) -> [version]
                                                            notes the versions a rebuild from prod
                                                            brought into env (status synced)
    reapply(config, runner, env, files, ledger, versions, *, validated=False) -> Reapplied
                                                            after a rebuild of env from prod: records
                                                            synced, applies env's pending versions again;
                                                            on a failure records what env no longer
                                                            holds (failed / reverted) and says so
    carry_over(ledger, source, target, *, as_of, dag_id, run_id) -> [LedgerRow]
                                                            the rows that make target hold exactly what
                                                            source held as of T (target's tables became
                                                            copies of source's): synced / reverted
    record_carried(config, runner, source, target, ledger, *, as_of) -> ([synced], [reverted])
                                                            records carry_over's rows (staging_cut)

Ledger statuses (the newest row of a version in an environment decides; `HELD` = applied, synced):
`applied` (a promotion ran it there), `synced` (a rebuild brought it: from prod by a sync or reseed,
from qa by a QA -> staging cut), `failed` (its last attempt there failed), `reverted` (the environment
no longer has it: a QA -> staging cut replaced staging's tables with qa's, which never had it, or a
rebuild from prod dropped it and applying it again did not get to it; a promotion may apply it again).

Validation before the first write. Every statement is checked by BigQuery itself, as a dry run (free;
on the local test bed the emulator's GoogleSQL analyzer answers it). A statement may depend on an
earlier statement of the same migration or of an earlier pending migration (an UPDATE of a column
added just before), which the environment does not have yet; so the whole list is rehearsed in
scratch datasets (`<drill prefix>migcheck_<env>_<run tag>_<dataset>` in the drill environment's
project, where the guard lets that prefix be written; tables expiring after a day, dropped at the
end): every table and view the migrations name is re-created there empty with
`CREATE TABLE ... LIKE` (schema, partitioning, clustering and options, no data: free), then each
statement, rewritten to the scratch datasets, is dry-run and, when it changes the schema (DDL), run
there, so the next statement is checked against the schema as it will be. DML is only dry-run. The
first refusal stops validation with `file:line: message`; nothing is written to the environment.
The rehearsal's end schemas are returned (`Rehearsal.schemas`), for the reseed's seed contract.

Projects. Migrations name prod's datasets, unqualified or in prod's project. In the one-project layout
a statement runs as written, its datasets renamed; once environments live in projects of their own
(`config.split`), every reference is also written `<env's project>.<env dataset>.table`
(`statement_project`), so a statement reads and writes the environment's project whichever project its
job runs in (`config.jobs_project_of(env)`, the runner's client).

Applying is not atomic: BigQuery has no transactions for DDL. Each migration's statements run in
order, one job each; a failure stops there, is recorded as `failed` with the file, line and message,
and the environment keeps the statements that already ran.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envsync.core.guard import TableRef
from envsync.core.identifiers import validate_identifier

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import EnvsyncConfig

log = logging.getLogger(__name__)

MIGRATIONS_DIR_ENV = "ENVSYNC_MIGRATIONS_DIR"
LEDGER = "migrations"
PHASES = ("expand", "contract")
FILE_RE = re.compile(r"^(?P<version>[0-9]{1,9})_(?P<name>[a-z0-9][a-z0-9_]{0,99})\.sql$")
HEADER_RE = re.compile(r"^--\s*envsync:\s*phase\s*=\s*(?P<phase>\S+)\s*$")
# ledger statuses: the newest row of a version decides whether the environment holds it
#   applied   a promotion (or a rebuild re-applying it) ran it in the environment
#   synced    the environment got it through a rebuild: from prod (sync, reseed) or from qa (staging_cut)
#   failed    its last attempt there failed (not held)
#   reverted  the environment no longer has it: a QA -> staging cut replaced staging's tables with qa's,
#             which never had it (a hotfix that skipped qa), or a rebuild from prod dropped it and
#             applying it again stopped before it; a promotion may apply it again (not held)
APPLIED, FAILED, SYNCED, REVERTED = "applied", "failed", "synced", "reverted"
HELD = (APPLIED, SYNCED)
LEDGER_COLUMNS = {
    "applied_at": "TIMESTAMP",
    "environment": "STRING",
    "version": "INT64",
    "name": "STRING",
    "phase": "STRING",
    "checksum": "STRING",
    "dag_id": "STRING",
    "run_id": "STRING",
    "status": "STRING",
    "error": "STRING",
}
SCRATCH_EXPIRATION_MS = 24 * 3600 * 1000
SCRATCH_MARK = "migcheck_"


class MigrationError(ValueError):
    """A migration file, or the ledger, refuses what was asked; the message names the file."""


class MigrationValidationError(MigrationError):
    """BigQuery refused a statement of a migration: `file:line: message`. Nothing was written."""


# ------------------------------------------------------------------------------------ files


@dataclass(frozen=True)
class Reference:
    """A table a statement names: its position in the statement's text and its parts as written."""

    project: str  # "" when not written
    dataset: str
    table: str
    edits: tuple[tuple[int, int, str], ...]  # (start, end inclusive, replacement template with {dataset})
    # the same reference written `project.dataset` (start, end inclusive, template with {project}, {dataset})
    qualified: tuple[int, int, str]

    @property
    def key(self) -> str:
        return f"{self.dataset}.{self.table}"


@dataclass(frozen=True)
class Statement:
    line: int  # 1-based line in the file where the statement starts
    sql: str  # the statement's text as written (prod's names)
    kind: str  # sqlglot's statement type, e.g. Alter, Create, Update
    destructive: str  # why it is destructive ("drops column x of sales.t"), or ""
    changes_schema: bool  # DDL: the rehearsal runs it, DML is only dry-run
    references: tuple[Reference, ...] = ()
    removes: tuple[str, ...] = ()  # what it removes: "sales.t" (a table or view) or "sales.t.column"
    adds: tuple[str, ...] = ()  # what it adds: "sales.t" or "sales.t.column" (or the new name of a rename)

    def rewritten(self, dataset_map: Mapping[str, str], project: str | None = None) -> str:
        """The statement with its dataset references renamed per `dataset_map` (others unchanged); with
        a `project`, those references are also written in that project (`project`.dataset.table)."""
        found: list[tuple[int, int, str]] = []
        for r in self.references:
            if r.dataset not in dataset_map:
                continue
            if project is None:
                found += [(s, end, text.format(dataset=dataset_map[r.dataset])) for s, end, text in r.edits]
            else:
                start, end, text = r.qualified
                found.append((start, end, text.format(project=project, dataset=dataset_map[r.dataset])))
        edits = sorted(found, reverse=True)
        sql = self.sql
        for start, end, text in edits:
            sql = sql[:start] + text + sql[end + 1 :]
        return sql


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    phase: str
    path: Path
    checksum: str
    statements: tuple[Statement, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return self.path.name

    def datasets(self) -> list[str]:
        return sorted({r.dataset for s in self.statements for r in s.references})

    def tables(self) -> list[str]:
        """Every `dataset.table` its statements name (read or written)."""
        return sorted({r.key for s in self.statements for r in s.references})

    def additions(self) -> list[str]:
        """What it adds: tables/views it creates (`ds.t`) and columns (`ds.t.column`)."""
        return sorted({item for s in self.statements for item in s.adds})

    def removals(self) -> list[str]:
        """What a contract migration removes: tables/views (`ds.t`) and columns (`ds.t.column`)."""
        return sorted({item for s in self.statements for item in s.removes})

    def rewrite_for(self, config: EnvsyncConfig, env: str, test_name: str | None = None) -> list[tuple[int, str]]:
        """(line, SQL) of every statement, its datasets renamed to `env`'s (prod: as written) and, with
        environments in several projects, written in `env`'s project."""
        mapping = dataset_map(config, env, test_name)
        project = statement_project(config, env)
        return [(s.line, s.rewritten(mapping, project)) for s in self.statements]

    def where(self, line: int) -> str:
        return f"{display_path(self.path)}:{line}"


class MigrationFiles(tuple[Migration, ...]):
    """Every migration file of the migrations directory, in version order (`load_migrations`).

    What an environment holds is checked against its whole ledger history, so every check of that
    history needs every file: given only the migrations about to run, a version the environment
    already holds would look like a deleted file. Those checks take a MigrationFiles and refuse a
    plain list or tuple (a TypeError naming the call), so a subset cannot be passed by mistake."""

    __slots__ = ()

    def __new__(cls, migrations: Iterable[Migration] = ()) -> MigrationFiles:
        return super().__new__(cls, sorted(migrations, key=lambda m: m.version))

    def by_version(self) -> dict[int, Migration]:
        return {m.version: m for m in self}

    def versions(self) -> list[int]:
        return [m.version for m in self]


def every_file(files: object, where: str) -> MigrationFiles:
    """`files` when it is the whole set (MigrationFiles); a TypeError naming `where` otherwise."""
    if not isinstance(files, MigrationFiles):
        raise TypeError(
            f"{where} needs every migration file (load_migrations(config) gives them), got "
            f"{type(files).__name__}: an environment's ledger history is checked against all the files, "
            "never only the migrations about to run"
        )
    return files


def display_path(path: Path) -> str:
    """The path relative to the working directory when it is inside it (file:line messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def dataset_map(config: EnvsyncConfig, env: str, test_name: str | None = None) -> dict[str, str]:
    """prod dataset -> env dataset (identity for prod)."""
    if env == "prod":
        return {ds: ds for ds in config.prod.datasets}
    return {ds: config.env_dataset(env, ds, test_name) for ds in config.prod.datasets}


def statement_project(config: EnvsyncConfig, env: str) -> str | None:
    """The project a migration's references are written in when it runs on `env`: env's project once
    environments live in several projects; None in the one-project layout (unqualified, as written)."""
    return config.project_of(env) if config.split else None


def migrations_dir(config: EnvsyncConfig | None = None) -> Path:
    import os

    from envsync.core.sqltemplates import sql_dir

    return Path(os.environ.get(MIGRATIONS_DIR_ENV) or sql_dir() / "migrations")


def checksum_of(data: bytes) -> str:
    """sha256 of a migration file, with CRLF line ends read as LF (a checkout's line ends do not matter)."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def _phase(path: Path, text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        match = HEADER_RE.match(stripped)
        if match is None:
            break
        phase = match.group("phase")
        if phase not in PHASES:
            raise MigrationError(
                f"{display_path(path)}:1: phase {phase!r} is not allowed; use one of {', '.join(PHASES)}"
            )
        return phase
    raise MigrationError(
        f"{display_path(path)}: a migration must start with its phase, the line '-- envsync: phase=expand' "
        "or '-- envsync: phase=contract'"
    )


def split_statements(text: str) -> list[tuple[int, int, int]]:
    """(line, start, end exclusive) of every statement of a script, split on top-level `;` (sqlglot's
    BigQuery tokenizer: semicolons inside strings and comments do not split)."""
    from sqlglot.dialects.bigquery import BigQuery

    tokens = BigQuery().tokenize(text)
    out: list[tuple[int, int, int]] = []
    first = None
    last = None
    for token in tokens:
        if token.token_type.name == "SEMICOLON":
            if first is not None and last is not None:
                out.append((first.line, first.start, last.end + 1))
            first = last = None
            continue
        if first is None:
            first = token
        last = token
    if first is not None and last is not None:
        out.append((first.line, first.start, last.end + 1))
    return out


def _reference_edits(
    sql: str, table: Any, tokens: list[Any]
) -> tuple[tuple[tuple[int, int, str], ...], tuple[int, int, str]] | None:
    """Where the dataset part of a table reference is written, as (start, end, template) edits that
    rename it (`{dataset}`), keeping the reference's quoting; and one edit that writes the reference's
    project and dataset (`{project}`, `{dataset}`) over its text up to the dataset (any project written
    there included). None when the text does not show where."""
    metas = [
        table.args[k].meta
        for k in ("catalog", "db", "this")
        if table.args.get(k) is not None and table.args[k].meta.get("start") is not None
    ]
    if not metas:
        return None
    lo = min(m["start"] for m in metas)
    hi = max(m["end"] for m in metas)
    index = {t.start: i for i, t in enumerate(tokens)}
    i = index.get(lo)
    if i is None:
        return None
    # `project.dataset`.table: sqlglot's positions cover only the last token; walk back over `.`
    while i >= 2 and tokens[i - 1].token_type.name == "DOT" and tokens[i - 2].token_type.name in ("IDENTIFIER", "VAR"):
        i -= 2
    j = i
    while j < len(tokens) and tokens[j].end < hi:
        j += 1
    segments: list[tuple[int, int]] = []  # (token index, segment index inside the token)
    for k in range(i, j + 1):
        token = tokens[k]
        if token.token_type.name in ("IDENTIFIER", "VAR"):
            for n in range(len(token.text.split("."))):
                segments.append((k, n))
    position = 1 if table.catalog else 0
    if position >= len(segments):
        return None
    k, n = segments[position]
    token = tokens[k]
    parts = token.text.split(".")
    if parts[n] != table.db:
        return None
    quoted = sql[token.start] == "`"
    rest = parts[n + 1 :]
    parts[n] = "{dataset}"
    text = ".".join(parts)
    # from the reference's first token to its dataset: `{project}.{dataset}[.rest]` inside the quotes
    # of a quoted dataset token, `{project}`.{dataset} before an unquoted one
    qualified = "`" + ".".join(["{project}", "{dataset}", *rest]) + "`" if quoted else "`{project}`.{dataset}"
    return ((token.start, token.end, f"`{text}`" if quoted else text),), (tokens[i].start, token.end, qualified)


_ALLOWED_KINDS = ("Create", "Alter", "Drop", "Insert", "Update", "Delete", "Merge", "TruncateTable")


def _destructive(statement: Any, references: list[Reference]) -> tuple[str, tuple[str, ...]]:
    """(why the statement is destructive or "", what it removes)."""
    from sqlglot import exp

    target = references[0].key if references else "?"
    kind = type(statement).__name__
    if isinstance(statement, exp.Drop):
        return f"drops {str(statement.args.get('kind') or '').lower()} {target}", (target,)
    if isinstance(statement, exp.TruncateTable):
        return f"truncates {target}", ()
    if isinstance(statement, exp.Delete):
        return f"deletes rows of {target}", ()
    if isinstance(statement, exp.Merge):
        for when in statement.find_all(exp.When):
            if str(when.args.get("then") or "").strip().upper() == "DELETE":
                return f"deletes rows of {target} (MERGE ... THEN DELETE)", ()
        return "", ()
    if isinstance(statement, exp.Create):
        if statement.args.get("replace") and str(statement.args.get("kind") or "").upper() == "TABLE":
            return f"replaces table {target}", ()
        return "", ()
    if kind == "Alter":
        reasons, removed = [], []
        for action in statement.args.get("actions") or []:
            name = type(action).__name__
            if isinstance(action, exp.Drop):
                for node in action.args.get("tables") or [action.this]:
                    column = getattr(node, "name", "") or "?"
                    reasons.append(f"drops column {column} of {target}")
                    removed.append(f"{target}.{column}")
            elif name == "RenameColumn":
                column = action.this.name if action.this is not None else "?"
                reasons.append(f"renames column {column} of {target}")
                removed.append(f"{target}.{column}")
            elif name == "AlterRename":
                reasons.append(f"renames {target}")
                removed.append(target)
        return "; ".join(reasons), tuple(removed)
    return "", ()


def _additions(statement: Any, references: list[Reference]) -> tuple[str, ...]:
    """What a statement adds: the table or view it creates, the columns it adds or renames to."""
    from sqlglot import exp

    if not references:
        return ()
    target = references[0].key
    if isinstance(statement, exp.Create) and not statement.args.get("replace"):
        return (target,)
    added: list[str] = []
    if type(statement).__name__ == "Alter":
        for action in statement.args.get("actions") or []:
            name = type(action).__name__
            if isinstance(action, exp.ColumnDef):
                added.append(f"{target}.{action.name}")
            elif name == "RenameColumn" and action.args.get("to") is not None:
                added.append(f"{target}.{action.args['to'].name}")
            elif name == "AlterRename" and action.this is not None:
                added.append(f"{target.split('.')[0]}.{action.this.name}")
    return tuple(added)


def parse_statement(
    path: Path, text: str, line: int, sql: str, config_datasets: Sequence[str], project: str | None
) -> Statement:
    """Parse one statement (sqlglot, BigQuery dialect, as views.py) and find its table references;
    refuse what envsync cannot rewrite safely or what names anything outside the configured datasets."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.dialects.bigquery import BigQuery

    where = f"{display_path(path)}:{line}"
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    try:
        statement = sqlglot.parse_one(sql, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.ParseError as error:
        raise MigrationError(f"{where}: cannot parse the statement: {str(error).splitlines()[0]}") from None
    kind = type(statement).__name__
    if kind not in _ALLOWED_KINDS:
        shown = sql.split(None, 3)[:3]
        raise MigrationError(
            f"{where}: envsync cannot run {' '.join(shown)!r} as a migration statement (it cannot find every "
            f"table it names); allowed are CREATE/ALTER/DROP TABLE or VIEW, INSERT, UPDATE, DELETE, MERGE, TRUNCATE"
        )
    object_kind = str(statement.args.get("kind") or "TABLE").upper() if kind in ("Create", "Alter", "Drop") else "TABLE"
    if object_kind not in ("TABLE", "VIEW", "MATERIALIZED VIEW"):
        raise MigrationError(
            f"{where}: {kind.upper()} {object_kind} is not a migration statement: datasets come from the config "
            "and routines are not managed by migrations; allowed are tables and views"
        )
    tokens = BigQuery().tokenize(sql)
    cte_names = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    references: list[Reference] = []
    for table in statement.find_all(exp.Table):
        catalog, db, name = table.catalog or "", table.db or "", table.name or ""
        if not db and "." in name:
            db, _, name = name.partition(".")
        if not db:
            if name in cte_names or type(table.parent).__name__ == "AlterRename":
                continue
            raise MigrationError(f"{where}: table {name!r} has no dataset; write it as <dataset>.{name}")
        if catalog and project is not None and catalog != project:
            raise MigrationError(
                f"{where}: {catalog}.{db}.{name} is in project {catalog!r}; migrations name prod's datasets, "
                f"unqualified or in prod's project {project!r}"
            )
        if db not in config_datasets:
            raise MigrationError(
                f"{where}: {db}.{name} is outside the configured prod datasets ({', '.join(config_datasets)}); "
                "a migration may only name tables of those datasets"
            )
        located = _reference_edits(sql, table, tokens)
        if located is None:
            raise MigrationError(f"{where}: cannot locate the dataset of {db}.{name} in the statement's text")
        references.append(Reference(catalog, db, name, *located))
    destructive, removes = _destructive(statement, references)
    return Statement(
        line=line,
        sql=sql,
        kind=kind,
        destructive=destructive,
        changes_schema=kind in ("Create", "Alter", "Drop"),
        references=tuple(references),
        removes=removes,
        adds=_additions(statement, references),
    )


def load_migration(path: Path, config_datasets: Sequence[str], project: str | None = None) -> Migration:
    match = FILE_RE.match(path.name)
    if match is None:
        raise MigrationError(
            f"{display_path(path)}: a migration file is named <version>_<name>.sql: digits, '_', then lowercase "
            "letters, digits and '_' (for example 0001_add_customer_email.sql)"
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise MigrationError(f"{display_path(path)}: not UTF-8 text") from None
    phase = _phase(path, text)
    statements = [
        parse_statement(path, text, line, text[start:end], config_datasets, project)
        for line, start, end in split_statements(text)
    ]
    if not statements:
        raise MigrationError(f"{display_path(path)}: the migration has no statement")
    if phase == "expand":
        for s in statements:
            if s.destructive:
                raise MigrationError(
                    f"{display_path(path)}:{s.line}: an expand migration may only add; this statement {s.destructive}: "
                    "declare the migration '-- envsync: phase=contract'"
                )
    return Migration(
        int(match.group("version")), match.group("name"), phase, path, checksum_of(data), tuple(statements)
    )


def load_migrations(config: EnvsyncConfig, directory: Path | None = None) -> MigrationFiles:
    """Every `<version>_<name>.sql` of the migrations directory, ordered by version (none: empty)."""
    directory = directory or migrations_dir(config)
    if not directory.is_dir():
        return MigrationFiles()
    found = [
        load_migration(p, list(config.prod.datasets), config.prod_project)
        for p in sorted(directory.iterdir())
        if p.suffix == ".sql"
    ]
    by_version: dict[int, Migration] = {}
    for migration in found:
        if migration.version in by_version:
            raise MigrationError(
                f"{display_path(migration.path)}: version {migration.version} is also "
                f"{display_path(by_version[migration.version].path)}; versions must be unique"
            )
        by_version[migration.version] = migration
    others = sorted(
        p.name for p in directory.iterdir() if p.is_file() and p.suffix != ".sql" and not p.name.startswith(".")
    )
    if others:
        log.warning("%s: ignoring files that are not migrations: %s", directory, ", ".join(others))
    return MigrationFiles(found)


# ----------------------------------------------------------------------------------- ledger


@dataclass(frozen=True)
class LedgerRow:
    applied_at: dt.datetime
    environment: str
    version: int
    name: str
    phase: str
    checksum: str
    status: str
    dag_id: str | None = None
    run_id: str | None = None
    error: str | None = None


def ledger_table(config: EnvsyncConfig) -> TableRef:
    """The ledger: the `migrations` table of the audit dataset, in the audit dataset's project."""
    return TableRef(config.audit_project, config.audit.dataset, LEDGER)


def read_ledger(config: EnvsyncConfig, client: bigquery.Client) -> list[LedgerRow]:
    """Every ledger row, oldest first; [] when the ledger does not exist yet (a read only)."""
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery as bq

    from envsync.core.sqltemplates import render

    table = ledger_table(config)
    try:
        client.get_table(table.api)
    except NotFound:
        return []
    job = client.query(
        render("audit/read_migrations", table=table.sql),
        job_config=bq.QueryJobConfig(),
        location=config.location,
        job_retry=None,
    )
    return [
        LedgerRow(
            applied_at=r["applied_at"],
            environment=r["environment"],
            version=int(r["version"]),
            name=r["name"],
            phase=r["phase"],
            checksum=r["checksum"],
            status=r["status"],
            dag_id=r["dag_id"],
            run_id=r["run_id"],
            error=r["error"],
        )
        for r in job.result()
    ]


def record(config: EnvsyncConfig, runner: JobRunner, rows: Sequence[LedgerRow]) -> None:
    """Append ledger rows (created like the other audit tables; values bound as query parameters)."""
    from envsync.observe.audit import ensure_audit_table, insert_rows

    if not rows:
        return
    table = ensure_audit_table(config, runner, LEDGER)
    insert_rows(
        runner,
        table,
        LEDGER_COLUMNS,
        [
            {
                "applied_at": r.applied_at,
                "environment": r.environment,
                "version": r.version,
                "name": r.name,
                "phase": r.phase,
                "checksum": r.checksum,
                "dag_id": r.dag_id,
                "run_id": r.run_id,
                "status": r.status,
                "error": r.error,
            }
            for r in rows
        ],
        key=(
            "audit",
            LEDGER,
            "insert",
            *sorted({r.environment for r in rows}),
            "_".join(str(r.version) for r in rows)[:200],
        ),
    )


def newest_rows(ledger: Iterable[LedgerRow], env: str, as_of: dt.datetime | None = None) -> dict[int, LedgerRow]:
    """Each version's newest ledger row in `env` (with `as_of`: among the rows recorded up to then)."""
    newest: dict[int, LedgerRow] = {}
    for row in ledger:
        if row.environment == env and (as_of is None or row.applied_at <= as_of):
            newest[row.version] = row  # oldest first: later rows win
    return newest


def applied(ledger: Iterable[LedgerRow], env: str, as_of: dt.datetime | None = None) -> dict[int, LedgerRow]:
    """The versions `env` holds: those whose newest ledger row is `applied` or `synced` (with `as_of`:
    what it held then, from the rows recorded up to that instant)."""
    return {v: r for v, r in sorted(newest_rows(ledger, env, as_of).items()) if r.status in HELD}


def check_applied(files: MigrationFiles, ledger: Iterable[LedgerRow], env: str) -> None:
    """Refuse when a migration `env` holds was edited since (checksum mismatch) or its file is gone.
    `files`: every migration file (what env holds is compared with all of them)."""
    by_version = every_file(files, "check_applied").by_version()
    for version, row in applied(ledger, env).items():
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"version {version} ({row.name}) is applied to {env} but there is no migration file for it; "
                "an applied migration must stay in the repository unchanged"
            )
        if migration.checksum != row.checksum:
            raise MigrationError(
                f"{display_path(migration.path)} was edited after it was applied to {env} (checksum "
                f"{migration.checksum[:12]}… now, {row.checksum[:12]}… when applied on {row.applied_at:%Y-%m-%d}); "
                "an applied migration must not change: write a new migration instead"
            )


def pending(files: MigrationFiles, ledger: Sequence[LedgerRow], env: str) -> list[Migration]:
    """The migrations promoted to `env` that prod does not have: env's schema is prod's plus these, so
    a rebuild of env from prod applies them again (in version order)."""
    every_file(files, "pending")
    if env == "prod":
        return []
    check_applied(files, ledger, env)
    check_applied(files, ledger, "prod")
    in_prod = applied(ledger, "prod")
    versions = [v for v in applied(ledger, env) if v not in in_prod]
    by_version = files.by_version()
    return [by_version[v] for v in sorted(versions)]


def unapplied(files: MigrationFiles, ledger: Sequence[LedgerRow], env: str) -> list[Migration]:
    """The migrations `env` does not hold yet, in version order (what a promotion to env would run)."""
    check_applied(files, ledger, env)
    held = applied(ledger, env)
    return [m for m in files if m.version not in held]


def ahead_of(files: MigrationFiles, ledger: Sequence[LedgerRow], env: str) -> set[str]:
    """What migrations `env` does not hold add (`ds.t`, `ds.t.column`): a seed written for the newer
    schema may already yield those columns while env is behind."""
    held = applied(ledger, env)
    return {item for m in every_file(files, "ahead_of") if m.version not in held for item in m.additions()}


def check_order(migrations: Sequence[Migration], ledger: Sequence[LedgerRow], env: str) -> None:
    """Refuse applying a version older than the newest one `env` already holds (out of order)."""
    held = applied(ledger, env)
    if not held:
        return
    newest = max(held)
    late = [m for m in migrations if m.version < newest and m.version not in held]
    if late:
        raise MigrationError(
            f"{display_path(late[0].path)}: version {late[0].version} would be applied to {env} after version "
            f"{newest} ({held[newest].name}); migrations are applied in version order: give it a version above {newest}"
        )


# ---------------------------------------------------------------------------- validation


@dataclass
class Rehearsal:
    """What validation found: every statement accepted; the schemas at the end, keyed `dataset.table`
    with prod's dataset names (API representation of the fields), and the views' names."""

    env: str
    migrations: list[int]
    statements: int = 0
    schemas: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)


def scratch_dataset(config: EnvsyncConfig, env: str, dataset: str, test_name: str | None = None, tag: str = "") -> str:
    """The scratch dataset where migrations for `env` are rehearsed:
    `<drill prefix>migcheck_<env>_<tag>_<ds>` (`tag`: the run's, so two runs never share one), in the
    drill environment's project (`config.project_of("drill")`)."""
    env_part = f"test_{test_name}" if env == "test" else env
    return validate_identifier(
        "dataset", f"{config.environments.drill.prefix}{SCRATCH_MARK}{env_part}_{tag + '_' if tag else ''}{dataset}"
    )


def _bigquery_message(error: BaseException) -> str:
    errors = getattr(error, "errors", None) or []
    for item in errors:
        if isinstance(item, dict) and item.get("message"):
            return str(item["message"])
    return str(getattr(error, "message", None) or error)


_POSITION = re.compile(r"\[(\d+):(\d+)\]")


def _file_line(statement_line: int, message: str) -> int:
    """The file line of a BigQuery message's `[line:column]` (relative to the statement)."""
    match = _POSITION.search(message)
    return statement_line + int(match.group(1)) - 1 if match else statement_line


def validate(
    config: EnvsyncConfig,
    runner: JobRunner,
    env: str,
    migrations: Sequence[Migration],
    *,
    test_name: str | None = None,
    base: str | None = None,
) -> Rehearsal:
    """Check every statement of `migrations` (in order) against `env`'s schema as it will be when the
    statement runs; raise MigrationValidationError (`file:line: message`) at the first refusal.

    The rehearsal starts from `env`'s current tables and views, or from those of `base` ("prod":
    what env will be once a reseed or sync has rebuilt it from prod), in that environment's project.
    Writes only to scratch datasets (in the drill project, dropped at the end), never to `env`."""
    from envsync.bigquery.datasets import env_labels, recreate_env_dataset
    from envsync.bigquery.discovery import TableInfo
    from envsync.bigquery.jobs import short_hash
    from envsync.core.guard import ProdWriteRefused

    rehearsal = Rehearsal(env, [m.version for m in migrations])
    if not migrations:
        return rehearsal
    client = runner.bq.client
    base_map = dataset_map(config, base or env, test_name if base in (None, env) else None)
    base_project = config.project_of(base or env)
    scratch_project = config.project_of("drill")
    qualify = statement_project(config, "drill")
    tag = short_hash(runner.dag_id, runner.run_id)[:8]
    scratch = {ds: scratch_dataset(config, env, ds, test_name, tag) for ds in config.prod.datasets}
    log.info(
        "validating %d migration(s) for %s, starting from %s's schema: rehearsal in %s",
        len(migrations),
        env,
        base or env,
        ", ".join(scratch.values()),
    )
    try:
        for ds, name in scratch.items():
            recreate_env_dataset(
                runner.bq,
                f"{scratch_project}.{name}",
                location=config.location,
                description=f"envsync: rehearsal of schema migrations for {env} (dropped after use)",
                labels=env_labels({}, "drill", ds, **{"envsync-purpose": "migration-check"}),
                table_expiration_ms=SCRATCH_EXPIRATION_MS,
            )
        _copy_objects(runner, migrations, (base_project, base_map), (scratch_project, scratch), env)
        for migration in migrations:
            for number, statement in enumerate(migration.statements):
                sql = statement.rewritten(scratch, qualify)
                key = ("migcheck", env, str(migration.version), str(number))
                try:
                    runner.bq.start_query(
                        sql, job_id=runner.job_id_base(*key, "dry"), labels=runner.labels, dry_run=True
                    )
                    if statement.changes_schema:
                        runner.run(sql, key=key)
                except Exception as error:
                    if isinstance(error, ProdWriteRefused) or not _refused_by_bigquery(error):
                        raise
                    message = _bigquery_message(error)
                    raise MigrationValidationError(
                        f"{migration.where(_file_line(statement.line, message))}: {message} (validated for {env}; "
                        "nothing was written)"
                    ) from None
                rehearsal.statements += 1
        for ds, name in scratch.items():
            for item in client.list_tables(f"{scratch_project}.{name}"):
                info = TableInfo.from_api(client.get_table(item.reference))
                if info.kind == "VIEW":
                    rehearsal.views.append(f"{ds}.{info.table}")
                rehearsal.schemas[f"{ds}.{info.table}"] = info.schema
    finally:
        for name in scratch.values():
            try:
                runner.bq.delete_dataset(f"{scratch_project}.{name}")
            except Exception as error:  # the tables expire anyway; keep the original outcome
                log.warning("could not drop the rehearsal dataset %s: %s", name, error)
    log.info("validated %d statement(s) of %d migration(s) for %s", rehearsal.statements, len(migrations), env)
    return rehearsal


def _refused_by_bigquery(error: BaseException) -> bool:
    from google.api_core.exceptions import BadRequest, NotFound

    return isinstance(error, (BadRequest, NotFound))


def _copy_objects(
    runner: JobRunner,
    migrations: Sequence[Migration],
    source: tuple[str, Mapping[str, str]],
    target: tuple[str, Mapping[str, str]],
    env: str,
) -> None:
    """Re-create in the scratch datasets, empty, every table the migrations name (`CREATE TABLE LIKE`)
    and every view they name, with the tables and views those views read, views in dependency order.
    `source` and `target` are (project, prod dataset -> dataset): the environment rehearsed from and
    the scratch datasets; the views' references move to the scratch datasets' project."""
    from google.api_core.exceptions import NotFound

    from envsync.bigquery.views import rewrite_view_sql, view_dependencies
    from envsync.core.sqltemplates import render

    client = runner.bq.client
    env_project, env_map = source
    scratch_project, scratch = target
    back = {env_ds: ds for ds, env_ds in env_map.items()}
    seen: set[str] = set()
    tables: list[str] = []
    views: dict[str, str] = {}

    def visit(key: str) -> None:
        if key in seen:
            return
        seen.add(key)
        ds, _, name = key.partition(".")
        if ds not in scratch:
            return  # a view reading outside the configured datasets: its dry run decides
        try:
            table = client.get_table(f"{env_project}.{env_map[ds]}.{name}")
        except NotFound:
            return  # created by a migration, or missing: the dry run says so
        kind = (table.table_type or "TABLE").upper()
        if kind == "VIEW":
            for dep in sorted(view_dependencies(table.view_query or "")):
                dep_ds, _, dep_name = dep.partition(".")
                visit(f"{back.get(dep_ds, dep_ds)}.{dep_name}")
            views[key] = table.view_query or ""  # after its dependencies
        elif kind in ("TABLE", "CLONE", "SNAPSHOT"):
            tables.append(key)

    for key in (k for m in migrations for k in m.tables()):
        visit(key)
    for key in tables:
        ds, _, name = key.partition(".")
        runner.run(
            render(
                "rehearsal/create_table_like",
                target=TableRef(scratch_project, scratch[ds], name).sql,
                source=TableRef(env_project, env_map[ds], name).sql,
            ),
            key=("migcheck", env, "like", ds, name),
        )
    env_to_scratch = {env_map[ds]: scratch[ds] for ds in scratch}
    for key, query in views.items():
        ds, _, name = key.partition(".")
        runner.run(
            render(
                "sync/create_view",
                target=TableRef(scratch_project, scratch[ds], name).sql,
                query=rewrite_view_sql(query, env_to_scratch, env_project, target_project=scratch_project).sql,
            ),
            key=("migcheck", env, "view", ds, name),
        )


# ------------------------------------------------------------------------------- applying


def _ledger_row(
    migration: Migration,
    env: str,
    status: str,
    *,
    dag_id: str,
    run_id: str,
    error: str | None = None,
    now: dt.datetime | None = None,
) -> LedgerRow:
    return LedgerRow(
        applied_at=now or dt.datetime.now(dt.UTC),
        environment=env,
        version=migration.version,
        name=migration.name,
        phase=migration.phase,
        checksum=migration.checksum,
        status=status,
        dag_id=dag_id,
        run_id=run_id,
        error=error,
    )


def _runner_for(
    config: EnvsyncConfig, runner: JobRunner, env: str, migrations: Sequence[Migration], confirm: object
) -> JobRunner:
    """The runner itself, or for prod a runner whose guard lets these confirmed migrations write the
    tables of the prod datasets they name (WriteGuard.for_prod_migrations)."""
    if env != "prod":
        return runner
    from envsync.bigquery.jobs import JobRunner as Runner
    from envsync.core.guard import GuardedBigQuery

    datasets = sorted({ds for m in migrations for ds in m.datasets()})
    guard = runner.bq.guard.for_prod_migrations([m.version for m in migrations], datasets, confirm)
    bq = GuardedBigQuery(runner.bq.client, guard, runner.bq.location)
    return Runner(
        bq,
        dag_id=runner.dag_id,
        run_id=runner.run_id,
        task_id=runner.task_id,
        timeout=runner.timeout,
        retry=runner.retry,
        sleep=runner.sleep,
        rng=runner.rng,
    )


def apply(
    config: EnvsyncConfig,
    runner: JobRunner,
    env: str,
    migrations: Sequence[Migration],
    *,
    files: MigrationFiles,
    ledger: Sequence[LedgerRow],
    rebuild: bool = False,
    confirm: object = None,
    test_name: str | None = None,
    validated: bool = False,
) -> list[dict[str, Any]]:
    """Apply `migrations` (in version order) to `env`, each statement one job through the write guard,
    recording each migration in the ledger; returns one report row per migration. `files`: every
    migration file, which what env already holds (its whole ledger history) is checked against;
    `migrations` must be among them, unchanged.

    A promotion (`rebuild=False`) refuses a version `env` already holds, an edited applied migration
    and versions out of order. A rebuild (`rebuild=True`: env was just re-created from prod) applies
    env's pending migrations again; those this run already recorded (a retried task) are skipped.
    Prod needs `confirm` = `migration_confirmation_phrase(versions)` (the guard refuses otherwise).
    Every statement is validated first against env's current schema (`validate`; `validated=True`
    when the caller just validated this list for env): a refusal raises MigrationValidationError
    before anything is written.
    """
    from envsync.observe.report import result_row

    migrations = sorted(migrations, key=lambda m: m.version)
    check_applied(files, ledger, env)
    known = files.by_version()
    strays = [m for m in migrations if known.get(m.version) != m]
    if strays:
        raise MigrationError(
            f"{display_path(strays[0].path)}: version {strays[0].version} is not among the migration "
            f"files {files.versions()} as they are now (added, removed or edited since they were read)"
        )
    held = applied(ledger, env)
    if rebuild:
        done = {r.version for r in ledger if r.environment == env and r.run_id == runner.run_id and r.status == APPLIED}
        skipped = [m for m in migrations if m.version in done]
        if skipped:
            log.info("%s: migrations %s were applied by an earlier try of this run", env, [m.version for m in skipped])
        migrations = [m for m in migrations if m.version not in done]
    else:
        again = [m for m in migrations if m.version in held]
        if again:
            raise MigrationError(
                f"{display_path(again[0].path)}: version {again[0].version} is already applied to {env}"
            )
        check_order(migrations, ledger, env)
    if not migrations:
        return []
    writer = _runner_for(config, runner, env, migrations, confirm)  # refuses prod without the phrase
    if not validated:
        validate(config, runner, env, migrations, test_name=test_name)
    mapping = dataset_map(config, env, test_name)
    project = statement_project(config, env)
    results: list[dict[str, Any]] = []
    for migration in migrations:
        row = result_row(
            f"migration {migration.version}",
            f"{env}: {migration.label}",
            "migrate",
            f"{migration.phase}: {len(migration.statements)} statement(s)"
            + (" (again, after a rebuild from prod)" if rebuild else ""),
            env=env,
        )
        clock = dt.datetime.now(dt.UTC)
        for number, statement in enumerate(migration.statements):
            try:
                job = writer.run(
                    statement.rewritten(mapping, project),
                    key=("migrate", env if env != "test" else f"test_{test_name}", str(migration.version), str(number)),
                )
            except Exception as error:
                message = _bigquery_message(error)
                where = migration.where(_file_line(statement.line, message))
                failure = f"{where}: {message}"
                record(
                    config,
                    runner,
                    [
                        _ledger_row(
                            migration, env, FAILED, dag_id=runner.dag_id, run_id=runner.run_id, error=failure[:2000]
                        )
                    ],
                )
                log.error("migration %s failed on %s: %s", migration.label, env, failure)
                raise MigrationError(
                    f"migration {migration.label} failed on {env} at {failure}; "
                    f"statements before line {statement.line} were applied"
                ) from error
            row["jobs"] += 1
            billed = getattr(job, "total_bytes_billed", None)
            row["bytes_billed"] += billed if isinstance(billed, int) else 0
        record(config, runner, [_ledger_row(migration, env, APPLIED, dag_id=runner.dag_id, run_id=runner.run_id)])
        row.update(status="ok", seconds=round((dt.datetime.now(dt.UTC) - clock).total_seconds(), 3))
        log.info("applied migration %s to %s (%d statements)", migration.label, env, len(migration.statements))
        results.append(row)
    return results


def synced_rows(
    files: MigrationFiles,
    ledger: Sequence[LedgerRow],
    env: str,
    *,
    dag_id: str,
    run_id: str,
    now: dt.datetime | None = None,
) -> list[LedgerRow]:
    """The rows that record, after `env` was rebuilt from prod, every version prod holds as `synced`
    for env: env now has it through prod's schema, whatever its ledger said before (held as `applied`
    through a promotion, `failed`, `reverted` or absent). Versions whose newest env row is already
    `synced` get none (a retried task records nothing twice)."""
    by_version = every_file(files, "synced_rows").by_version()
    newest = newest_rows(ledger, env)
    wanted = [by_version[v] for v in applied(ledger, "prod") if v in by_version]
    return [
        _ledger_row(m, env, SYNCED, dag_id=dag_id, run_id=run_id, now=now)
        for m in wanted
        if m.version not in newest or newest[m.version].status != SYNCED
    ]


def record_synced(
    config: EnvsyncConfig, runner: JobRunner, env: str, files: MigrationFiles, ledger: Sequence[LedgerRow]
) -> list[int]:
    """After `env` was rebuilt from prod, record every version prod holds as `synced` for env
    (`synced_rows`); returns the versions recorded now."""
    rows = synced_rows(files, ledger, env, dag_id=runner.dag_id, run_id=runner.run_id)
    record(config, runner, rows)
    return [r.version for r in rows]


@dataclass
class Reapplied:
    """What `reapply` did to one rebuilt environment: the report rows of the migrations applied
    again, the versions recorded `synced`, and, when it stopped, the pending versions env does not
    hold now (`missing`, recorded `failed` or `reverted`) with the reason."""

    env: str
    results: list[dict[str, Any]] = field(default_factory=list)
    synced: list[int] = field(default_factory=list)
    applied: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def message(self) -> str:
        """One line naming exactly what env lacks and why (empty when nothing is missing)."""
        if self.ok:
            return ""
        held = f"prod's schema plus migrations {self.applied}" if self.applied else "prod's schema"
        return (
            f"{self.env} was rebuilt from prod but its pending migrations {self.missing} could not be applied "
            f"again: {self.error}; {self.env} now holds {held}, and the ledger records "
            f"{self.missing} as no longer held there; promote them to {self.env} again once fixed"
        )


def reapply(
    config: EnvsyncConfig,
    runner: JobRunner,
    env: str,
    files: MigrationFiles,
    ledger: Sequence[LedgerRow],
    versions: Sequence[int],
    *,
    validated: bool = False,
) -> Reapplied:
    """After `env` was rebuilt from prod (a dev sync or a reseed): record prod's versions as `synced`
    for env, then apply env's pending `versions` again. Never raises for a migration that fails or a
    pending file that is gone: the versions env does not hold after that are recorded (the failing
    one `failed` by `apply`, those after it and those without a file `reverted`), so the ledger never
    claims what the rebuilt tables lack. `Reapplied.results` then holds an `ok` row per migration
    applied again and a `failed` row per missing one (the first naming everything env lacks), so the
    caller's results and report say it and its task fails."""
    from envsync.observe.report import result_row

    every_file(files, "reapply")
    done = Reapplied(env)
    done.synced = record_synced(config, runner, env, files, ledger)
    by_version = files.by_version()
    chosen = [by_version[v] for v in sorted(versions) if v in by_version]
    gone = sorted(set(versions) - set(by_version))
    try:
        if gone:
            raise MigrationError(f"migrations {gone} pending for {env} have no file any more (sql/migrations)")
        done.results = apply(config, runner, env, chosen, files=files, ledger=ledger, rebuild=True, validated=validated)
        done.applied = [m.version for m in chosen]
        return done
    except MigrationError as error:
        done.error = str(error)
    now_ledger = read_ledger(config, runner.bq.client)
    mine = {r.version for r in now_ledger if r.environment == env and r.run_id == runner.run_id and r.status == APPLIED}
    done.applied = [v for v in sorted(versions) if v in mine]
    done.missing = [v for v in sorted(versions) if v not in mine]
    newest = newest_rows(now_ledger, env)
    note = f"{env} was rebuilt from prod by run {runner.run_id} and this migration was not applied again: {done.error}"
    record(
        config,
        runner,
        [
            LedgerRow(
                applied_at=dt.datetime.now(dt.UTC),
                environment=env,
                version=v,
                name=newest[v].name,
                phase=newest[v].phase,
                checksum=newest[v].checksum,
                status=REVERTED,
                dag_id=runner.dag_id,
                run_id=runner.run_id,
                error=note[:2000],
            )
            for v in done.missing
            if v in newest and newest[v].status in HELD
        ],
    )
    labels = {
        v: (by_version[v].label if v in by_version else newest[v].name if v in newest else str(v)) for v in versions
    }
    done.results = [
        {
            **result_row(
                f"migration {v}", f"{env}: {labels[v]}", "migrate", "applied again after the rebuild from prod", env=env
            ),
            "status": "ok",
        }
        for v in done.applied
    ]
    done.results += [
        {
            **result_row(
                f"migration {v}",
                f"{env}: {labels[v]}",
                "migrate",
                "pending: to apply again after the rebuild from prod",
                env=env,
            ),
            "status": "failed",
            "error": done.message()
            if i == 0
            else f"not applied again: {env} lacks it (see migration {done.missing[0]})",
        }
        for i, v in enumerate(done.missing)
    ]
    log.error("%s", done.message())
    return done


def carry_over(
    ledger: Sequence[LedgerRow],
    source: str,
    target: str,
    *,
    as_of: dt.datetime | None,
    dag_id: str,
    run_id: str,
    now: dt.datetime | None = None,
) -> list[LedgerRow]:
    """The ledger rows that make `target` hold exactly the versions `source` held as of `as_of`, once
    `target`'s tables were replaced by copies of `source`'s as of that instant (the QA -> staging cut):
    `target`'s schema is then `source`'s. Versions `source` held and `target` does not: `synced` (name,
    phase and checksum of `source`'s row); versions `target` holds and `source` did not: `reverted`.
    Prod is not consulted: what prod holds reaches `source` only through a rebuild of it from prod
    (recorded there as `synced`), so a version prod holds and `source` does not is not in `source`'s
    tables, nor in `target`'s after the copy. Empty when `target` already holds what `source` held (a
    retried cut records nothing twice). Version order."""
    now = now or dt.datetime.now(dt.UTC)
    wanted = applied(ledger, source, as_of)
    held = applied(ledger, target)

    def row(version: int, like: LedgerRow, status: str, note: str | None) -> LedgerRow:
        return LedgerRow(
            applied_at=now,
            environment=target,
            version=version,
            name=like.name,
            phase=like.phase,
            checksum=like.checksum,
            status=status,
            dag_id=dag_id,
            run_id=run_id,
            error=note,
        )

    rows = [row(v, wanted[v], SYNCED, None) for v in wanted if v not in held]
    rows += [
        row(v, held[v], REVERTED, f"{target}'s tables were replaced by {source}'s, which did not hold version {v}")
        for v in held
        if v not in wanted
    ]
    return sorted(rows, key=lambda r: r.version)


def record_carried(
    config: EnvsyncConfig,
    runner: JobRunner,
    source: str,
    target: str,
    ledger: Sequence[LedgerRow],
    *,
    as_of: dt.datetime | None,
) -> tuple[list[int], list[int]]:
    """Record `carry_over`'s rows (one batched insert); returns (synced versions, reverted versions)."""
    rows = carry_over(ledger, source, target, as_of=as_of, dag_id=runner.dag_id, run_id=runner.run_id)
    record(config, runner, rows)
    return ([r.version for r in rows if r.status == SYNCED], [r.version for r in rows if r.status == REVERTED])
