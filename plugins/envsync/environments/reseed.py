"""Destroy and re-seed qa, staging and on-demand test environments on prod's current schemas.

1. Plan: discover prod, find the seeds, and check every seed against prod's current schema (the
   contract: columns, types, modes, non-null partition column) before anything is dropped. A mismatch
   fails the run naming dataset, table and column, and every environment stays exactly as it was.
2. Per environment and dataset: drop the dataset, re-create it with prod's metadata, create every
   table with prod's definition (columns and modes, partitioning, clustering, description, labels),
   fill it from its seed or its masked prod sample (tables without either stay empty), re-create the
   views on the same environment, and record a checksum per table computed in BigQuery.

Prod's schemas and samples are read in prod's project; each environment's datasets are written in
its own project (`config.project_of(env)`), and its views read that project only.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from envsync.bigquery.actions import Action
from envsync.bigquery.datasets import env_labels, recreate_env_dataset
from envsync.bigquery.ddl import (
    carry_column_options,
    cluster_clause,
    column_list,
    columns_sql,
    insert_columns,
    is_ingestion_time,
    partition_clause,
)
from envsync.bigquery.discovery import TYPE_ALIASES, DatasetInfo, TableInfo
from envsync.bigquery.jobs import JobRunner, JobStats, run_recorded
from envsync.bigquery.partitions import chunk_params, chunk_predicate, describe, id_chunks, spec_of
from envsync.bigquery.verify import compare_schema, partition_filter
from envsync.bigquery.views import ViewRewrite, rewrite_view_sql, view_dependencies
from envsync.core.guard import TableRef
from envsync.core.identifiers import quote_column
from envsync.core.sqltemplates import render
from envsync.environments.seeds import SeedError, find_seeds, load_seed, sample_predicate, sample_select, sample_spec
from envsync.observe.report import result_row
from envsync.sync.plan import order_views
from envsync.sync.run import DETERMINISTIC_ERRORS, create_view, partition_ids

if TYPE_CHECKING:
    from envsync.core.config import EnvsyncConfig

log = logging.getLogger(__name__)

SEEDED_ENVS = ("qa", "staging")


class ContractError(ValueError):
    """Seeds do not fit prod's current schema; the message names dataset, table and column."""


# failures a retry of the same run cannot fix
DETERMINISTIC: tuple[type[BaseException], ...] = (ContractError, SeedError, PermissionError, *DETERMINISTIC_ERRORS)


@dataclass
class ReseedUnit:
    env: str  # qa | staging | test
    dataset: str  # prod dataset
    target_dataset: str
    test_name: str | None = None
    # the unit's name in the run (its task and results file): the target dataset, named with its project
    # once environments live in several projects (qa and staging may then both hold a dataset `sales`)
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.target_dataset


@dataclass
class TableSource:
    table: str
    source: str  # seed | prod_sample | empty | view | skip
    seed_sql: str | None = None
    reason: str = ""
    view_sql: str | None = None  # prod's view SQL (rewritten per environment at execution)
    description: str | None = None  # prod's description of a view (tables take theirs from the DDL)


def _normal(field_: dict[str, Any]) -> tuple[str, str, bool, tuple[Any, ...]]:
    kind = field_["type"].upper()
    return (
        field_["name"].lower(),
        TYPE_ALIASES.get(kind, kind),
        (field_.get("mode") or "").upper() == "REPEATED",
        tuple(_normal(f) for f in field_.get("fields") or []),
    )


