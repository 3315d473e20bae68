"""The prod write guard: the one place that decides what envsync may write.

Every write envsync makes (DDL/DML jobs, dataset and table API calls) goes through `GuardedBigQuery`,
which asks `WriteGuard` first. The guard refuses, before any API call:
  * any write to a prod dataset (one listed in `prod.datasets` of prod's project, `prod.project`), except
    the tables of one prod dataset during a restore confirmed with the exact phrase
    `confirmation_phrase(dataset, T)` (`WriteGuard.for_prod_restore`), and the tables of the prod
    datasets that schema migrations change, confirmed with the exact phrase
    `migration_confirmation_phrase(versions)` (`WriteGuard.for_prod_migrations`, optionally narrowed
    to the tables a schema promotion touches); a prod dataset itself is never created, updated or
    deleted;
  * any write to a dataset that no environment owns in its project: a dataset of an environment's
    project starting with that environment's prefix (exactly prod's dataset names for an environment
    with an empty prefix in a project of its own), or envsync's audit dataset in its project;
  * any write to a project the config does not name for an environment;
  * any statement whose write targets it cannot determine (fail closed).
Read-only statements (SELECT/WITH) pass. Identifiers are validated and backtick-quoted with the rules of
envsync.core.identifiers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envsync.core.identifiers import quote, validate_identifier

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.config import EnvsyncConfig


class ProdWriteRefused(PermissionError):
    """A write aimed at prod, or at a dataset that is not a derived environment, was refused."""


@dataclass(frozen=True, order=True)
class TableRef:
    project: str
    dataset: str
    table: str

    def __post_init__(self) -> None:
        validate_identifier("project", self.project)
        validate_identifier("dataset", self.dataset)
        validate_identifier("table", self.table)

    @property
    def sql(self) -> str:
        return quote(self.project, self.dataset, self.table)

    @property
    def api(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def __str__(self) -> str:
        return f"{self.dataset}.{self.table}"


@dataclass(frozen=True)
class WriteTarget:
    """What a statement or API call writes: a dataset, or one table in it."""

    project: str
    dataset: str
    table: str | None = None
    # a DML statement (INSERT, UPDATE, DELETE, MERGE, TRUNCATE): paced under BigQuery's DML rate per
    # table, not its metadata update rate (envsync.core.limits); not part of the target's identity
    dml: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}" + (f".{self.table}" if self.table else "")


def confirmation_phrase(dataset: str, point_in_time: Any) -> str:
    """The exact text a user types to let a restore overwrite the tables of prod dataset `dataset`."""
    import datetime as dt

    if not isinstance(point_in_time, dt.datetime) or point_in_time.tzinfo is None:
        raise ValueError(f"point_in_time must be a time-zone-aware datetime, got {point_in_time!r}")
    stamp = point_in_time.astimezone(dt.UTC).isoformat()
    return f"restore prod dataset {validate_identifier('dataset', dataset)} to {stamp}"


def migration_confirmation_phrase(versions: Sequence[int]) -> str:
    """The exact text a user types to let schema migrations `versions` change prod's tables."""
    if not versions or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in versions):
        raise ValueError(f"versions must be a non-empty list of migration version numbers, got {versions!r}")
    return "apply schema migrations " + ", ".join(str(v) for v in sorted(versions)) + " to prod"


Space = tuple[str, str, "frozenset[str] | None"]  # (project, prefix, exact datasets when the prefix is '')


