"""Turn prod metadata into per-table actions for a dev sync: pure, no BigQuery.

Per table, the cheapest correct BigQuery operation:
  * clone_window  - partitioned on a date column: CLONE as of T (0 bytes), then drop the partitions
                    outside the window (whole partitions: 0 bytes billed);
  * ctas_window   - unpartitioned with a date column (detected, or `date_column` in config): CREATE
                    TABLE ... AS SELECT as of T filtered to the window (bills the scanned bytes);
                    a window of more than 4,000 partitions (or an ingestion-time table) is CREATE
                    TABLE plus one INSERT per chunk of at most 4,000 partitions (envsync.bigquery.partitions);
  * full_clone    - no date column: CLONE as of T (0 bytes);
  * masked_ctas   - a table with masked columns in this environment (envsync.privacy.masking): CREATE TABLE
                    with prod's definition AS SELECT of the masked expressions as of T (the window
                    when the table has one, else the whole table), split like ctas_window; billed;
  * view          - re-created with its dataset references rewritten to the dev datasets (in dev's
                    project: a view never reads prod's project); references to a third project are
                    left as they are and named in the reason;
  * skip          - objects envsync does not copy (materialized views, external tables, snapshots);
  * drop          - objects that exist only in dev (unless `environments.dev.keep` lists them).

Row-level access policies of a prod table are reported per action (`row_access_policies`, and in the
reason): a clone is a copy, and copies carry every row access policy of their source table; a CTAS
copy carries none, and reads only the rows envsync's account may see (it needs a TRUE-filter policy).
https://cloud.google.com/bigquery/docs/using-row-level-security-with-features ("Copy jobs")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from envsync.bigquery.actions import Action
from envsync.bigquery.discovery import DatasetInfo, TableInfo
from envsync.bigquery.partitions import (
    MAX_PARTITIONS_PER_JOB,
    SPECIAL_IDS,
    Chunk,
    id_chunks,
    outside_window,
    partial_partitions,
    partitions_between,
    spec_of,
    window_chunks_on,
)
from envsync.bigquery.views import ViewRewrite, rewrite_view_sql
from envsync.privacy.masking import ColumnMask, column_masks, unmasked_tagged

if TYPE_CHECKING:
    from envsync.core.config import EnvsyncConfig
    from envsync.core.window import Window

DATE_TYPES = ("DATE", "DATETIME", "TIMESTAMP")
STAGE_SUFFIX = "__envsync_stage"
MIN_BYTES_BILLED_PER_TABLE = 10 * 1024 * 1024  # BigQuery bills at least 10 MB per table a query reads
BYTES_PER_DATE_VALUE = 8


class PlanError(ValueError):
    """The run's inputs do not fit prod (for example a `tables` filter naming an unknown table)."""


@dataclass
class DatasetPlan:
    dataset: str
    target_dataset: str
    location: str
    description: str | None
    labels: dict[str, str]
    actions: list[Action]
    excluded: list[str]
    tables: dict[str, TableInfo]  # prod metadata by table name (needed to execute and verify)
    env: str = "dev"  # dev (windowed) or prodcopy (full copy)
    kms_key_name: str | None = None  # prod's default CMEK key, given to the environment dataset

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetPlan:
        return cls(
            **{
                **data,
                "actions": [Action(**a) for a in data["actions"]],
                "tables": {k: TableInfo(**v) for k, v in data["tables"].items()},
            }
        )

    def by_action(self, *kinds: str) -> list[Action]:
        return [a for a in self.actions if a.action in kinds]


def _is_date_column(col: dict[str, Any]) -> bool:
    return col.get("type", "").upper() in DATE_TYPES and col.get("mode", "NULLABLE").upper() != "REPEATED"


def _date_candidates(info: TableInfo) -> list[dict[str, Any]]:
    return [c for c in info.schema if _is_date_column(c)]


def matches_filter(dataset: str, table: str, filters: Sequence[str]) -> bool:
    return not filters or table in filters or f"{dataset}.{table}" in filters