def schema_contract(
    dataset: str,
    table: str,
    prod: list[dict[str, Any]],
    seed: list[dict[str, Any]],
    *,
    schema_name: str = "prod",
    ahead: frozenset[str] = frozenset(),
) -> list[str]:
    """Differences between prod's columns (or an environment's migrated schema, `schema_name`) and a
    seed's result columns (names, types, repeated, nested). `ahead`: columns (lowercase) that migrations
    the environment does not have yet add; a seed may already yield them (they are not inserted)."""
    where = f"{dataset}.{table}"
    prod_by = {f["name"].lower(): f for f in prod}
    seed_by = {f["name"].lower(): f for f in seed}
    problems = []
    for name, column in prod_by.items():
        if name not in seed_by:
            problems.append(f"{where}: column {column['name']} is in {schema_name} but not in the seed")
            continue
        a, b = _normal(column), _normal(seed_by[name])
        if a[1] != b[1] or a[2] != b[2]:
            problems.append(
                f"{where}: column {column['name']} is {'ARRAY<' if a[2] else ''}{a[1]}{'>' if a[2] else ''} "
                f"in {schema_name} "
                f"but {'ARRAY<' if b[2] else ''}{b[1]}{'>' if b[2] else ''} in the seed"
            )
        elif a[3] != b[3]:
            problems.append(
                f"{where}: column {column['name']} has other nested fields in the seed than in {schema_name}"
            )
    problems += [
        f"{where}: column {seed_by[n]['name']} is in the seed but not in {schema_name}"
        for n in seed_by
        if n not in prod_by and n not in ahead
    ]
    return problems


def _not_null_columns(info: TableInfo) -> list[str]:
    names = [f["name"] for f in info.schema if (f.get("mode") or "").upper() == "REQUIRED"]
    part = (info.partitioning or {}).get("field")
    if part and part not in names:
        names.append(part)
    return names