class WriteGuard:
    """Decides whether envsync may write to a dataset. Prod is read-only; only derived envs are writable.

    `project` is prod's project. `allowed_prefixes` are environment prefixes in prod's project (the
    one-project layout); `spaces` add (project, prefix, exact datasets or None) of environments in any
    project; `allowed_datasets` are single datasets (`name` in prod's project, or (project, name)).
    """

    def __init__(
        self,
        project: str,
        prod_datasets: Iterable[str],
        allowed_prefixes: Iterable[str],
        allowed_datasets: Iterable[str | tuple[str, str]] = (),
        restorable_prod_dataset: str | None = None,
        migrated_prod_datasets: Iterable[str] = (),
        migrated_prod_tables: Iterable[str] | None = None,
        spaces: Iterable[Space] = (),
    ):
        self.project = validate_identifier("project", project)
        self.prod_datasets = frozenset(prod_datasets)
        self.allowed_prefixes = tuple(sorted(set(allowed_prefixes)))
        found: set[Space] = {(project, prefix, None) for prefix in self.allowed_prefixes}
        found |= {(proj, prefix, None if exact is None else frozenset(exact)) for proj, prefix, exact in spaces}
        self.spaces: frozenset[Space] = frozenset(found)
        for proj, _, _ in self.spaces:
            validate_identifier("project", proj)
        self.allowed_datasets = frozenset(
            (project, item) if isinstance(item, str) else (item[0], item[1]) for item in allowed_datasets
        ) - {(project, ds) for ds in self.prod_datasets}
        self.restorable_prod_dataset = restorable_prod_dataset
        # prod datasets whose tables confirmed schema migrations may change (see for_prod_migrations)
        self.migrated_prod_datasets = frozenset(migrated_prod_datasets) & self.prod_datasets
        # when set: only these `dataset.table` of those datasets (a schema promotion's touched tables)
        self.migrated_prod_tables = None if migrated_prod_tables is None else frozenset(migrated_prod_tables)
        if not self.spaces and not self.allowed_datasets:
            raise ValueError("the write guard needs at least one allowed environment prefix")

    @classmethod
    def from_config(cls, config: EnvsyncConfig) -> WriteGuard:
        return cls(
            config.prod_project,
            config.prod.datasets,
            (),
            allowed_datasets=[(config.audit_project, config.audit.dataset)],
            spaces=config.write_spaces(),
        )

    @property
    def projects(self) -> frozenset[str]:
        """The projects this guard lets envsync write (prod's for confirmed restores and migrations)."""
        return frozenset({self.project} | {p for p, _, _ in self.spaces} | {p for p, _ in self.allowed_datasets})

    def _copy(self, **changes: Any) -> WriteGuard:
        settings: dict[str, Any] = {
            "allowed_datasets": self.allowed_datasets,
            "restorable_prod_dataset": self.restorable_prod_dataset,
            "migrated_prod_datasets": self.migrated_prod_datasets,
            "migrated_prod_tables": self.migrated_prod_tables,
            "spaces": self.spaces,
        }
        settings.update(changes)
        return WriteGuard(self.project, self.prod_datasets, (), **settings)

    def audit_only(self, audit_dataset: str | tuple[str, str]) -> WriteGuard:
        """A guard that lets nothing be written but the audit dataset: for checks that only read
        environments and record what they found (parity)."""
        return WriteGuard(self.project, self.prod_datasets, (), allowed_datasets=[audit_dataset])

    def for_prod_restore(self, dataset: str, point_in_time: Any, confirm: object) -> WriteGuard:
        """A guard that also lets a restore write the tables of prod dataset `dataset`.

        Only when `confirm` is exactly `confirmation_phrase(dataset, point_in_time)`; otherwise
        ProdWriteRefused, naming the phrase. The dataset itself stays protected (no create/update/delete).
        """
        if dataset not in self.prod_datasets:
            raise ProdWriteRefused(f"{dataset!r} is not a prod dataset; it needs no restore confirmation")
        expected = confirmation_phrase(dataset, point_in_time)
        if confirm != expected:
            shown = "no confirmation was given" if confirm in (None, "") else f"confirmation {confirm!r} does not match"
            raise ProdWriteRefused(
                f"refused to restore prod dataset {dataset!r}: {shown}; to overwrite its "
                f"tables with the state at {point_in_time.isoformat()}, set the confirm param to exactly: "
                f"{expected}"
            )
        return self._copy(restorable_prod_dataset=dataset, migrated_prod_datasets=(), migrated_prod_tables=None)

    def for_prod_migrations(
        self, versions: Sequence[int], datasets: Iterable[str], confirm: object, tables: Iterable[str] | None = None
    ) -> WriteGuard:
        """A guard that also lets schema migrations `versions` write the tables of prod `datasets`
        (only the `dataset.table` names in `tables`, when given: what a schema promotion touches).

        Only when `confirm` is exactly `migration_confirmation_phrase(versions)`; otherwise
        ProdWriteRefused, naming the phrase. The datasets themselves stay protected.
        """
        tables = None if tables is None else sorted(set(tables))
        datasets = sorted(set(datasets) | {t.partition(".")[0] for t in tables or ()})
        foreign = [d for d in datasets if d not in self.prod_datasets]
        if foreign:
            raise ProdWriteRefused(f"{foreign} are not prod datasets; they need no migration confirmation")
        expected = migration_confirmation_phrase(versions)
        if confirm != expected:
            shown = "no confirmation was given" if confirm in (None, "") else f"confirmation {confirm!r} does not match"
            raise ProdWriteRefused(
                f"refused to apply schema migrations {sorted(versions)} to prod: {shown}; to change the tables "
                f"of {', '.join(datasets)}, set the confirm param to exactly: {expected}"
            )
        return self._copy(migrated_prod_datasets=datasets, migrated_prod_tables=tables)

    def _owned(self, target: WriteTarget) -> bool:
        if (target.project, target.dataset) in self.allowed_datasets:
            return True
        for project, prefix, exact in self.spaces:
            if project != target.project:
                continue
            if exact is not None and target.dataset in exact:
                return True
            if prefix and target.dataset.startswith(prefix):
                return True
        return False

    def check(self, target: WriteTarget, action: str) -> None:
        where = str(target)
        if target.project == self.project and target.dataset in self.prod_datasets:
            if target.dataset == self.restorable_prod_dataset and target.table is not None:
                return  # a confirmed restore of this prod dataset's tables (see for_prod_restore)
            if (
                target.dataset in self.migrated_prod_datasets
                and target.table is not None
                and (
                    self.migrated_prod_tables is None or f"{target.dataset}.{target.table}" in self.migrated_prod_tables
                )
            ):
                return  # confirmed schema migrations of this prod dataset's tables (see for_prod_migrations)
            raise ProdWriteRefused(
                f"refused to {action} {where}: {target.dataset!r} is a prod dataset and prod is read-only to "
                f"envsync (prod's project {self.project!r})"
            )
        if self._owned(target):
            return
        if target.project not in self.projects:
            projects = sorted(self.projects)
            raise ProdWriteRefused(
                f"refused to {action} {where}: envsync only writes to project{'s' if len(projects) > 1 else ''} "
                f"{', '.join(map(repr, projects))} (the projects of its environments), not {target.project!r}"
            )
        if not self.spaces:
            raise ProdWriteRefused(
                f"refused to {action} {where}: this task only reads environments and may write nothing but "
                f"{', '.join(sorted(f'{p}.{d}' if p != self.project else d for p, d in self.allowed_datasets))}"
            )
        here = sorted(
            prefix or "/".join(sorted(exact or ()))
            for project, prefix, exact in self.spaces
            if project == target.project
        )
        raise ProdWriteRefused(
            f"refused to {action} {where}: dataset {target.dataset!r} has no environment prefix of project "
            f"{target.project!r} (allowed: {', '.join(here) or 'none'})"
        )

    def check_statement(self, sql: str) -> list[WriteTarget]:
        """Check every table or dataset a SQL script writes; return them. Read-only SQL returns []."""
        targets = statement_write_targets(sql, self.project)
        for target in targets:
            self.check(target, "run a statement that writes")
        return targets


