"""Parity: how far every derived environment is from prod, read from metadata and the audit tables.

For each environment (dev, qa, staging, prodcopy, every live test environment) and prod dataset, the
environment's dataset is compared with prod's, object by object (`compare_dataset`, pure):

  * tables and views missing or extra, a table where prod has a view (or the reverse);
  * columns missing, extra, or with another type, mode or nested fields; column descriptions and
    policy tags; partitioning (time or integer range), clustering, `require_partition_filter` and the
    table's description.

A difference is `expected`, not drift, when the environment holds a schema migration prod does not
have yet (`envsync.migrations.ledger.pending`) that explains it: the migration adds the extra table or
column, removes the missing one, or alters the table whose column or option differs. Some
differences are expected by design: tables excluded in the config, object kinds envsync does not
copy (materialized views, snapshots, external tables), dev-only objects the config keeps, and
`require_partition_filter` on qa/staging/test tables (built from seeds, which do not set it).

Freshness comes from the audit tables (`runs` joined with `table_actions`): the cut T of the newest
run that refreshed the environment dataset (at least one table `ok`; dry runs refresh nothing) and
its age. dev older than 8 days, and qa/staging older than their weekly schedule plus a day, are
flagged. For dev, every table's rows are counted against prod's rows in the window as of the T of the
run that last refreshed that table (the sync's own verification query, `verify.count_rows`); when T
is past prod's time-travel window, or the table was created after T, the count cannot be taken and
the finding says so (status `unknown`).

Projects: each environment is read in its own project (`config.project_of`), prod in
`config.prod_project`; a finding names the environment's dataset with `config.qualified` (its project
too once environments live in several), objects with prod's dataset names. A view of an environment in
another project than prod's whose SQL still names prod's project is drift (`prod_reference`): views
copied into an environment read the environment's own datasets.

Results: one row per environment x object x finding, appended to `envsync_audit.parity` (batched
INSERTs with bound parameters, `audit.insert_rows`); a readable table for the task log; a summary
for the run report; a Slack message when there is unexpected drift (`envsync.observe.alerts`).

Entry points: `check(config, client, runner, environments=..., datasets=...)` (the parity DAG) and
`check_refreshed(config, runner, env, ...)`, the last step of every sync, reseed, prod-copy and
promotion run. The check only reads environments; its writes are the audit rows, through a write
guard that allows nothing but the audit dataset (`WriteGuard.audit_only`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from envsync.core.guard import TableRef

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.bigquery.discovery import DatasetInfo, TableInfo
    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import EnvsyncConfig

log = logging.getLogger(__name__)

PARITY = "parity"
PARITY_COLUMNS = {
    "checked_at": "TIMESTAMP",
    "dag_id": "STRING",
    "run_id": "STRING",
    "environment": "STRING",
    "dataset": "STRING",
    "env_dataset": "STRING",
    "object_name": "STRING",
    "finding": "STRING",
    "status": "STRING",
    "detail": "STRING",
    "prod_value": "STRING",
    "env_value": "STRING",
    "refreshed_cut": "TIMESTAMP",
    "age_hours": "FLOAT64",
    "prod_rows": "INT64",
    "env_rows": "INT64",
}
ENVIRONMENTS = ("dev", "qa", "staging", "prodcopy", "test")
SEEDED = ("qa", "staging", "test")
# the DAGs that refresh an environment; the time since the last successful one is its age
REFRESH_DAGS = ("prod_to_dev_sync", "reseed_environments", "prod_copy", "staging_cut", "promote_schema")
# dev is flagged after 8 days; qa and staging after their schedule (reseed_environments: weekly,
# RESEED_SCHEDULE) plus a day. prodcopy (a copy as of a chosen T) and test environments are not flagged.
RESEED_SCHEDULE = "0 3 * * 0"
MAX_AGE = {"dev": dt.timedelta(days=8), "qa": dt.timedelta(days=7 + 1), "staging": dt.timedelta(days=7 + 1)}
LOOKBACK = dt.timedelta(days=90)  # refreshes older than this are not looked for
DRIFT, EXPECTED, OK, UNKNOWN = "drift", "expected", "ok", "unknown"
# findings that mean the refresh just made is wrong (check_refreshed fails the run on them)
STRUCTURAL = frozenset(
    {
        "missing_dataset",
        "missing_object",
        "extra_object",
        "object_kind",
        "missing_column",
        "extra_column",
        "column_type",
        "column_mode",
        "nested_fields",
        "partitioning",
        "clustering",
    }
)
TOP_FINDINGS = 10


class ParityError(RuntimeError):
    """Unexpected structural drift right after a refresh: the environment does not have prod's shape."""


