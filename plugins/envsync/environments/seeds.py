"""Versioned seed data for qa, staging and test environments, and masked prod samples.

Seeds live in the repository as `sql/seeds/<dataset>/<table>.sql`: one SELECT (it may start with
WITH) that yields exactly the rows of that table, with prod's column names and types, built from
literals and generate_array only (no table reads, nothing random). The seed version is a hash of
every seed file (path and content), plus the git revision when the seeds are in a git checkout.

Tables configured with `source: prod_sample` are instead filled from prod as of the run's cut T:
a deterministic sample (`mod(abs(farm_fingerprint(cast(key as string))), modulo) = 0`), children
following their sampled parents, and per-column masking applied inside BigQuery SQL.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envsync.core.identifiers import quote_column, validate_identifier

if TYPE_CHECKING:
    from envsync.bigquery.discovery import TableInfo
    from envsync.core.config import EnvsyncConfig, TableOverride

_NON_DETERMINISTIC = (
    "RAND",
    "CURRENT_DATE",
    "CURRENT_TIMESTAMP",
    "CURRENT_DATETIME",
    "CURRENT_TIME",
    "GENERATE_UUID",
    "UUID",
    "SESSION_USER",
)


class SeedError(ValueError):
    """A seed file is not a deterministic, self-contained SELECT, or a masking rule cannot apply."""


def seeds_root(config: EnvsyncConfig) -> Path:
    """The seeds' folder: `seeds.dir`, absolute or relative to ENVSYNC_HOME (envsync.core.paths)."""
    from envsync.core.paths import under_home

    return under_home(config.seeds.dir)


def find_seeds(config: EnvsyncConfig, dataset: str) -> dict[str, Path]:
    folder = seeds_root(config) / dataset
    if not folder.is_dir():
        return {}
    seeds = {}
    for path in sorted(folder.glob("*.sql")):
        validate_identifier("table", path.stem)
        seeds[path.stem] = path
    return seeds


def seed_version(config: EnvsyncConfig) -> dict[str, Any]:
    """{"version": content hash, "git": revision or None, "dirty": bool, "files": n}."""
    root = seeds_root(config)
    digest = hashlib.sha256()
    files = sorted(root.rglob("*.sql")) if root.is_dir() else []
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    git = dirty = None
    try:
        git = (
            subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--", "."],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": digest.hexdigest()[:16], "git": git, "dirty": dirty, "files": len(files)}


def load_seed(path: Path) -> str:
    """The seed's SELECT, checked: one statement, a query, no table reads, nothing non-deterministic."""
    import sqlglot
    from sqlglot import exp

    text = path.read_text(encoding="utf-8")
    sql = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip().rstrip(";")
    where = f"seed {path.parent.name}/{path.name}"
    try:
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    except sqlglot.errors.ParseError as error:
        raise SeedError(f"{where} is not valid BigQuery SQL: {error}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise SeedError(f"{where} must be exactly one SELECT statement")
    tree = statements[0]
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    tables = [t.sql(dialect="bigquery") for t in tree.find_all(exp.Table) if t.db or t.name not in ctes]
    if tables:
        raise SeedError(f"{where} reads tables {tables}; seeds must be self-contained data")
    for func in tree.find_all(exp.Func):
        name = (func.sql_name() if hasattr(func, "sql_name") else type(func).__name__).upper()
        if name in _NON_DETERMINISTIC or type(func).__name__.upper() in _NON_DETERMINISTIC:
            raise SeedError(f"{where} calls {name}(), which is not deterministic")
    return sql


# ------------------------------------------------------------------------------- prod samples


@dataclass(frozen=True)
class SampleSpec:
    column: str  # the column the sample predicate hashes (own key, or the foreign key)
    modulo: int


def sample_spec(config: EnvsyncConfig, override: TableOverride) -> SampleSpec:
    if override.sample is not None:
        return SampleSpec(override.sample.key, override.sample.modulo)
    assert override.parent is not None  # guaranteed by config validation
    parent = config.tables[override.parent.table]
    assert parent.sample is not None
    return SampleSpec(override.parent.column, parent.sample.modulo)


def sample_predicate(column: str) -> str:
    """Same hash on the same key values: a child's foreign key picks exactly the sampled parents."""
    return f"mod(abs(farm_fingerprint(cast({quote_column(column)} as string))), @sample_modulo) = 0"


def masking_salt(config: EnvsyncConfig) -> str | None:
    return os.environ.get(config.salt_env) or None


def sample_select(
    config: EnvsyncConfig, info: TableInfo, override: TableOverride, env: str = "qa"
) -> tuple[str, dict[str, Any]]:
    """The SELECT list and parameters of a prod sample of `info` (columns in prod's order), masked as
    `env` requires (envsync.privacy.masking: the table's masks and privacy.policy_tags)."""
    from envsync.privacy.masking import MaskError, column_masks, masked_select

    problems = []
    spec = sample_spec(config, override)
    names = {f["name"] for f in info.schema}
    if spec.column not in names:
        problems.append(f"sample column {spec.column} does not exist")
    problems += [f"masked column {c} does not exist" for c in override.mask if c not in names]
    if problems:
        raise SeedError(f"{info.dataset}.{info.table}: " + "; ".join(problems))
    try:
        masks = column_masks(config, info, env)
        if spec.column.lower() in {m.column.lower() for m in masks}:
            raise MaskError(
                f"{info.dataset}.{info.table}: sample/parent key {spec.column} carries a policy tag of "
                "privacy.policy_tags and cannot be masked (joins would break)"
            )
        select, params = masked_select(config, info, masks)
    except MaskError as error:
        raise SeedError(str(error)) from None
    return select, {"sample_modulo": spec.modulo, **params}