def check_table_filter(filters: Sequence[str], infos: Iterable[DatasetInfo]) -> None:
    """Every entry of the `tables` param must name an existing prod table or view."""
    known = {f"{d.dataset}.{t.table}" for d in infos for t in d.tables}
    short = {key.split(".", 1)[1] for key in known}
    unknown = [f for f in filters if f not in known and f not in short]
    if unknown:
        raise PlanError(f"tables {unknown} are not in the selected prod datasets; known tables: {sorted(known)}")


def _table_action(config: EnvsyncConfig, info: TableInfo, target: str) -> Action:
    override = config.override(info.dataset, info.table)
    base: dict[str, Any] = dict(
        dataset=info.dataset, table=info.table, target_dataset=target, source_rows=info.num_rows
    )
    part = info.partitioning
    part_field = (part or {}).get("field") or ("_PARTITIONTIME" if part else None)
    strategy = override.strategy

    def with_column(name: str, kind: str, reason: str) -> Action:
        column = info.column(name) if name != "_PARTITIONTIME" else {"name": name, "type": "TIMESTAMP"}
        if column is None:
            raise PlanError(
                f"tables.{info.dataset}.{info.table}.date_column: column {name!r} does not exist "
                f"(columns: {[c['name'] for c in info.schema]})"
            )
        if not _is_date_column(column):
            raise PlanError(
                f"tables.{info.dataset}.{info.table}.date_column: column {name!r} has type "
                f"{column['type']}; allowed: {', '.join(DATE_TYPES)}"
            )
        granularity = part["type"] if part and part_field == column["name"] else "DAY"
        return Action(
            **base,
            action=kind,
            reason=reason,
            date_column=column["name"],
            column_type=column["type"].upper(),
            granularity=granularity,
        )

    if strategy == "full_clone":
        return Action(**base, action="full_clone", reason="strategy full_clone set in config")
    if override.date_column:
        if part_field == override.date_column and strategy != "ctas_window":
            return with_column(override.date_column, "clone_window", "partitioned on the configured date column")
        if strategy == "clone_window":
            raise PlanError(
                f"tables.{info.dataset}.{info.table}: strategy clone_window needs the table to be "
                f"partitioned on date_column {override.date_column!r}"
            )
        return with_column(override.date_column, "ctas_window", "date_column set in config")
    if part_field and strategy in ("auto", "clone_window"):
        assert part is not None  # part_field comes from it
        return with_column(part_field, "clone_window", f"partitioned by {part['type']} on {part_field}")
    candidates = _date_candidates(info)
    if part_field and strategy == "ctas_window":
        return with_column(part_field, "ctas_window", "strategy ctas_window set in config")
    if len(candidates) == 1:
        col = candidates[0]["name"]
        if strategy == "clone_window":
            raise PlanError(f"tables.{info.dataset}.{info.table}: strategy clone_window needs a partitioned table")
        return with_column(col, "ctas_window", f"unpartitioned; date column {col} detected")
    if strategy in ("ctas_window", "clone_window"):
        raise PlanError(
            f"tables.{info.dataset}.{info.table}: strategy {strategy} needs date_column "
            f"(date columns: {[c['name'] for c in candidates]})"
        )
    if candidates:
        names = [c["name"] for c in candidates]
        return Action(
            **base,
            action="full_clone",
            reason=f"several date columns {names}: copied whole; set "
            f"tables.{info.dataset}.{info.table}.date_column to window it",
        )
    return Action(**base, action="full_clone", reason="no date column: copied whole")