@dataclass
class Finding:
    environment: str  # dev, qa, staging, prodcopy, test_<name>
    dataset: str  # the prod dataset
    env_dataset: str  # the environment's dataset, named by config.qualified (with its project when split)
    object_name: str  # dataset.table or dataset.table.column (prod's dataset name)
    finding: str  # missing_object, extra_column, column_type, stale, rows, ...
    status: str  # drift | expected | ok | unknown
    detail: str
    prod_value: str | None = None
    env_value: str | None = None
    refreshed_cut: dt.datetime | None = None
    age_hours: float | None = None
    prod_rows: int | None = None
    env_rows: int | None = None

    def row(self, *, checked_at: dt.datetime, dag_id: str, run_id: str) -> dict[str, Any]:
        return {"checked_at": checked_at, "dag_id": dag_id, "run_id": run_id, **asdict(self)}


# ------------------------------------------------------------------------------ expectations


@dataclass(frozen=True)
class Expectations:
    """What explains a difference in one environment: its pending migrations, and envsync's design."""

    env_kind: str  # dev, qa, staging, prodcopy, test
    adds: Mapping[str, int] = field(default_factory=dict)  # ds.t / ds.t.col -> migration version
    removes: Mapping[str, int] = field(default_factory=dict)
    alters: Mapping[str, int] = field(default_factory=dict)  # ds.t a schema-changing statement targets
    excluded: frozenset[str] = frozenset()  # ds.t excluded in the config
    keep: frozenset[str] = frozenset()  # dev-only objects the config keeps

    @classmethod
    def of(cls, config: EnvsyncConfig, env_kind: str, pending: Iterable[Any] = ()) -> Expectations:
        adds: dict[str, int] = {}
        removes: dict[str, int] = {}
        alters: dict[str, int] = {}
        for migration in pending:
            for item in migration.additions():
                adds.setdefault(item, migration.version)
            for item in migration.removals():
                removes.setdefault(item, migration.version)
            for statement in migration.statements:
                if statement.changes_schema and statement.references:
                    alters.setdefault(statement.references[0].key, migration.version)
        excluded = frozenset(key for key, o in config.tables.items() if o.exclude)
        keep = frozenset(config.environments.dev.keep) if env_kind == "dev" else frozenset()
        return cls(env_kind, adds, removes, alters, excluded, keep)

    def migration(self, finding: str, name: str) -> int | None:
        """The pending migration that explains `finding` on `name` (ds.t or ds.t.col), if any."""
        table = ".".join(name.split(".")[:2])
        if finding in ("extra_object", "extra_column"):
            return self.adds.get(name)
        if finding in ("missing_object", "missing_column"):
            return self.removes.get(name)
        return self.alters.get(table)


def _classify(findings: list[Finding], expectations: Expectations) -> list[Finding]:
    for item in findings:
        if item.status != DRIFT:
            continue
        version = expectations.migration(item.finding, item.object_name)
        if version is not None:
            item.status = EXPECTED
            item.detail += f" (expected: migration {version} is promoted to {item.environment}, not yet to prod)"
    return findings


# ------------------------------------------------------------------------------ comparison


def _type(field_: Mapping[str, Any]) -> str:
    from envsync.bigquery.discovery import TYPE_ALIASES

    kind = str(field_.get("type", "")).upper()
    return TYPE_ALIASES.get(kind, kind)


def _mode(field_: Mapping[str, Any]) -> str:
    return str(field_.get("mode") or "NULLABLE").upper()


def _tags(field_: Mapping[str, Any]) -> list[str]:
    return sorted((field_.get("policyTags") or {}).get("names") or [])