class Reseeder:
    """Plans and executes reseeds; every query goes through the guarded JobRunner."""

    def __init__(self, config: EnvsyncConfig, runner: JobRunner, cut: dt.datetime):
        self.config = config
        self.runner = runner
        self.bq = runner.bq
        self.prod_project = config.prod_project
        self.cut = cut
        self._seed_schemas: dict[str, dict[str, list[dict[str, Any]]]] = {}

    # ------------------------------------------------------------------------------ planning
    def sources(self, info: DatasetInfo) -> list[TableSource]:
        seeds = find_seeds(self.config, info.dataset)
        known = {t.table for t in info.tables}
        unknown = sorted(set(seeds) - known)
        if unknown:
            raise ContractError(
                f"seeds {[f'{info.dataset}/{t}.sql' for t in unknown]} name tables that are not in prod "
                f"{info.dataset} (tables: {sorted(known)})"
            )
        seeded_views = sorted(t.table for t in info.tables if t.kind != "TABLE" and t.table in seeds)
        if seeded_views:
            raise ContractError(
                f"seeds {[f'{info.dataset}/{t}.sql' for t in seeded_views]} name views or other "
                "non-table objects of prod; only tables are seeded"
            )
        out = []
        for table in info.tables:
            override = self.config.override(info.dataset, table.table)
            if override.exclude:
                out.append(TableSource(table.table, "skip", reason="exclude: true in config"))
            elif table.kind == "VIEW":
                out.append(
                    TableSource(
                        table.table,
                        "view",
                        reason="re-created on the environment",
                        view_sql=table.view_query or "",
                        description=table.description,
                    )
                )
            elif table.kind not in ("TABLE", "CLONE"):
                out.append(TableSource(table.table, "skip", reason=f"{table.kind.lower()} objects are not copied"))
            elif override.source == "prod_sample":
                why = "masked, deterministic prod sample" + (
                    " (config wins over the seed file)" if table.table in seeds else ""
                )
                out.append(TableSource(table.table, "prod_sample", reason=why))
            elif table.table in seeds:
                try:
                    sql = load_seed(seeds[table.table])
                except SeedError as error:
                    raise ContractError(str(error)) from None
                out.append(
                    TableSource(table.table, "seed", seed_sql=sql, reason=f"seed {info.dataset}/{table.table}.sql")
                )
            else:
                out.append(TableSource(table.table, "empty", reason="no seed: created empty with prod's schema"))
        return out

    def check_contract(
        self,
        info: DatasetInfo,
        sources: list[TableSource],
        stats: JobStats,
        *,
        migrated: dict[str, list[dict[str, Any]]] | None = None,
        schema_name: str = "prod",
        ahead: frozenset[str] = frozenset(),
        env: str = "",
    ) -> list[str]:
        """Every seed against prod's current schema, or against an environment's migrated schema
        (`migrated`: `dataset.table` -> fields, where migrations changed it); prod samples against
        their config. `ahead`: `dataset.table.column` that migrations env lacks add. No writes."""
        problems: list[str] = []
        tables = {t.table: t for t in info.tables}
        for src in sources:
            prod = tables[src.table]
            if migrated is not None and f"{info.dataset}.{src.table}" in migrated:
                from dataclasses import replace

                prod = replace(prod, schema=migrated[f"{info.dataset}.{src.table}"])
            if src.source == "prod_sample":
                try:
                    sample_select(self.config, tables[src.table], self.config.override(info.dataset, src.table))
                except SeedError as error:
                    problems.append(str(error))
            if src.source != "seed":
                continue
            seed_schema = self._seed_schema(info.dataset, src, stats)
            columns = frozenset(
                c.rpartition(".")[2].lower() for c in ahead if c.rpartition(".")[0] == f"{info.dataset}.{src.table}"
            )
            found = [
                f"{env}: {p}" if env else p
                for p in schema_contract(
                    info.dataset, src.table, prod.schema, seed_schema, schema_name=schema_name, ahead=columns
                )
            ]
            problems += found
            required = [c for c in _not_null_columns(prod) if c.lower() in {f["name"].lower() for f in seed_schema}]
            if required and not found:
                checks = ", ".join(f"countif({quote_column(c)} is null) as {quote_column(c)}" for c in required)
                row = next(
                    iter(
                        self.runner.run(
                            render("reseed/seed_nulls", checks=checks, seed=src.seed_sql or ""),
                            key=("contract_nulls", env, info.dataset, src.table),
                            stats=stats,
                        ).result()
                    )
                )
                for column in required:
                    if row[column]:
                        why = (
                            "is the partitioning column"
                            if column == (prod.partitioning or {}).get("field")
                            else "is REQUIRED in prod"
                        )
                        problems.append(
                            f"{env + ': ' if env else ''}{info.dataset}.{src.table}: column {column} "
                            f"{why} but the seed has {row[column]} null value(s)"
                        )
        return problems

    def _seed_schema(self, dataset: str, src: TableSource, stats: JobStats) -> list[dict[str, Any]]:
        """The columns a seed yields (a LIMIT 0 query), once per seed and run."""
        cache = self._seed_schemas
        if src.table not in cache.setdefault(dataset, {}):
            job = self.runner.run(
                render("reseed/seed_schema", seed=src.seed_sql or ""), key=("contract", dataset, src.table), stats=stats
            )
            cache[dataset][src.table] = [f.to_api_repr() for f in job.result().schema]
        return cache[dataset][src.table]

    # ----------------------------------------------------------------------------- execution
    def target(self, unit: ReseedUnit, table: str) -> TableRef:
        """Table `table` of the unit's dataset, in its environment's project."""
        return TableRef(self.config.project_of(unit.env), unit.target_dataset, table)

    def _table(
        self, unit: ReseedUnit, info: TableInfo, src: TableSource, stats: JobStats, defer_seed: bool = False
    ) -> None:
        """Create the table with prod's definition and fill it. A prod sample over more than 4,000
        partitions (https://cloud.google.com/bigquery/quotas#partitioned_tables) and any table that
        is ingestion-time partitioned (CTAS cannot create one) are CREATE TABLE + INSERT(s). Prod's
        column descriptions, default values and policy tags are then carried over (ddl.carry_column_options);
        a table that cannot keep its policy tags is dropped and the table fails."""
        target = self.target(unit, info.table)
        key = (unit.target_dataset, info.table)
        ddl = dict(
            target=target.sql,
            columns=columns_sql(info),
            partition_by=partition_clause(info),
            cluster_by=cluster_clause(info),
        )
        ingestion = is_ingestion_time(info)
        if src.source == "empty" or (src.source == "seed" and defer_seed):
            self.runner.run(render("reseed/create_empty_table", **ddl), key=key + ("create",), stats=stats)
        elif src.source == "seed" and not ingestion:
            self.runner.run(
                render("reseed/create_seeded_table", **ddl, column_list=column_list(info), seed=src.seed_sql or ""),
                key=key + ("seed",),
                stats=stats,
            )
        elif src.source == "seed":
            self.runner.run(render("reseed/create_empty_table", **ddl), key=key + ("create",), stats=stats)
            self.runner.run(
                render("reseed/insert_seed", target=target.sql, column_list=column_list(info), seed=src.seed_sql or ""),
                key=key + ("seed",),
                stats=stats,
            )
        else:
            self._sample(unit, info, target, ddl, stats)
        try:
            carry_column_options(self.bq, target, info.schema)
        except Exception:
            self._drop(target)
            raise
        table = self.bq.client.get_table(target.api)
        problems = compare_schema(str(target), info.schema, [f.to_api_repr() for f in table.schema])
        if problems:
            raise ContractError("; ".join(problems))
        table.description = info.description
        table.labels = dict(info.labels)
        self.bq.update_table(table, ["description", "labels"])

    def _sample(
        self, unit: ReseedUnit, info: TableInfo, target: TableRef, ddl: dict[str, str], stats: JobStats
    ) -> None:
        key = (unit.target_dataset, info.table)
        override = self.config.override(unit.dataset, info.table)
        select, params = sample_select(self.config, info, override, unit.env)
        spec = sample_spec(self.config, override)
        source = TableRef(self.prod_project, unit.dataset, info.table)
        parts = spec_of(info)
        chunks = id_chunks(partition_ids(self.runner, source, key, stats), parts) if parts is not None else []
        sample = dict(
            select_list=select,
            source=source.sql,
            sample_predicate=sample_predicate(spec.column),
            keep_all=partition_filter(info),
        )
        params = {**params, "cut": self.cut}
        if len(chunks) <= 1 and not is_ingestion_time(info):
            self.runner.run(
                render("reseed/create_sampled_table", **ddl, **sample),
                key=key + ("sample",),
                params=params,
                stats=stats,
            )
            return
        if not chunks:
            chunks = id_chunks([], parts) if parts else []
        log.info(
            "%s: creating the table, then sampling prod in %d INSERT job(s)%s: %s",
            target,
            max(1, len(chunks)),
            " (ingestion-time partitioned: CTAS cannot create it)" if is_ingestion_time(info) else "",
            describe(chunks),
        )
        self.runner.run(render("reseed/create_empty_table", **ddl), key=key + ("create",), stats=stats)
        prefix = "_PARTITIONTIME, " if is_ingestion_time(info) else ""
        for index, chunk in enumerate(chunks):
            sql = render(
                "reseed/insert_sample",
                target=target.sql,
                insert_columns=insert_columns(info),
                **{**sample, "select_list": prefix + select},
                chunk=chunk_predicate(parts.column, chunk) if parts else "true",
            )
            self.runner.run(
                sql, key=key + ("sample", str(index)), params={**params, **chunk_params(chunk)}, stats=stats
            )

    def _drop(self, target: TableRef) -> None:
        try:
            self.bq.delete_table(target)
        except Exception as error:  # keep reporting the original failure
            log.error("could not drop %s after a failure: %s", target, error)

    def checksum(self, unit: ReseedUnit, table: str, stats: JobStats) -> dict[str, Any]:
        ref = self.target(unit, table)
        # reseeded tables are created by envsync's DDL without require_partition_filter: no filter needed
        row = next(
            iter(
                self.runner.run(
                    render("common/table_checksum", target=ref.sql, keep_all="true"),
                    key=(unit.target_dataset, table, "checksum"),
                    stats=stats,
                ).result()
            )
        )
        return {"rows": int(row["row_count"]), "checksum": str(row["checksum"])}

    def execute(
        self,
        unit: ReseedUnit,
        info: DatasetInfo,
        sources: list[TableSource],
        *,
        seed_version: str,
        expires: dt.datetime | None = None,
        defer_seeds: bool = False,
    ) -> list[dict[str, Any]]:
        """Re-create one environment dataset. `defer_seeds`: the environment has pending schema
        migrations, so seeded tables are created empty with prod's definition here and filled from
        their seeds once the migrations ran (`fill_seeds`), on the migrated schema."""
        extra = {"envsync-seed-version": seed_version}
        expiration_ms = None
        if expires is not None:
            extra["envsync-expires"] = str(int(expires.timestamp()))
            extra["envsync-test-env"] = unit.test_name or ""
            expiration_ms = int((expires - dt.datetime.now(dt.UTC)).total_seconds() * 1000)
        recreate_env_dataset(
            self.bq,
            f"{self.config.project_of(unit.env)}.{unit.target_dataset}",
            location=info.location,
            description=info.description,
            labels=env_labels(info.labels, unit.env, info.dataset, **extra),
            table_expiration_ms=expiration_ms,
            kms_key_name=info.kms_key_name,
        )
        tables = {t.table: t for t in info.tables}
        fill = [src for src in sources if src.source in ("seed", "prod_sample", "empty")]
        with ThreadPoolExecutor(max_workers=self.config.sync.max_concurrent_jobs) as pool:
            results = list(
                pool.map(
                    lambda src: self._run(
                        unit,
                        src,
                        lambda s: self._fill(unit, tables[src.table], src, s, defer_seeds and src.source == "seed"),
                    ),
                    fill,
                )
            )
        for src in sources:
            if src.source == "skip":
                results.append({**self._result(unit, src), "status": "skipped"})
        return results

    def _fill(
        self, unit: ReseedUnit, info: TableInfo, src: TableSource, stats: JobStats, defer_seed: bool = False
    ) -> dict[str, Any]:
        self._table(unit, info, src, stats, defer_seed)
        if defer_seed:
            return {"rows": 0, "reason": f"{src.reason}: created empty, filled after the schema migrations"}
        return self.checksum(unit, info.table, stats)

    def fill_seeds(self, unit: ReseedUnit, sources: list[TableSource], *, fit: bool = False) -> list[dict[str, Any]]:
        """Fill the tables `execute(defer_seeds=True)` left empty from their seeds, on the schema the
        migrations gave them (the seed contract checked that the seed yields those columns). `fit`:
        the migrations did not all run again, so the table's schema may lack columns the seed yields
        or keep ones it no longer yields: insert the columns both have (the others stay NULL; a
        REQUIRED one the seed lacks fails that table, naming it)."""
        from envsync.core.identifiers import quote_column

        def work(src: TableSource, stats: JobStats) -> dict[str, Any]:
            target = self.target(unit, src.table)
            columns = [f.name for f in self.bq.client.get_table(target.api).schema]
            if fit:
                yielded = {f["name"].lower() for f in self._seed_schema(unit.dataset, src, stats)}
                columns = [c for c in columns if c.lower() in yielded]
            names = ", ".join(quote_column(c) for c in columns)
            self.runner.run(
                render("reseed/insert_seed", target=target.sql, column_list=names, seed=src.seed_sql or ""),
                key=(unit.target_dataset, src.table, "seed_migrated"),
                stats=stats,
            )
            return self.checksum(unit, src.table, stats)

        return [
            self._run(unit, src, lambda stats, src=src: work(src, stats)) for src in sources if src.source == "seed"
        ]

    def views(self, work: list[tuple[ReseedUnit, list[TableSource]]]) -> list[dict[str, Any]]:
        """Re-create every view of every unit on its environment, after all tables, in dependency order
        (per environment: a view reads only its own environment). Prod's references move to the
        environment's datasets in its project; a reference to a third project is left as it is and
        named in the view's warnings."""
        groups: dict[tuple[str, str | None], list[tuple[ReseedUnit, list[TableSource]]]] = {}
        for unit, sources in work:
            groups.setdefault((unit.env, unit.test_name), []).append((unit, sources))
        results = []
        for (env, test_name), units in groups.items():
            mapping = self.dataset_map(env, test_name)
            actions: list[Action] = []
            found: dict[str, tuple[ReseedUnit, TableSource, ViewRewrite]] = {}
            for unit, sources in units:
                for src in sources:
                    if src.source != "view":
                        continue
                    rewrite = rewrite_view_sql(
                        src.view_sql or "", mapping, self.prod_project, target_project=self.config.project_of(env)
                    )
                    actions.append(
                        Action(
                            unit.dataset,
                            src.table,
                            unit.target_dataset,
                            "view",
                            src.reason,
                            view_sql=rewrite.sql,
                            depends_on=sorted(view_dependencies(rewrite.sql)),
                        )
                    )
                    found[f"{unit.target_dataset}.{src.table}"] = (unit, src, rewrite)
            for action in order_views(actions):
                unit, src, rewrite = found[f"{action.target_dataset}.{action.table}"]
                row = self._result(unit, src)
                if rewrite.other_projects:
                    note = f"reads {', '.join(rewrite.other_projects)} of another project: left as it is"
                    log.warning("view %s %s", row["target"], note)
                    row["warnings"] = [note]
                results.append(
                    run_recorded(
                        row,
                        lambda stats, u=unit, s=src, r=rewrite: self._view(u, s, r, stats),  # type: ignore[misc]  # defaults bind the loop
                        deterministic=DETERMINISTIC,
                    )
                )
        return results

    def dataset_map(self, env: str, test_name: str | None = None) -> dict[str, str]:
        """Prod dataset -> the environment's dataset of the same data."""
        return {ds: self.config.env_dataset(env, ds, test_name) for ds in self.config.prod.datasets}

    def _view(self, unit: ReseedUnit, src: TableSource, rewrite: ViewRewrite, stats: JobStats) -> None:
        """Create one rewritten view on the unit's environment (reading only it, and third projects)."""
        target = self.target(unit, src.table)
        create_view(
            self.runner,
            target,
            rewrite.sql,
            allowed_prefix=self.config.env_dataset(unit.env, "", unit.test_name),
            datasets=list(self.dataset_map(unit.env, unit.test_name).values()),
            other_projects=rewrite.other_projects,
            env=unit.env,
            key=(unit.target_dataset, src.table),
            stats=stats,
            description=src.description,
        )

    def _result(self, unit: ReseedUnit, src: TableSource) -> dict[str, Any]:
        name = self.config.qualified(self.config.project_of(unit.env), unit.target_dataset, src.table)
        return result_row(name, name, src.source, src.reason, env=unit.env, checksum=None)

    def _run(self, unit: ReseedUnit, src: TableSource, work: Any) -> dict[str, Any]:
        return run_recorded(self._result(unit, src), work, deterministic=DETERMINISTIC)