def _mask_action(config: EnvsyncConfig, info: TableInfo, action: Action, masks: list[ColumnMask]) -> None:
    """Turn a table's copy into a masked CTAS (in place): windowed on the action's date column when it
    has one (dev), else the whole table. Refuses a match key that is missing or masked, and a table
    whose every column is masked without a key (its rows could not be matched to prod's)."""
    where = f"{info.dataset}.{info.table}"
    override = config.override(info.dataset, info.table)
    names = {f["name"].lower(): f["name"] for f in info.schema}
    missing = [k for k in override.key if k.lower() not in names]
    if missing:
        raise PlanError(f"tables.{where}.key: column(s) {missing} do not exist (columns: {list(names.values())})")
    masked = {m.column.lower() for m in masks}
    keyed_masked = [k for k in override.key if k.lower() in masked]
    if keyed_masked:
        raise PlanError(
            f"tables.{where}.key: column(s) {keyed_masked} carry a policy tag of privacy.policy_tags "
            "and are masked; a masked column cannot match rows"
        )
    if not override.key and len(masked) == len(info.schema):
        raise PlanError(
            f"{where}: every column is masked; set tables.{where}.key (unmasked columns that identify "
            "a row) so the verification can match copy and prod rows"
        )
    summary = ", ".join(f"{m.column} ({m.kind}{', policy tag' if m.origin == 'policy_tag' else ''})" for m in masks)
    scope = "the window" if action.date_column else "the whole table"
    if not action.date_column:
        action.column_type = None
    action.reason = (
        f"masked columns {summary}: CREATE TABLE AS SELECT of the masked values of {scope} as of T "
        f"instead of {action.action}; " + action.reason
    )
    action.action = "masked_ctas"
    action.masks = [m.to_dict() for m in masks]
    action.match_key = [names[k.lower()] for k in override.key]


def _note_row_access(action: Action, policies: list[str]) -> None:
    action.row_access_policies = list(policies)
    names = ", ".join(policies)
    if action.action in ("ctas_window", "masked_ctas"):
        action.reason += (
            f"; prod's row access policies ({names}) are NOT carried by a CTAS copy, which holds "
            "only the rows envsync's account may read (grant it a TRUE-filter policy)"
        )
    else:
        action.reason += f"; prod's row access policies ({names}) travel with the clone"


# Partitions prod may lose between T and planning (expiring partitions): the plan's count must stay
# this far under the limit for the trim to skip listing the clone's partitions.
TRIM_MARGIN = 100


def single_trim(action: Action) -> bool:
    """Does the clone's trim fit one DELETE without listing the clone's partitions first? Yes when the
    plan counted prod's partitions outside the window (as of planning, after T) well under 4,000."""
    return action.trim_partitions is not None and action.trim_partitions <= MAX_PARTITIONS_PER_JOB - TRIM_MARGIN