def compare_columns(
    prod: Sequence[Mapping[str, Any]], env: Sequence[Mapping[str, Any]], path: str, make: Any
) -> list[Finding]:
    """Column findings of one table (nested fields under `path.column.`), by name, case-insensitive."""
    out: list[Finding] = []
    prod_by = {f["name"].lower(): f for f in prod}
    env_by = {f["name"].lower(): f for f in env}
    for key, want in prod_by.items():
        name = f"{path}.{want['name']}"
        have = env_by.get(key)
        if have is None:
            out.append(
                make(name, "missing_column", f"column {want['name']} is missing", f"{_type(want)} {_mode(want)}", None)
            )
            continue
        if _type(want) != _type(have):
            out.append(
                make(
                    name,
                    "column_type",
                    f"column {want['name']} is {_type(have)}, prod has {_type(want)}",
                    _type(want),
                    _type(have),
                )
            )
        elif _type(want) == "STRUCT":
            out += compare_columns(want.get("fields") or [], have.get("fields") or [], name, make)
        if _mode(want) != _mode(have):
            out.append(
                make(
                    name,
                    "column_mode",
                    f"column {want['name']} is {_mode(have)}, prod has {_mode(want)}",
                    _mode(want),
                    _mode(have),
                )
            )
        if (want.get("description") or None) != (have.get("description") or None):
            out.append(
                make(
                    name,
                    "column_description",
                    f"column {want['name']} has another description",
                    want.get("description"),
                    have.get("description"),
                )
            )
        if _tags(want) != _tags(have):
            out.append(
                make(
                    name,
                    "policy_tags",
                    f"column {want['name']} has policy tags {_tags(have)}, prod has {_tags(want)}",
                    ",".join(_tags(want)),
                    ",".join(_tags(have)),
                )
            )
    for key, have in env_by.items():
        if key not in prod_by:
            out.append(
                make(
                    f"{path}.{have['name']}",
                    "extra_column",
                    f"column {have['name']} is not in prod",
                    None,
                    f"{_type(have)} {_mode(have)}",
                )
            )
    return out


def _partitioning(info: TableInfo) -> str | None:
    if info.range_partitioning:
        r = info.range_partitioning
        return f"RANGE_BUCKET({r['field']}, {r['start']}, {r['end']}, {r['interval']})"
    if info.partitioning:
        return f"{info.partitioning['type']}({info.partitioning.get('field') or '_PARTITIONTIME'})"
    return None


def compare_table(prod: TableInfo, env: TableInfo, env_kind: str, make: Any) -> list[Finding]:
    """Every difference of one environment object from its prod object (pure)."""
    name = f"{prod.dataset}.{prod.table}"
    if prod.kind != env.kind and {prod.kind, env.kind} != {"TABLE", "CLONE"}:
        return [
            make(
                name,
                "object_kind",
                f"{name} is a {env.kind.lower()}, prod has a {prod.kind.lower()}",
                prod.kind,
                env.kind,
            )
        ]
    out = compare_columns(prod.schema, env.schema, name, make)
    if _partitioning(prod) != _partitioning(env):
        out.append(
            make(
                name,
                "partitioning",
                f"partitioning is {_partitioning(env)}, prod has {_partitioning(prod)}",
                _partitioning(prod),
                _partitioning(env),
            )
        )
    if (prod.clustering or None) != (env.clustering or None):
        out.append(
            make(
                name,
                "clustering",
                f"clustering is {env.clustering}, prod has {prod.clustering}",
                ",".join(prod.clustering or []) or None,
                ",".join(env.clustering or []) or None,
            )
        )
    if prod.require_partition_filter != env.require_partition_filter:
        item = make(
            name,
            "require_partition_filter",
            f"require_partition_filter is {env.require_partition_filter}, prod has {prod.require_partition_filter}",
            str(prod.require_partition_filter).lower(),
            str(env.require_partition_filter).lower(),
        )
        if env_kind in SEEDED:
            item.status = EXPECTED
            item.detail += " (expected: seeded environments do not set it)"
        out.append(item)
    if (prod.description or None) != (env.description or None):
        out.append(make(name, "description", f"{name} has another description", prod.description, env.description))
    return out


COPIED_KINDS = ("TABLE", "CLONE", "VIEW")


