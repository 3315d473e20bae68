"""Rewrite view SQL so it reads an environment's datasets instead of prod's (sqlglot, BigQuery dialect).

Parsing, not regex: every table reference is found (backticked `project.dataset.table`,
`project`.dataset.table, dataset.table, references inside CTEs and subqueries, and
dataset.INFORMATION_SCHEMA.* views) and its dataset renamed when it is one of the mapped datasets.

When the environment lives in another project than prod (`target_project`), every mapped reference is
written `target_project.dataset.table`, so no reference to prod's project survives in it; references
to a third project are left as they are and reported (`other_projects`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ViewRewrite:
    sql: str
    references: list[tuple[str, str, str]]  # (project or "", dataset, table) after rewriting
    unmapped: list[str] = field(default_factory=list)  # datasets referenced that are not mapped
    # `project.dataset` of references to a project that is neither the source's nor the target's
    other_projects: list[str] = field(default_factory=list)


def _parts(table) -> tuple[str, str, str]:
    return table.catalog or "", table.db or "", table.name or ""


def rewrite_view_sql(
    sql: str, dataset_map: Mapping[str, str], project: str, target_project: str | None = None
) -> ViewRewrite:
    """Rename datasets per `dataset_map` in every reference of `project` (or unqualified by project);
    with a `target_project` other than `project`, mapped references also move to that project."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="bigquery")
    except sqlglot.errors.ParseError as error:
        raise ValueError(f"cannot parse view SQL: {error}") from None
    cte_names = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    references: list[tuple[str, str, str]] = []
    unmapped: list[str] = []
    others: list[str] = []
    moved = target_project is not None and target_project != project
    for table in tree.find_all(exp.Table):
        catalog, db, name = _parts(table)
        if not db and name in cte_names:
            continue
        if not db and "." in name:  # `dataset.INFORMATION_SCHEMA.X` kept as one identifier
            db, _, name = name.partition(".")
        if catalog and catalog != project:
            unmapped.append(f"{catalog}.{db}")
            if catalog != target_project:
                others.append(f"{catalog}.{db}")
            references.append((catalog, db, name))
            continue
        alias = table.args.get("alias")
        if alias is not None and "." in alias.name:
            # sqlglot names a fully backticked `p.d.INFORMATION_SCHEMA.X` after its whole path;
            # BigQuery's implicit alias is the last part.
            table.set("alias", exp.TableAlias(this=exp.to_identifier(alias.name.split(".")[-1])))
        if db in dataset_map:
            table.set("db", exp.to_identifier(dataset_map[db]))
            db = dataset_map[db]
            if moved:
                table.set("catalog", exp.to_identifier(target_project))
                catalog = target_project or ""
        elif db:
            unmapped.append(f"{catalog}.{db}" if moved and catalog else db)
        references.append((catalog, db, name))
    return ViewRewrite(tree.sql(dialect="bigquery"), references, sorted(set(unmapped)), sorted(set(others)))


def view_dependencies(sql: str) -> set[str]:
    """Every `dataset.table` a view reads (creation order puts the views among them first)."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="bigquery")
    return {f"{t.db}.{t.name}" for t in tree.find_all(exp.Table) if t.db}
