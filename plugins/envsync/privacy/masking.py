"""Which columns of a prod table are masked in an environment, and the masked SELECT list (pure, no I/O).

A column is masked in an environment listed in `privacy.environments` when the table's config masks it
(`tables.<ds>.<table>.mask`) or when it carries one of the BigQuery policy tags (or a tag of one of
the taxonomies) listed in `privacy.policy_tags`; those get `privacy.policy_tag_mask`. The masks
themselves are `mask_expr`: the same expressions for prod samples, the dev sync and prod-copy.
`hash` and `fake` are salted SHA-256 / FARM_FINGERPRINT of the value, so equal values stay equal across
tables (joins still work) for one salt; the salt is read from the environment variable
`privacy.salt_env` (default `seeds.salt_env`) when a job is built, never stored in a manifest.

A mask on a partitioning or clustering column is refused: the masked value would move rows between
partitions (and out of the window) or break the clustering prod's queries rely on. The config refuses
it for `date_column`; the discovered partitioning and clustering columns are checked at plan time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from envsync.bigquery.discovery import TYPE_ALIASES
from envsync.core.identifiers import quote_column

if TYPE_CHECKING:
    from envsync.bigquery.discovery import TableInfo
    from envsync.core.config import EnvsyncConfig, FixedMask

SALTED_RULES = ("hash", "fake")


class MaskError(ValueError):
    """A mask cannot apply (unknown column, partitioning column, type, missing salt); names table and column."""


@dataclass
class ColumnMask:
    column: str
    rule: Any  # hash | null | fake | {"fixed": value}
    origin: str  # config | policy_tag
    policy_tags: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.rule if isinstance(self.rule, str) else "fixed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _type(field: dict[str, Any]) -> str:
    kind = field["type"].upper()
    return TYPE_ALIASES.get(kind, kind)


def mask_expr(field: dict[str, Any], rule: str | FixedMask, param: str) -> tuple[str, dict[str, Any]]:
    """SQL expression that replaces a column's value, and the query parameters it binds."""
    name = field["name"]
    col = quote_column(name)
    kind = _type(field)
    mode = (field.get("mode") or "NULLABLE").upper()
    where = f"mask of column {name} ({kind})"
    if mode == "REPEATED" or kind == "STRUCT":
        raise MaskError(f"{where}: repeated and STRUCT columns cannot be masked; mask their parent row instead")
    digest = f"farm_fingerprint(concat(@mask_salt, cast({col} as string)))"
    if not isinstance(rule, str):
        value = rule.fixed
        allowed = {
            "STRING": (str,),
            "INT64": (int,),
            "FLOAT64": (int, float),
            "NUMERIC": (int, float),
            "BOOL": (bool,),
        }.get(kind)
        if allowed is None or not isinstance(value, allowed) or (isinstance(value, bool) and kind != "BOOL"):
            raise MaskError(f"{where}: fixed value {value!r} does not fit the column's type")
        expr = f"@{param}" if kind not in ("NUMERIC",) else f"cast(@{param} as numeric)"
        return f"if({col} is null, null, {expr})", {param: value}
    if rule == "null":
        if mode == "REQUIRED":
            raise MaskError(f"{where}: the column is REQUIRED and cannot be set to null")
        return f"cast(null as {kind})", {}
    if rule == "hash":
        if kind != "STRING":
            raise MaskError(f"{where}: hash applies to STRING columns (use fake or fixed)")
        return f"to_hex(sha256(concat(@mask_salt, {col})))", {}
    if rule == "fake":
        fakes = {
            "STRING": f"concat('{name}-', substr(to_hex(sha256(concat(@mask_salt, {col}))), 1, 12))",
            "INT64": f"1000000000 + mod(abs({digest}), 1000000000)",
            "FLOAT64": f"cast(mod(abs({digest}), 1000000) as float64) / 100 + 0.005",
            "NUMERIC": f"cast(mod(abs({digest}), 1000000) as numeric) / 100 + 0.005",
            "DATE": f"date_add(date '1900-01-01', interval mod(abs({digest}), 3650) day)",
            "TIMESTAMP": (
                f"timestamp_add(timestamp '1900-01-01 00:00:00+00', interval mod(abs({digest}), 315360000) second)"
            ),
            "BOOL": f"mod(abs({digest}), 2) = 0",
        }
        if kind not in fakes:
            raise MaskError(f"{where}: fake values are not available for {kind}")
        return f"if({col} is null, null, {fakes[kind]})", {}
    raise MaskError(f"{where}: unknown rule {rule!r} (allowed: hash, null, fake, fixed)")


def _rule(rule: Any) -> Any:
    """A config mask as plain JSON data (FixedMask -> {"fixed": value})."""
    return rule if isinstance(rule, str) else {"fixed": rule.fixed}


def _expr_rule(rule: Any) -> Any:
    from envsync.core.config import FixedMask

    return FixedMask(fixed=rule["fixed"]) if isinstance(rule, dict) else rule


def column_tags(info: TableInfo) -> dict[str, list[str]]:
    """Policy tags of every column and nested field (`parent.child`), by column path."""
    found: dict[str, list[str]] = {}

    def walk(fields: list[dict[str, Any]], prefix: str) -> None:
        for f in fields:
            name = prefix + f["name"]
            names = (f.get("policyTags") or {}).get("names") or []
            if names:
                found[name] = sorted(names)
            walk(f.get("fields") or [], name + ".")

    walk(info.schema, "")
    return found