def compare_dataset(
    environment: str,
    env_kind: str,
    prod: DatasetInfo,
    env: DatasetInfo | None,
    env_dataset: str,
    expectations: Expectations,
) -> list[Finding]:
    """Every structural and metadata difference of one environment dataset from its prod dataset (pure)."""
    from envsync.sync.plan import STAGE_SUFFIX

    def make(name: str, finding: str, detail: str, prod_value: Any = None, env_value: Any = None) -> Finding:
        return Finding(
            environment,
            prod.dataset,
            env_dataset,
            name,
            finding,
            DRIFT,
            detail,
            None if prod_value is None else str(prod_value),
            None if env_value is None else str(env_value),
        )

    if env is None:
        return [make(prod.dataset, "missing_dataset", f"dataset {env_dataset} does not exist")]
    out: list[Finding] = []
    env_tables = {t.table: t for t in env.tables}
    for table in prod.tables:
        name = f"{prod.dataset}.{table.table}"
        have = env_tables.get(table.table)
        if name in expectations.excluded:
            if have is None:
                out.append(
                    _expected(
                        make(name, "missing_object", f"{name} is not in {env_dataset}"), "exclude: true in the config"
                    )
                )
            continue
        if table.kind not in COPIED_KINDS:
            if have is None:
                out.append(
                    _expected(
                        make(name, "missing_object", f"{name} is not in {env_dataset}", table.kind),
                        f"{table.kind.lower()} objects are not copied",
                    )
                )
            continue
        if have is None:
            out.append(
                make(name, "missing_object", f"{table.kind.lower()} {name} is missing from {env_dataset}", table.kind)
            )
            continue
        out += compare_table(table, have, env_kind, make)
    prod_names = {t.table for t in prod.tables}
    for table in env.tables:
        if table.table in prod_names:
            continue
        name = f"{prod.dataset}.{table.table}"
        item = make(
            name, "extra_object", f"{table.kind.lower()} {env_dataset}.{table.table} is not in prod", None, table.kind
        )
        if not table.table.endswith(STAGE_SUFFIX) and (table.table in expectations.keep or name in expectations.keep):
            item = _expected(item, "kept by environments.dev.keep")
        out.append(item)
    return _classify(out, expectations)


def _expected(item: Finding, why: str) -> Finding:
    item.status = EXPECTED
    item.detail += f" (expected: {why})"
    return item


def names_project(sql: str, project: str) -> bool:
    """Whether a view's SQL names a table of `project` (sqlglot; SQL it cannot parse: by its text)."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="bigquery")
    except sqlglot.errors.ParseError:
        return project in sql
    return any(t.catalog == project or (not t.db and t.name.split(".")[0] == project) for t in tree.find_all(exp.Table))


def prod_references(
    environment: str, dataset: str, env: DatasetInfo, env_dataset: str, prod_project: str
) -> list[Finding]:
    """Drift findings (`prod_reference`) for the views of an environment dataset in another project than
    prod's whose SQL still names prod's project: a copied view must read the environment's datasets (pure)."""
    return [
        Finding(
            environment,
            dataset,
            env_dataset,
            f"{dataset}.{table.table}",
            "prod_reference",
            DRIFT,
            f"view {env_dataset}.{table.table} reads prod's project {prod_project!r}",
            env_value=(table.view_query or "")[:1000],
        )
        for table in env.tables
        if table.kind == "VIEW" and names_project(table.view_query or "", prod_project)
    ]


# ------------------------------------------------------------------------------ freshness


@dataclass(frozen=True)
class Refresh:
    """A refresh of an environment table (or dataset) by a run: the run, its cut T and window."""

    dag_id: str
    run_id: str
    cut: dt.datetime
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None


def refreshes(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Refresh], dict[str, Refresh]]:
    """From the audit rows (sql/parity/refreshed_tables.sql): the newest successful refresh of every
    environment dataset (a run with status success that refreshed at least one of its tables) and of
    every environment table (its newest `ok` action, whatever its run's status), keyed as the rows
    name them (`dataset[.table]`, or `project.dataset[.table]` once environments live in several
    projects) (pure)."""
    datasets: dict[str, Refresh] = {}
    tables: dict[str, Refresh] = {}
    for row in rows:
        if row.get("action_status") != "ok" or not row.get("target") or row.get("cut") is None:
            continue
        refresh = Refresh(row["dag_id"], row["run_id"], row["cut"], row.get("window_start"), row.get("window_end"))
        target = str(row["target"])
        if target not in tables or tables[target].cut < refresh.cut:
            tables[target] = refresh
        dataset = target.rpartition(".")[0] or target
        if row.get("run_status") == "success" and (dataset not in datasets or datasets[dataset].cut < refresh.cut):
            datasets[dataset] = refresh
    return datasets, tables