def reseed_privacy(
    config: EnvsyncConfig, units: list[ReseedUnit], infos: dict[str, DatasetInfo], sources: dict[str, list[TableSource]]
) -> dict[str, Any]:
    """The privacy report of a reseed: per environment, the masked columns of every prod sample and its
    policy-tagged columns that reach the environment unmasked (seeded and empty tables hold no prod rows)."""
    from envsync.observe.report import merge_privacy, privacy_of
    from envsync.privacy.masking import MaskError, column_masks, unmasked_tagged

    parts = []
    for unit in units:
        tables = {t.table: t for t in infos[unit.dataset].tables}
        for src in sources[unit.dataset]:
            if src.source != "prod_sample":
                continue
            info = tables[src.table]
            try:
                masks = column_masks(config, info, unit.env)
            except MaskError as error:
                raise SeedError(str(error)) from None
            target = config.qualified(config.project_of(unit.env), unit.target_dataset, src.table)
            parts.append(
                privacy_of(unit.env, target, target, [m.to_dict() for m in masks], unmasked_tagged(info, masks))
            )
    return merge_privacy(parts)


def units_for(config: EnvsyncConfig, envs: list[str], datasets: list[str], test_name: str | None) -> list[ReseedUnit]:
    """One unit per environment and prod dataset (a test environment's alone when `test_name` is set)."""

    def unit(env: str, ds: str, test: str | None = None) -> ReseedUnit:
        target = config.env_dataset(env, ds, test)
        return ReseedUnit(env, ds, target, test, name=config.qualified(config.project_of(env), target))

    if test_name:
        return [unit("test", ds, test_name) for ds in datasets]
    return [unit(env, ds) for env in envs for ds in datasets]


def sources_to_dict(sources: list[TableSource]) -> list[dict[str, Any]]:
    return [asdict(s) for s in sources]


def sources_from_dict(data: list[dict[str, Any]]) -> list[TableSource]:
    return [TableSource(**s) for s in data]