def configured_tag(config: EnvsyncConfig, tag: str) -> bool:
    """Is `tag` one of privacy.policy_tags, or a policy tag of one of its taxonomies?"""
    return any(tag == name or tag.startswith(name + "/policyTags/") for name in config.privacy.policy_tags)


def protected_columns(info: TableInfo) -> dict[str, str]:
    """Columns a mask must not touch (lower-cased name -> why): partitioning and clustering columns."""
    out: dict[str, str] = {}
    part = (info.partitioning or {}).get("field") or (info.range_partitioning or {}).get("field")
    if part:
        out[part.lower()] = "the partitioning column"
    for name in info.clustering or []:
        out.setdefault(name.lower(), "a clustering column")
    return out


def column_masks(config: EnvsyncConfig, info: TableInfo, env: str) -> list[ColumnMask]:
    """The masks of `info`'s columns in `env`, in prod's column order (empty where masks do not apply).

    Raises MaskError naming table and column for a mask on a missing, partitioning or clustering column,
    a policy-tagged nested field (mask its parent or exclude the table), or a rule that does not fit
    the column's type.
    """
    if not config.masks_apply(env):
        return []
    where = f"{info.dataset}.{info.table}"
    override = config.override(info.dataset, info.table)
    by_name = {f["name"].lower(): f for f in info.schema}
    missing = [c for c in override.mask if c.lower() not in by_name]
    if missing:
        raise MaskError(
            f"tables.{where}.mask: column(s) {missing} do not exist (columns: {[f['name'] for f in info.schema]})"
        )
    tags = column_tags(info)
    masks: list[ColumnMask] = []
    for f in info.schema:
        name = f["name"]
        tagged = [t for t in tags.get(name, []) if configured_tag(config, t)]
        rule = next((r for c, r in override.mask.items() if c.lower() == name.lower()), None)
        if rule is not None:
            masks.append(ColumnMask(name, _rule(rule), "config", tags.get(name, [])))
        elif tagged:
            masks.append(ColumnMask(name, config.privacy.policy_tag_mask, "policy_tag", tags[name]))
    nested = sorted(
        path
        for path, names in tags.items()
        if "." in path
        and any(configured_tag(config, t) for t in names)
        and not any(path.lower().startswith(m.column.lower() + ".") for m in masks)
    )
    if nested:
        raise MaskError(
            f"{where}: nested field(s) {nested} carry a policy tag of privacy.policy_tags, and nested "
            f"fields cannot be masked; exclude the table or leave its taxonomy out of privacy.policy_tags"
        )
    protected = protected_columns(info)
    for mask in masks:
        why = protected.get(mask.column.lower())
        if why:
            source = f"tables.{where}.mask" if mask.origin == "config" else f"policy tags {mask.policy_tags}"
            raise MaskError(
                f"{where}: column {mask.column} is {why} and cannot be masked ({source}): a masked value "
                "would move rows between partitions and out of the window, and break the clustering"
            )
        try:
            mask_expr(by_name[mask.column.lower()], _expr_rule(mask.rule), "mask_check")
        except MaskError as error:
            raise MaskError(f"{where}: {error}") from None
    return masks


def unmasked_tagged(info: TableInfo, masks: list[ColumnMask]) -> dict[str, list[str]]:
    """Columns (and nested fields) that carry a policy tag and are copied unmasked, with their tags."""
    masked = [m.column.lower() for m in masks]
    return {
        path: names
        for path, names in column_tags(info).items()
        if not any(path.lower() == m or path.lower().startswith(m + ".") for m in masked)
    }


def masking_salt(config: EnvsyncConfig) -> str | None:
    import os

    return os.environ.get(config.salt_env) or None


def needs_salt(masks: list[ColumnMask]) -> bool:
    return any(m.kind in SALTED_RULES for m in masks)


def require_salt(config: EnvsyncConfig, tables: list[str]) -> str:
    """The salt, or MaskError naming the environment variable and the tables that need it."""
    salt = masking_salt(config)
    if not salt:
        variable = "privacy.salt_env" if config.privacy.salt_env else "seeds.salt_env"
        raise MaskError(
            f"hash/fake masks of {tables} need a salt in the environment variable {config.salt_env} "
            f"({variable}), which is not set (or empty) on this worker; nothing was written"
        )
    return salt


def masked_select(config: EnvsyncConfig, info: TableInfo, masks: list[ColumnMask]) -> tuple[str, dict[str, Any]]:
    """The SELECT list of `info`'s columns in prod's order, masked columns replaced by their mask
    expression (aliased to the column), and the query parameters the masks bind (the salt included)."""
    by_column = {m.column.lower(): m for m in masks}
    params: dict[str, Any] = {}
    columns = []
    for index, f in enumerate(info.schema):
        mask = by_column.get(f["name"].lower())
        if mask is None:
            columns.append(quote_column(f["name"]))
            continue
        try:
            expr, extra = mask_expr(f, _expr_rule(mask.rule), f"mask_{index}")
        except MaskError as error:
            raise MaskError(f"{info.dataset}.{info.table}: {error}") from None
        params.update(extra)
        columns.append(f"{expr} as {quote_column(f['name'])}")
    if needs_salt(masks):
        params["mask_salt"] = require_salt(config, [f"{info.dataset}.{info.table}"])
    return ",\n    ".join(columns), params


def masks_from_dicts(data: list[dict[str, Any]]) -> list[ColumnMask]:
    return [ColumnMask(**m) for m in data]