def read_refreshes(
    config: EnvsyncConfig, client: bigquery.Client, now: dt.datetime
) -> tuple[dict[str, Refresh], dict[str, Refresh]]:
    """`refreshes` from the audit tables (one query; none yet: nothing refreshed)."""
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery as bq

    from envsync.core.guard import to_query_parameters
    from envsync.core.sqltemplates import render
    from envsync.observe.audit import RUNS, TABLE_ACTIONS, audit_table

    runs, actions = audit_table(config, RUNS), audit_table(config, TABLE_ACTIONS)
    try:
        client.get_table(runs.api)
        client.get_table(actions.api)
    except NotFound:
        return {}, {}
    sql = render("parity/refreshed_tables", runs=runs.sql, actions=actions.sql)
    params = to_query_parameters({"since": now - LOOKBACK})
    params.append(bq.ArrayQueryParameter("dag_ids", "STRING", list(REFRESH_DAGS)))
    job = client.query(
        sql, job_config=bq.QueryJobConfig(query_parameters=params), location=config.location, job_retry=None
    )
    return refreshes(dict(row) for row in job.result())


def freshness(
    environment: str, env_kind: str, dataset: str, env_dataset: str, refresh: Refresh | None, now: dt.datetime
) -> Finding:
    """The freshness finding of one environment dataset: T of its last refresh, its age, flagged when
    older than MAX_AGE of its environment (pure)."""
    limit = MAX_AGE.get(env_kind)
    if refresh is None:
        return Finding(
            environment,
            dataset,
            env_dataset,
            dataset,
            "stale",
            DRIFT if limit else UNKNOWN,
            f"no successful refresh of {env_dataset} in the last {LOOKBACK.days} days",
        )
    age = now - refresh.cut
    hours = round(age.total_seconds() / 3600, 1)
    detail = (
        f"last refreshed as of T = {refresh.cut.isoformat()} by {refresh.dag_id} run {refresh.run_id}, "
        f"{hours / 24:.1f} days ago"
    )
    if limit is not None and age > limit:
        return Finding(
            environment,
            dataset,
            env_dataset,
            dataset,
            "stale",
            DRIFT,
            f"{detail}: older than {limit.days} days",
            env_value=refresh.cut.isoformat(),
            refreshed_cut=refresh.cut,
            age_hours=hours,
        )
    return Finding(
        environment,
        dataset,
        env_dataset,
        dataset,
        "freshness",
        OK,
        detail,
        env_value=refresh.cut.isoformat(),
        refreshed_cut=refresh.cut,
        age_hours=hours,
    )