# --------------------------------------------------------------------------------------------
# What does a statement write? sqlglot (BigQuery dialect) parses it; statements sqlglot cannot
# represent (CLONE ... FOR SYSTEM_TIME, CREATE SNAPSHOT TABLE) fall back to its tokenizer.

_READ_ONLY = ("Select", "Union", "Intersect", "Except", "Subquery")


def _split_parts(table: Any) -> list[str]:
    parts: list[str] = []
    for key in ("catalog", "db", "this"):
        node = table.args.get(key)
        if node is not None and getattr(node, "name", None):
            parts.extend(node.name.split("."))
    return parts


def _target_from_parts(parts: Sequence[str], default_project: str, is_schema: bool) -> WriteTarget:
    parts = list(parts)
    if is_schema:
        if len(parts) == 1:
            return WriteTarget(default_project, parts[0])
        if len(parts) == 2:
            return WriteTarget(parts[0], parts[1])
    else:
        if len(parts) == 2:
            return WriteTarget(default_project, parts[0], parts[1])
        if len(parts) == 3:
            return WriteTarget(parts[0], parts[1], parts[2])
    raise ProdWriteRefused(
        f"refused a statement: cannot tell which dataset {'.'.join(parts) or '(none)'!r} it writes "
        "(write targets must be qualified as dataset.table)"
    )


def _command_targets(sql: str, default_project: str) -> list[WriteTarget]:
    from sqlglot.dialects.bigquery import BigQuery

    tokens = BigQuery().tokenize(sql)
    names = [t.token_type.name for t in tokens]
    if not names or names[0] != "CREATE":
        raise ProdWriteRefused(f"refused a statement envsync cannot analyse: {sql[:120]!r}")
    i = 1
    while i < len(tokens) and names[i] not in ("TABLE", "SCHEMA", "VIEW"):
        i += 1
    if i == len(tokens):
        raise ProdWriteRefused(f"refused a statement envsync cannot analyse: {sql[:120]!r}")
    is_schema = names[i] == "SCHEMA"
    i += 1
    while i < len(tokens) and tokens[i].text.upper() in ("IF", "NOT", "EXISTS"):
        i += 1
    parts: list[str] = []
    while i < len(tokens) and names[i] in ("IDENTIFIER", "VAR"):
        parts.extend(tokens[i].text.split("."))
        if i + 1 < len(tokens) and names[i + 1] == "DOT":
            i += 2
        else:
            break
    return [_target_from_parts(parts, default_project, is_schema)]