def _estimate(
    action: Action,
    info: TableInfo,
    window_fraction: float,
    window: Window | None = None,
    partition_ids: Sequence[str] | None = None,
) -> None:
    """Estimated bytes billed and BigQuery jobs, from table metadata only (no dry run).

    With the run's window (and prod's partition ids), the jobs count the splits needed to stay under
    4,000 partitions per job: one DELETE per chunk of the partitions outside the window, one INSERT
    per chunk of the window (after a CREATE). A DELETE whose window bound falls inside a partition
    (mid-day for DAY partitions) scans and bills that partition: its share of the table is added.
    """
    verify_rows = info.num_rows if action.action != "clone_window" else int(info.num_rows * window_fraction)
    verify = 2 * max(MIN_BYTES_BILLED_PER_TABLE, verify_rows * BYTES_PER_DATE_VALUE)
    bounds = window.bounds(action.column_type) if window and action.column_type else None
    spec = spec_of(info)
    if action.action == "clone_window":
        trims, partial = 1, 0
        if (
            bounds
            and spec is not None
            and spec.unit != "RANGE"
            and spec.column.lower() == (action.date_column or "").lower()
        ):
            if partition_ids is not None:
                chunks = id_chunks(partition_ids, spec, keep=outside_window(spec, *bounds))
                trims, action.trim_partitions = len(chunks), sum(c.partitions for c in chunks)
            notes = partial_partitions(*bounds, spec.unit)
            if notes:
                partitions = len(partition_ids) if partition_ids else partitions_between(*bounds, spec.unit)
                per_partition = info.num_bytes // max(1, partitions)
                partial = len(notes) * per_partition
                action.billing_note = (
                    "; ".join(notes) + ": the DELETE scans and bills the partially kept "
                    f"partition{'s' if len(notes) > 1 else ''} (included in the estimate)"
                )
        # clone, list the clone's partitions (unless the plan's count fits one DELETE), delete outside
        # the window (per chunk), verify, swap
        listing = 0 if single_trim(action) else 1
        action.est_bytes_billed, action.est_jobs = verify + partial, 3 + listing + trims
    elif action.action == "ctas_window":
        chunks = window_chunks_on(spec, action.date_column, *bounds) if bounds else [Chunk(None, None, 0)]
        single = len(chunks) == 1 and not (spec is not None and spec.ingestion_time)
        copy_jobs = 1 if single else 1 + len(chunks)  # CTAS, or CREATE + one INSERT per chunk
        action.est_bytes_billed, action.est_jobs = info.num_bytes + verify, copy_jobs + 2  # + verify, swap
    elif action.action == "masked_ctas":
        # reads the window's partitions (partitioned on the window column: pruned) or the whole table
        read = info.num_bytes
        if (
            bounds
            and spec is not None
            and spec.unit != "RANGE"
            and partition_ids
            and spec.column.lower() == (action.date_column or "").lower()
        ):
            outside = outside_window(spec, *bounds)
            inside = [p for p in partition_ids if p not in SPECIAL_IDS and not outside(p)]
            partial = len(partial_partitions(*bounds, spec.unit))
            read = info.num_bytes * min(len(partition_ids), len(inside) + partial) // max(1, len(partition_ids))
        if bounds:
            chunks = window_chunks_on(spec, action.date_column, *bounds)
        elif spec is not None and partition_ids is not None:
            chunks = id_chunks(partition_ids, spec)
        else:
            chunks = [Chunk(None, None, 0)]
        single = len(chunks) == 1 and not (spec is not None and spec.ingestion_time)
        copy_jobs = 1 if single else 1 + len(chunks)
        listing = 1 if not bounds and spec is not None else 0  # execution lists prod's partitions
        masked_check = 2 * max(MIN_BYTES_BILLED_PER_TABLE, read)  # copy and prod, masked and matching columns
        action.est_bytes_billed = max(MIN_BYTES_BILLED_PER_TABLE, read) + verify + masked_check
        action.est_jobs = copy_jobs + listing + 3  # + verify rows, verify masks, swap
        action.billing_note = (
            f"masked copy: bills what it reads of prod (est. {read:,} bytes) and the check of "
            "its masked columns against prod"
        )
    elif action.action == "full_clone":
        action.est_bytes_billed, action.est_jobs = verify, 3  # clone, verify, swap
    elif action.action == "view":
        action.est_bytes_billed, action.est_jobs = 0, 2  # create, probe (LIMIT 0)


def _view_action(config: EnvsyncConfig, table: TableInfo, target: str, env: str) -> Action:
    """A view re-created on the environment's datasets in the environment's project."""
    dataset_map = {ds: config.env_dataset(env, ds) for ds in config.prod.datasets}
    target_project = config.project_of(env)
    rewrite = rewrite_view_sql(table.view_query or "", dataset_map, config.prod_project, target_project=target_project)
    reason = "re-created on the dev datasets"
    if rewrite.other_projects:
        reason += f"; reads {', '.join(rewrite.other_projects)} of another project: left as it is"
    return Action(
        dataset=table.dataset,
        table=table.table,
        target_dataset=target,
        action="view",
        reason=reason,
        view_sql=rewrite.sql,
        depends_on=_dependencies(rewrite, target_project),
        other_projects=rewrite.other_projects,
    )