def count_dev_rows(
    config: EnvsyncConfig,
    runner: JobRunner,
    prod: DatasetInfo,
    env: DatasetInfo,
    tables: Mapping[str, Refresh],
    now: dt.datetime,
    windows: Mapping[str, Any],
    environment: str = "dev",
) -> list[Finding]:
    """Rows of every dev table against prod's rows in the window as of the T of the run that last
    refreshed it (verify.count_rows: the sync's own verification query, one job per table). `tables`
    is keyed by the tables' names as the audit rows give them (`config.qualified`)."""
    from envsync.bigquery.jobs import JobStats
    from envsync.bigquery.timetravel import created_after
    from envsync.bigquery.verify import count_rows, partition_filter
    from envsync.core.window import Window
    from envsync.sync.plan import plan_dataset

    env_project = config.project_of("dev")
    env_dataset = config.qualified(env_project, env.dataset)
    present = {t.table for t in env.tables}
    plan = plan_dataset(config, prod, existing=None)
    out: list[Finding] = []
    for action in plan.by_action("clone_window", "ctas_window", "full_clone"):
        if action.table not in present:
            continue  # reported as missing_object
        info = plan.tables[action.table]
        name = action.key
        refresh = tables.get(f"{env_dataset}.{action.table}")

        def finding(status: str, detail: str, **values: Any) -> Finding:
            return Finding(
                environment,
                prod.dataset,
                env_dataset,
                name,  # noqa: B023 (called only in this iteration of the loop)
                "rows",
                status,
                detail,
                refreshed_cut=refresh.cut if refresh else None,  # noqa: B023 (called only in this iteration)
                **values,
            )

        if refresh is None:
            out.append(finding(UNKNOWN, f"no recorded refresh of {env_dataset}.{action.table}: rows not compared"))
            continue
        window_hours = windows[prod.dataset].hours
        oldest = now - dt.timedelta(hours=window_hours)
        if refresh.cut < oldest:
            out.append(
                finding(
                    UNKNOWN,
                    f"the count as of T = {refresh.cut.isoformat()} could not be taken: T is "
                    f"past {windows[prod.dataset].describe()} (oldest readable {oldest.isoformat()})",
                )
            )
            continue
        created = _created(runner, TableRef(config.prod_project, prod.dataset, action.table))
        if created_after(created, refresh.cut):
            out.append(
                finding(
                    UNKNOWN,
                    f"the count as of T = {refresh.cut.isoformat()} could not be taken: "
                    f"{name} was created at {created.isoformat() if created else '?'}, after T",
                )
            )
            continue
        window = (
            Window(refresh.window_start, refresh.window_end, 0)
            if action.action in ("clone_window", "ctas_window") and refresh.window_start and refresh.window_end
            else None
        )
        try:
            prod_counts, env_counts = count_rows(
                runner,
                action,
                TableRef(config.prod_project, prod.dataset, action.table),
                TableRef(env_project, env.dataset, action.table),
                cut=refresh.cut,
                window=window,
                stats=JobStats(),
                keep_all=partition_filter(info),
                key=("parity", "dev", action.dataset, action.table),
            )
        except Exception as error:  # a count that cannot be taken is reported, never fails the check
            out.append(
                finding(
                    UNKNOWN,
                    f"the count as of T = {refresh.cut.isoformat()} could not be taken: "
                    f"{type(error).__name__}: {error}"[:1000],
                )
            )
            continue
        prod_rows, env_rows = sum(prod_counts.values()), sum(env_counts.values())
        scope = "in the window " if window else ""
        if prod_counts == env_counts:
            out.append(
                finding(
                    OK,
                    f"{env_rows:,} rows, as prod {scope}as of T = {refresh.cut.isoformat()}",
                    prod_rows=prod_rows,
                    env_rows=env_rows,
                )
            )
        else:
            differ = sum(1 for k in set(prod_counts) | set(env_counts) if prod_counts.get(k, 0) != env_counts.get(k, 0))
            out.append(
                finding(
                    DRIFT,
                    f"{env_rows:,} rows, prod has {prod_rows:,} {scope}as of T = "
                    f"{refresh.cut.isoformat()} ({differ} partition(s) differ)",
                    prod_rows=prod_rows,
                    env_rows=env_rows,
                )
            )
    return out


def _created(runner: JobRunner, ref: TableRef) -> dt.datetime | None:
    return runner.bq.client.get_table(ref.api).created


# ------------------------------------------------------------------------------ environments


@dataclass(frozen=True)
class Target:
    """One environment to check: its name (test_<name> for a test env), kind and test name."""

    name: str
    kind: str
    test_name: str | None = None

    def dataset(self, config: EnvsyncConfig, prod_dataset: str) -> str:
        return config.env_dataset(self.kind, prod_dataset, self.test_name)


def live_test_environments(config: EnvsyncConfig, client: bigquery.Client, now: dt.datetime) -> list[str]:
    """Names of the test environments that have a dataset that has not expired (labels of the reseed),
    in the test environments' project."""
    prefix = config.environments.test.prefix
    names = set()
    for item in client.list_datasets(project=config.project_of("test"), filter="labels.envsync-env:test"):
        labels = item.labels or {}
        name = labels.get("envsync-test-env") or item.dataset_id[len(prefix) :].split("_")[0]
        try:
            expired = int(labels.get("envsync-expires", "")) <= now.timestamp()
        except ValueError:
            expired = False
        if item.dataset_id.startswith(prefix) and name and not expired:
            names.add(name)
    return sorted(names)