def statement_write_targets(sql: str, default_project: str) -> list[WriteTarget]:
    import logging

    import sqlglot
    from sqlglot import exp

    # CLONE ... FOR SYSTEM_TIME parses as a Command; sqlglot warns about it, we handle it below.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    try:
        statements = sqlglot.parse(sql, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.ParseError as error:
        raise ProdWriteRefused(f"refused a statement envsync cannot parse: {error}") from None
    targets: list[WriteTarget] = []
    for statement in statements:
        if statement is None:
            continue
        kind = type(statement).__name__
        if kind in _READ_ONLY or (isinstance(statement, exp.Select)):
            continue
        if isinstance(statement, exp.Command):
            targets.extend(_command_targets(statement.sql(dialect="bigquery"), default_project))
            continue
        is_schema = str(statement.args.get("kind") or "").upper() == "SCHEMA"
        if isinstance(statement, exp.Drop):
            tables = statement.args.get("tables") or [statement.this]
        elif isinstance(statement, exp.TruncateTable):
            tables = statement.expressions
        elif isinstance(statement, (exp.Create, exp.Delete, exp.Update, exp.Merge, exp.Alter, exp.Insert)):
            node = statement.this
            tables = [node.this if isinstance(node, exp.Schema) else node]
        else:
            raise ProdWriteRefused(f"refused a {kind} statement: envsync does not run it")
        dml = isinstance(statement, (exp.Delete, exp.Update, exp.Merge, exp.Insert, exp.TruncateTable))
        for table in tables:
            if not isinstance(table, exp.Table):
                raise ProdWriteRefused(f"refused a {kind} statement: cannot tell what it writes")
            target = _target_from_parts(_split_parts(table), default_project, is_schema)
            targets.append(dataclasses.replace(target, dml=True) if dml else target)
    return targets


# --------------------------------------------------------------------------------------------


def _pace(target: WriteTarget) -> None:
    """Wait for a slot under BigQuery's limits of what a write touches: 5 metadata updates per 10 s per
    table (DDL, job output, tables.patch), 25 DML statements per 10 s per table, 5 metadata updates per
    10 s per dataset (`envsync.core.limits`)."""
    from envsync.core.limits import pacer

    if target.table and target.dml:
        pacer().table_dml(target.project, target.dataset, target.table)
    elif target.table:
        pacer().table_update(target.project, target.dataset, target.table)
    else:
        pacer().dataset_update(target.project, target.dataset)


class GuardedBigQuery:
    """The only object through which envsync writes to BigQuery. Reads pass straight through.

    Every write is checked by the guard, fenced by the run's lease, then paced under BigQuery's
    table and dataset metadata update limits, in that order."""

    def __init__(self, client: bigquery.Client, guard: WriteGuard, location: str):
        self.client = client
        self.guard = guard
        self.location = location
        # called before every write once set: the run's lease fence (envsync.core.lease.Heartbeat.fence)
        # raises when another run took the environment's lease over, so this run writes nothing more
        self.fence: Callable[[], None] | None = None

    def _check(self, target: WriteTarget, action: str) -> None:
        self.guard.check(target, action)
        if self.fence is not None:
            self.fence()
        _pace(target)

    # writes through the API
    def create_dataset(self, dataset: bigquery.Dataset) -> bigquery.Dataset:
        self._check(WriteTarget(dataset.project, dataset.dataset_id), "create dataset")
        return self.client.create_dataset(dataset, exists_ok=False)

    def update_dataset(self, dataset: bigquery.Dataset, fields: Sequence[str]) -> bigquery.Dataset:
        self._check(WriteTarget(dataset.project, dataset.dataset_id), "update dataset")
        return self.client.update_dataset(dataset, list(fields))

    def update_table(self, table: bigquery.Table, fields: Sequence[str]) -> bigquery.Table:
        self._check(WriteTarget(table.project, table.dataset_id, table.table_id), "update table")
        return self.client.update_table(table, list(fields))

    def delete_dataset(self, ref: str) -> None:
        """Delete `project.dataset` and everything in it (only ever an environment dataset)."""
        project, _, dataset = ref.partition(".")
        self._check(WriteTarget(project, dataset), "delete dataset")
        self.client.delete_dataset(ref, delete_contents=True, not_found_ok=True)

    def delete_table(self, ref: TableRef) -> None:
        self._check(WriteTarget(ref.project, ref.dataset, ref.table), "delete table")
        self.client.delete_table(ref.api, not_found_ok=True)

    def load_table_from_uri(
        self, uris: Sequence[str], ref: TableRef, job_config: Any, *, job_id: str, job_timeout_ms: int | None = None
    ) -> bigquery.LoadJob:
        """Start a load job into `ref` (restores from exported backups) after the guard checked it."""
        self._check(WriteTarget(ref.project, ref.dataset, ref.table), "load into table")
        if job_timeout_ms is not None:
            job_config.job_timeout_ms = job_timeout_ms
        return self.client.load_table_from_uri(
            list(uris), ref.api, job_config=job_config, job_id=job_id, location=self.location
        )

    def copy_table(
        self,
        source: TableRef,
        destination: TableRef,
        *,
        write_disposition: str,
        job_id: str,
        labels: Mapping[str, str],
        job_timeout_ms: int | None = None,
    ) -> bigquery.CopyJob:
        """Start a copy job (operation COPY: a standard table) into `destination` after the guard checked it.

        WRITE_TRUNCATE replaces an existing table's data and schema and keeps its own settings;
        WRITE_EMPTY creates the table (https://cloud.google.com/bigquery/docs/managing-tables#copy-table).
        """
        from google.cloud import bigquery

        if write_disposition not in ("WRITE_TRUNCATE", "WRITE_EMPTY"):
            raise ValueError(f"copy write_disposition must be WRITE_TRUNCATE or WRITE_EMPTY, got {write_disposition!r}")
        self._check(WriteTarget(destination.project, destination.dataset, destination.table), "copy into table")
        config = bigquery.CopyJobConfig(
            operation_type="COPY",
            write_disposition=write_disposition,
            create_disposition="CREATE_IF_NEEDED",
            labels=dict(labels),
        )
        if job_timeout_ms is not None:
            config.job_timeout_ms = job_timeout_ms
        return self.client.copy_table(
            source.api, destination.api, job_config=config, job_id=job_id, location=self.location
        )

    # jobs
    def start_query(
        self,
        sql: str,
        *,
        params: Mapping[str, Any] | None = None,
        job_id: str,
        labels: Mapping[str, str],
        dry_run: bool = False,
        job_timeout_ms: int | None = None,
    ) -> bigquery.QueryJob:
        """Start a query job after the guard checked every table it writes; `job_timeout_ms` is the
        server-side timeout (JobConfiguration.jobTimeoutMs: BigQuery stops the job after it)."""
        from google.cloud import bigquery

        targets = self.guard.check_statement(sql)
        if targets and self.fence is not None:
            self.fence()
        for target in targets:
            _pace(target)
        config = bigquery.QueryJobConfig(
            query_parameters=to_query_parameters(params or {}),
            labels=dict(labels),
            dry_run=dry_run,
            use_legacy_sql=False,
        )
        if job_timeout_ms is not None:
            config.job_timeout_ms = job_timeout_ms
        return self.client.query(sql, job_config=config, job_id=job_id, location=self.location, job_retry=None)


@dataclass(frozen=True)
class Typed:
    """A query parameter value with an explicit BigQuery type (needed for NULLs: Typed("STRING", None))."""

    kind: str
    value: Any = None


def to_query_parameters(params: Mapping[str, Any]) -> list[Any]:
    """Bind Python values as typed BigQuery query parameters (never formatted into SQL)."""
    import datetime as dt

    from google.cloud import bigquery

    out: list[Any] = []  # bigquery.ScalarQueryParameter and ArrayQueryParameter
    for name, value in params.items():
        if isinstance(value, Typed):
            kind, value = value.kind, value.value
        elif isinstance(value, bool):
            kind = "BOOL"
        elif isinstance(value, int):
            kind = "INT64"
        elif isinstance(value, float):
            kind = "FLOAT64"
        elif isinstance(value, dt.datetime):
            kind = "TIMESTAMP" if value.tzinfo is not None else "DATETIME"
        elif isinstance(value, dt.date):
            kind = "DATE"
        elif isinstance(value, str):
            kind = "STRING"
        elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            out.append(bigquery.ArrayQueryParameter(name, "STRING", list(value)))
            continue
        else:
            raise TypeError(f"query parameter {name!r} has unsupported type {type(value).__name__}")
        out.append(bigquery.ScalarQueryParameter(name, kind, value))
    return out