def _dependencies(rewrite: ViewRewrite, project: str) -> list[str]:
    """`dataset.table` of every object of `project` (or unqualified) a rewritten view reads."""
    return sorted({f"{db}.{name}" for catalog, db, name in rewrite.references if db and catalog in ("", project)})


def plan_dataset(
    config: EnvsyncConfig,
    info: DatasetInfo,
    *,
    existing: Sequence[str] | None,
    tables_filter: Sequence[str] = (),
    window_fraction: float = 1.0,
    env: str = "dev",
    window: Window | None = None,
    partition_ids: dict[str, list[str]] | None = None,
) -> DatasetPlan:
    """Decide the action for every object of one prod dataset and the env-only objects to drop.

    env "dev" copies the window (per-table strategy); env "prodcopy" clones every table whole.
    `existing`: the names in the environment's dataset, listed in the environment's project (None
    when that dataset does not exist yet).
    """
    target = config.env_dataset(env, info.dataset)
    actions: list[Action] = []
    excluded: list[str] = []
    for table in info.tables:
        if not matches_filter(info.dataset, table.table, tables_filter):
            continue
        if config.override(info.dataset, table.table).exclude:
            excluded.append(table.table)
            continue
        if table.kind == "VIEW":
            action = _view_action(config, table, target, env)
        elif table.kind in ("TABLE", "CLONE"):
            if env != "dev":
                action = Action(
                    dataset=info.dataset,
                    table=table.table,
                    target_dataset=target,
                    action="full_clone",
                    reason="full copy as of T",
                    source_rows=table.num_rows,
                )
            else:
                action = _table_action(config, table, target)
            masks = column_masks(config, table, env)
            if masks:
                _mask_action(config, table, action, masks)
            action.unmasked_tagged = unmasked_tagged(table, masks)
        else:
            action = Action(
                dataset=info.dataset,
                table=table.table,
                target_dataset=target,
                action="skip",
                reason=f"{table.kind.lower()} objects are not copied",
            )
        if table.row_access_policies and action.action in ("clone_window", "full_clone", "ctas_window", "masked_ctas"):
            _note_row_access(action, table.row_access_policies)
        _estimate(
            action, table, window_fraction, window if env == "dev" else None, (partition_ids or {}).get(table.table)
        )
        actions.append(action)
    if not tables_filter and existing is not None:
        prod_names = {t.table for t in info.tables if t.table not in excluded}
        keep = set(config.environments.dev.keep) if env == "dev" else set()
        for name in existing:
            if name in prod_names or name in keep or f"{info.dataset}.{name}" in keep:
                continue
            why = "excluded in config" if name in excluded else f"exists only in {env}"
            if name.endswith(STAGE_SUFFIX):
                why = "leftover staging table of an earlier run"
            actions.append(
                Action(dataset=info.dataset, table=name, target_dataset=target, action="drop", reason=why, est_jobs=1)
            )
    return DatasetPlan(
        dataset=info.dataset,
        target_dataset=target,
        location=info.location,
        description=info.description,
        labels=info.labels,
        actions=actions,
        excluded=excluded,
        tables={t.table: t for t in info.tables},
        env=env,
        kms_key_name=info.kms_key_name,
    )


def order_views(views: list[Action]) -> list[Action]:
    """Views in creation order: a view comes after the views it reads (in any dataset).

    `depends_on` holds `target_dataset.table` references; those that are not views are ignored.
    """

    def key(view: Action) -> str:
        return f"{view.target_dataset}.{view.table}"

    by_key = {key(v): v for v in views}
    done: list[Action] = []
    seen: set[str] = set()

    def visit(view: Action, path: tuple[str, ...]) -> None:
        if key(view) in seen:
            return
        if key(view) in path:
            raise PlanError(f"views {' -> '.join(path + (key(view),))} depend on each other in a cycle")
        for dep in view.depends_on:
            if dep in by_key:
                visit(by_key[dep], path + (key(view),))
        seen.add(key(view))
        done.append(view)

    for view in sorted(views, key=key):
        visit(view, ())
    return done