def targets(
    config: EnvsyncConfig, client: bigquery.Client, environments: Sequence[str], now: dt.datetime
) -> list[Target]:
    out = [Target(env, env) for env in environments if env != "test"]
    if "test" in environments:
        out += [Target(f"test_{name}", "test", name) for name in live_test_environments(config, client, now)]
    return out


# ------------------------------------------------------------------------------ the check


@dataclass
class ParityResult:
    checked_at: dt.datetime
    environments: list[str]
    datasets: list[str]
    findings: list[Finding]

    def drift(self) -> list[Finding]:
        return [f for f in self.findings if f.status == DRIFT]

    def summary(self) -> dict[str, Any]:
        per_env: dict[str, dict[str, int]] = {}
        for item in self.findings:
            counts = per_env.setdefault(item.environment, {DRIFT: 0, EXPECTED: 0, OK: 0, UNKNOWN: 0})
            counts[item.status] += 1
        for env in self.environments:
            per_env.setdefault(env, {DRIFT: 0, EXPECTED: 0, OK: 0, UNKNOWN: 0})
        return {
            "checked_at": self.checked_at.isoformat(),
            "datasets": self.datasets,
            "environments": per_env,
            "drift": len(self.drift()),
            "expected": sum(1 for f in self.findings if f.status == EXPECTED),
            "top_drift": [
                f"{f.environment} {f.finding} {f.object_name}: {f.detail}" for f in top_findings(self.drift())
            ],
        }


def top_findings(findings: Sequence[Finding], limit: int = TOP_FINDINGS) -> list[Finding]:
    """The most telling findings first: structure, then metadata, freshness, rows."""

    def rank(item: Finding) -> tuple[int, str, str]:
        order = 0 if item.finding in STRUCTURAL else 2 if item.finding in ("stale", "rows") else 1
        return order, item.environment, item.object_name

    return sorted(findings, key=rank)[:limit]


def _discover(client: bigquery.Client, project: str, dataset: str) -> DatasetInfo | None:
    from google.api_core.exceptions import NotFound

    from envsync.bigquery.discovery import DiscoveryError, discover_dataset

    try:
        client.get_dataset(f"{project}.{dataset}")
        return discover_dataset(client, project, dataset)
    except (NotFound, DiscoveryError):
        return None


def check(
    config: EnvsyncConfig,
    runner: JobRunner,
    *,
    environments: Sequence[str],
    datasets: Sequence[str],
    now: dt.datetime | None = None,
    only: Sequence[Target] | None = None,
) -> ParityResult:
    """Compare every chosen environment with prod (reads only; the row counts are query jobs of
    `runner`). `only` checks these targets instead of resolving `environments`."""
    from envsync.bigquery.timetravel import prod_windows
    from envsync.migrations.ledger import load_migrations, pending, read_ledger

    client = runner.bq.client
    now = now or dt.datetime.now(dt.UTC)
    chosen = list(only) if only is not None else targets(config, client, environments, now)
    prods = {ds: _discover(client, config.prod_project, ds) for ds in datasets}
    missing_prod = [ds for ds, info in prods.items() if info is None]
    if missing_prod:
        from envsync.bigquery.discovery import DiscoveryError

        raise DiscoveryError(
            f"prod datasets {missing_prod} (prod.datasets in the config) do not exist in project "
            f"{config.prod_project!r}"
        )
    migrations = load_migrations(config)
    ledger = read_ledger(config, client)
    dataset_refresh, table_refresh = read_refreshes(config, client, now)
    windows = prod_windows(config, client, list(datasets)) if any(t.kind == "dev" for t in chosen) else {}
    findings: list[Finding] = []
    for target in chosen:
        expectations = Expectations.of(config, target.kind, pending(migrations, ledger, target.kind))
        project = config.project_of(target.kind)
        envs = {ds: _discover(client, project, target.dataset(config, ds)) for ds in datasets}
        if target.kind in ("prodcopy", "test") and not any(envs.values()):
            log.info("%s has no dataset: not created (nothing to compare)", target.name)
            continue
        for ds in datasets:
            prod, env, env_ds = prods[ds], envs[ds], config.qualified(project, target.dataset(config, ds))
            assert prod is not None
            found = compare_dataset(target.name, target.kind, prod, env, env_ds, expectations)
            if env is not None:
                found.append(freshness(target.name, target.kind, ds, env_ds, dataset_refresh.get(env_ds), now))
                if project != config.prod_project:
                    found += prod_references(target.name, prod.dataset, env, env_ds, config.prod_project)
                if target.kind == "dev":
                    found += count_dev_rows(config, runner, prod, env, table_refresh, now, windows)
            findings += found
        log.info(
            "%s: %d unexpected difference(s) from prod, %d expected",
            target.name,
            sum(1 for f in findings if f.environment == target.name and f.status == DRIFT),
            sum(1 for f in findings if f.environment == target.name and f.status == EXPECTED),
        )
    return ParityResult(now, [t.name for t in chosen], list(datasets), findings)


def record(config: EnvsyncConfig, runner: JobRunner, result: ParityResult) -> int:
    """Append the findings to envsync_audit.parity (batched INSERTs, bound parameters)."""
    from envsync.observe.audit import ensure_audit_table, insert_rows

    if not result.findings:
        return 0
    table = ensure_audit_table(config, runner, PARITY)
    rows = [f.row(checked_at=result.checked_at, dag_id=runner.dag_id, run_id=runner.run_id) for f in result.findings]
    return insert_rows(
        runner,
        table,
        PARITY_COLUMNS,
        rows,
        key=("audit", PARITY, "insert", *sorted({f.environment for f in result.findings})[:20]),
    )


def findings_table(findings: Sequence[Finding]) -> str:
    """The readable table of the task log: drift first, then expected, unknown and ok."""
    from envsync.observe.report import render_table

    order = {DRIFT: 0, EXPECTED: 1, UNKNOWN: 2, OK: 3}
    rows = sorted(findings, key=lambda f: (order[f.status], f.environment, f.object_name, f.finding))
    return render_table(
        ["environment", "object", "finding", "status", "detail"],
        [[f.environment, f.object_name, f.finding, f.status, f.detail[:200]] for f in rows],
    )


def audit_runner(config: EnvsyncConfig, runner: JobRunner) -> JobRunner:
    """A runner like `runner` whose guard lets it write the audit dataset only."""
    from envsync.bigquery.jobs import JobRunner as Runner
    from envsync.core.guard import GuardedBigQuery

    audit = (config.audit_project, config.audit.dataset)
    bq = GuardedBigQuery(runner.bq.client, runner.bq.guard.audit_only(audit), runner.bq.location)
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


def check_refreshed(
    config: EnvsyncConfig,
    runner: JobRunner,
    env: str,
    *,
    datasets: Sequence[str] | None = None,
    test_name: str | None = None,
    now: dt.datetime | None = None,
) -> ParityResult:
    """The parity of the environment a run has just refreshed (the last step of every sync, reseed,
    prod-copy and promotion run): check, record in envsync_audit.parity, log the table; returns the
    result. The caller alerts (`alerts.parity_message`) and decides, with `refresh_failures`,
    whether to fail the run."""
    readonly = audit_runner(config, runner)
    name = f"test_{test_name}" if env == "test" else env
    result = check(
        config,
        readonly,
        environments=[env],
        datasets=list(datasets or config.prod.datasets),
        now=now,
        only=[Target(name, env, test_name)],
    )
    record(config, readonly, result)
    log.info("parity of %s after this run:\n%s", name, findings_table(result.findings))
    return result


def refresh_failures(result: ParityResult, written: Iterable[str]) -> list[Finding]:
    """Unexpected structural drift (columns, types, modes, nesting, kind, partitioning, clustering) of
    an object the run itself just wrote (`written`: `env_dataset.table` of its `ok` results): the
    refresh did not give it prod's shape, so the run fails. Everything else is reported and alerted
    only: metadata differences (descriptions, policy tags, require_partition_filter), freshness, row
    counts, objects the run did not write (a filtered run, an object made since the plan), and every
    difference of prodcopy, a copy of prod as of a chosen T that prod may have changed since."""
    written = set(written)

    def target(item: Finding) -> str:
        parts = item.object_name.split(".")
        return f"{item.env_dataset}.{parts[1]}" if len(parts) > 1 else item.env_dataset

    return [
        f
        for f in result.drift()
        if f.finding in STRUCTURAL and not f.environment.startswith("prodcopy") and target(f) in written
    ]
