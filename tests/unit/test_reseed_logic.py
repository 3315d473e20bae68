"""Re-seeding logic without BigQuery: seed files, masked prod samples, the seed contract, planning,
run inputs, test-environment expiry and the reseed parts of the config.

Everything here is pure: seeds live in a tmp dir (config `seeds: {dir: <tmp>}`), prod is described by
hand-built DatasetInfo/TableInfo, and the BigQuery client is a Mock whose calls are asserted. SQL that
BigQuery would run is at least parsed with sqlglot's BigQuery dialect.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock, call

import pytest
import sqlglot
from pydantic import ValidationError

from envsync.bigquery.discovery import DatasetInfo, TableInfo
from envsync.core.config import ConfigError, EnvsyncConfig, FixedMask, parse_config
from envsync.core.config import TestEnvConfig as TtlConfig  # aliased: pytest would try to collect Test*
from envsync.core.guard import GuardedBigQuery, WriteGuard
from envsync.environments.reseed import ContractError, Reseeder, _not_null_columns, schema_contract, units_for
from envsync.environments.seeds import (
    SeedError,
    find_seeds,
    load_seed,
    masking_salt,
    sample_predicate,
    sample_select,
    sample_spec,
    seed_version,
)
from envsync.environments.testenvs import delete_expired, expired_test_datasets
from envsync.operators.params import validate_reseed_params
from envsync.privacy.masking import MaskError, mask_expr

PROJECT = "envsync-demo"
SALT_ENV = "ENVSYNC_MASKING_SALT"
SALT = "s3cr3t-salt-value"
UTC = dt.UTC


# ------------------------------------------------------------------------------------ helpers


def base(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project": PROJECT,
        "prod": {"datasets": ["sales", "marketing"]},
        "state": {"bucket": "envsync-demo-state"},
    }
    data.update(extra)
    return data


def make_config(**extra: Any) -> EnvsyncConfig:
    return parse_config(base(**extra))


def col(
    name: str, kind: str = "STRING", mode: str = "NULLABLE", fields: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    field: dict[str, Any] = {"name": name, "type": kind, "mode": mode}
    if fields is not None:
        field["fields"] = fields
    return field


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def parses(expr: str) -> sqlglot.exp.Expression:
    """`select <expr> as x from t` must parse as one BigQuery SELECT (sqlglot raises otherwise)."""
    statements = sqlglot.parse(f"select {expr} as x from t", read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    assert len(statements) == 1 and isinstance(statements[0], sqlglot.exp.Select), expr
    return statements[0]


SAMPLED_TABLES = {
    "sales.customers": {
        "source": "prod_sample",
        "sample": {"key": "customer_id", "modulo": 10},
        "mask": {"email": "hash", "name": "fake", "phone": "null", "vip": {"fixed": False}},
    },
    "sales.orders": {"source": "prod_sample", "parent": {"table": "sales.customers", "column": "customer_id"}},
}

CUSTOMERS = TableInfo(
    dataset="sales",
    table="customers",
    kind="TABLE",
    schema=[
        col("customer_id", "INTEGER", "REQUIRED"),
        col("email"),
        col("name"),
        col("phone"),
        col("vip", "BOOLEAN"),
        col("signup_date", "DATE"),
    ],
)
ORDERS = TableInfo(
    dataset="sales",
    table="orders",
    kind="TABLE",
    schema=[col("order_id", "INT64", "REQUIRED"), col("customer_id", "INT64"), col("amount", "NUMERIC")],
)


# ------------------------------------------------------------------------------------ load_seed


def test_load_seed_accepts_with_select_and_drops_comment_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sales" / "orders.sql",
        "-- Seed for sales.orders: three rows.\n"
        "with ids as (\n"
        "  -- one row per id\n"
        "  select id from unnest(generate_array(1, 3)) as id\n"
        ")\n"
        "select id as order_id, cast(id * 10 as numeric) as amount from ids;\n",
    )
    sql = load_seed(path)
    assert not [line for line in sql.splitlines() if line.lstrip().startswith("--")]
    assert "Seed for sales.orders" not in sql and "one row per id" not in sql
    assert not sql.rstrip().endswith(";")
    tree = sqlglot.parse_one(sql, read="bigquery")
    assert isinstance(tree, sqlglot.exp.Query)
    assert [e.alias_or_name for e in tree.selects] == ["order_id", "amount"]


@pytest.mark.parametrize(
    ("sql", "table"),
    [
        ("select * from sales.orders", "sales.orders"),
        ("select order_id from orders", "orders"),
        ("with ids as (select 1 as id) select * from ids join sales.customers on true", "sales.customers"),
        ("select (select max(id) from marketing.campaigns) as m", "marketing.campaigns"),
    ],
)
def test_load_seed_rejects_table_reads_naming_file_and_table(tmp_path: Path, sql: str, table: str) -> None:
    path = write(tmp_path / "sales" / "orders.sql", "-- reads prod\n" + sql + "\n")
    with pytest.raises(SeedError) as info:
        load_seed(path)
    message = str(info.value)
    assert "sales/orders.sql" in message
    assert table in message
    assert "self-contained" in message


@pytest.mark.parametrize(
    "sql",
    [
        "select 1 as a; select 2 as a",
        "insert into qa_sales.orders (order_id) values (1)",
        "delete from qa_sales.orders where true",
        "update qa_sales.orders set order_id = 1 where true",
    ],
    ids=["two_statements", "insert", "delete", "update"],
)
def test_load_seed_rejects_anything_but_one_select(tmp_path: Path, sql: str) -> None:
    path = write(tmp_path / "sales" / "orders.sql", sql)
    with pytest.raises(SeedError, match=r"sales/orders\.sql must be exactly one SELECT statement"):
        load_seed(path)


@pytest.mark.parametrize(
    ("call_sql", "name"),
    [
        ("rand()", "RAND"),
        ("current_date()", "CURRENT_DATE"),
        ("current_date", "CURRENT_DATE"),
        ("current_timestamp()", "CURRENT_TIMESTAMP"),
        ("current_datetime()", "CURRENT_DATETIME"),
        ("session_user()", "SESSION_USER"),
    ],
)
def test_load_seed_rejects_non_deterministic_functions_naming_them(tmp_path: Path, call_sql: str, name: str) -> None:
    path = write(
        tmp_path / "sales" / "orders.sql", f"select id, {call_sql} as v from unnest(generate_array(1, 3)) as id"
    )
    with pytest.raises(SeedError) as info:
        load_seed(path)
    message = str(info.value)
    assert "sales/orders.sql" in message
    assert f"{name}()" in message and "not deterministic" in message


def test_load_seed_rejects_generate_uuid(tmp_path: Path) -> None:
    path = write(tmp_path / "sales" / "orders.sql", "select generate_uuid() as order_key")
    with pytest.raises(SeedError, match="not deterministic"):
        load_seed(path)


def test_load_seed_rejects_invalid_sql_naming_file(tmp_path: Path) -> None:
    path = write(tmp_path / "sales" / "orders.sql", "select (1 as a")
    with pytest.raises(SeedError, match=r"sales/orders\.sql is not valid BigQuery SQL"):
        load_seed(path)


# ----------------------------------------------------------------------------- find / version


def seeds_config(root: Path, **extra: Any) -> EnvsyncConfig:
    return make_config(seeds={"dir": str(root)}, **extra)


def test_find_seeds_maps_table_names_to_files(tmp_path: Path) -> None:
    write(tmp_path / "sales" / "orders.sql", "select 1 as order_id")
    write(tmp_path / "sales" / "customers.sql", "select 1 as customer_id")
    write(tmp_path / "sales" / "notes.txt", "not a seed")
    config = seeds_config(tmp_path)
    assert find_seeds(config, "sales") == {
        "customers": tmp_path / "sales" / "customers.sql",
        "orders": tmp_path / "sales" / "orders.sql",
    }
    assert find_seeds(config, "marketing") == {}


def test_seed_version_tracks_content_and_names(tmp_path: Path) -> None:
    root = tmp_path / "seeds"
    write(root / "sales" / "orders.sql", "select 1 as order_id")
    write(root / "marketing" / "campaigns.sql", "select 'a' as name")
    config = seeds_config(root)

    first = seed_version(config)
    assert re.fullmatch(r"[0-9a-f]{16}", first["version"])
    assert first["files"] == 2
    assert first["git"] is None or isinstance(first["git"], str)
    assert seed_version(config) == first  # same files, same version

    orders = root / "sales" / "orders.sql"
    orders.write_text("select 2 as order_id", encoding="utf-8")  # one byte changed
    changed = seed_version(config)
    assert changed["version"] != first["version"]
    orders.write_text("select 1 as order_id", encoding="utf-8")
    assert seed_version(config)["version"] == first["version"]

    orders.rename(root / "sales" / "orders_v2.sql")  # same content, other name
    renamed = seed_version(config)
    assert renamed["version"] not in (first["version"], changed["version"])
    assert renamed["files"] == 2

    write(root / "sales" / "customers.sql", "select 1 as customer_id")
    assert seed_version(config)["files"] == 3


def test_seed_version_outside_git_and_without_seeds(tmp_path: Path) -> None:
    missing = seed_version(seeds_config(tmp_path / "nowhere"))
    assert missing["files"] == 0
    assert missing["git"] is None  # the directory does not even exist
    empty = seed_version(seeds_config(tmp_path))
    assert empty["files"] == 0 and empty["version"] == missing["version"]


# ------------------------------------------------------------------------------------ mask_expr


def test_hash_masks_strings_with_the_salt_parameter() -> None:
    expr, params = mask_expr(col("email"), "hash", "mask_1")
    assert params == {}
    assert "@mask_salt" in expr and "`email`" in expr
    parses(expr)


@pytest.mark.parametrize("kind", ["INT64", "INTEGER", "FLOAT64", "NUMERIC", "DATE", "TIMESTAMP", "BOOL", "BYTES"])
def test_hash_rejects_non_string_columns_naming_the_column(kind: str) -> None:
    with pytest.raises(MaskError) as info:
        mask_expr(col("secret", kind), "hash", "mask_1")
    assert "secret" in str(info.value) and "hash applies to STRING" in str(info.value)


def test_null_mask_casts_to_the_column_type_and_rejects_required() -> None:
    expr, params = mask_expr(col("phone", "INTEGER"), "null", "mask_1")
    assert params == {}
    assert parses(expr).find(sqlglot.exp.Null) is not None
    assert "INT64" in expr.upper()
    with pytest.raises(MaskError, match=r"phone.*REQUIRED"):
        mask_expr(col("phone", "STRING", "REQUIRED"), "null", "mask_1")


@pytest.mark.parametrize(
    "kind", ["STRING", "INT64", "INTEGER", "FLOAT64", "FLOAT", "NUMERIC", "DATE", "TIMESTAMP", "BOOL", "BOOLEAN"]
)
def test_fake_produces_parseable_sql_for_each_type(kind: str) -> None:
    expr, params = mask_expr(col("value", kind), "fake", "mask_1")
    assert params == {}
    assert "@mask_salt" in expr and "`value`" in expr
    tree = parses(expr)
    assert isinstance(tree.selects[0].this, sqlglot.exp.If)  # nulls stay null


@pytest.mark.parametrize("kind", ["GEOGRAPHY", "BYTES"])
def test_fake_rejects_types_without_fakes(kind: str) -> None:
    with pytest.raises(MaskError, match=rf"location.*{kind}|fake values are not available for {kind}"):
        mask_expr(col("location", kind), "fake", "mask_1")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("STRING", "redacted"),
        ("INT64", 7),
        ("INTEGER", 0),
        ("FLOAT64", 2.5),
        ("NUMERIC", 1.25),
        ("BOOL", True),
        ("BOOLEAN", False),
    ],
)
def test_fixed_binds_a_parameter_of_the_column_type(kind: str, value: Any) -> None:
    expr, params = mask_expr(col("value", kind), FixedMask(fixed=value), "mask_3")
    assert params == {"mask_3": value}
    assert type(params["mask_3"]) is type(value)
    assert "@mask_3" in expr and "@mask_salt" not in expr
    if isinstance(value, str):
        assert value not in expr  # bound, never formatted into SQL
    parses(expr)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("INT64", "x"),
        ("INT64", True),
        ("INT64", 1.5),
        ("STRING", 3),
        ("BOOL", 1),
        ("FLOAT64", "1.5"),
        ("NUMERIC", False),
        ("DATE", "2026-01-01"),
        ("TIMESTAMP", 0),
    ],
)
def test_fixed_rejects_a_mismatched_value(kind: str, value: Any) -> None:
    with pytest.raises(MaskError) as info:
        mask_expr(col("value", kind), FixedMask(fixed=value), "mask_3")
    assert "value" in str(info.value) and repr(value) in str(info.value)


@pytest.mark.parametrize("rule", ["hash", "null", "fake", FixedMask(fixed="x")])
@pytest.mark.parametrize(
    "field",
    [
        col("tags", "STRING", "REPEATED"),
        col("address", "RECORD", fields=[col("city")]),
        col("address", "STRUCT", fields=[col("city")]),
    ],
)
def test_repeated_and_struct_columns_cannot_be_masked(field: dict[str, Any], rule: Any) -> None:
    with pytest.raises(MaskError, match="repeated and STRUCT columns cannot be masked") as info:
        mask_expr(field, rule, "mask_1")
    assert field["name"] in str(info.value)


def test_unknown_rule_is_rejected() -> None:
    with pytest.raises(MaskError, match="unknown rule 'scramble'"):
        mask_expr(col("email"), "scramble", "mask_1")


# -------------------------------------------------------------------------------- sample_select


def test_sample_select_keeps_prod_column_order_and_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, SALT)
    config = make_config(tables=SAMPLED_TABLES)
    select, params = sample_select(config, CUSTOMERS, config.override("sales", "customers"))

    items = select.split(",\n    ")
    assert len(items) == len(CUSTOMERS.schema)
    names = [re.search(r"`(\w+)`$", item).group(1) for item in items]  # type: ignore[union-attr]  # present in this test data
    assert names == [f["name"] for f in CUSTOMERS.schema]
    assert items[0] == "`customer_id`" and items[5] == "`signup_date`"  # unmasked: plain column
    for index in (1, 2, 3, 4):
        assert items[index].endswith(f" as `{names[index]}`")
    assert "sha256" in items[1] and "@mask_salt" in items[1]
    assert "concat('name-'" in items[2]
    assert items[3].startswith("cast(null as STRING)")
    assert "@mask_4" in items[4]

    assert params == {"sample_modulo": 10, "mask_4": False, "mask_salt": SALT}
    assert SALT not in select
    tree = sqlglot.parse_one(f"select\n    {select}\nfrom t", read="bigquery")
    assert [e.alias_or_name for e in tree.selects] == names


def test_sample_select_without_hash_or_fake_needs_no_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SALT_ENV, raising=False)
    config = make_config(
        tables={
            "sales.customers": {
                "source": "prod_sample",
                "sample": {"key": "customer_id", "modulo": 4},
                "mask": {"phone": "null", "email": {"fixed": "x@example.com"}},
            },
        }
    )
    select, params = sample_select(config, CUSTOMERS, config.override("sales", "customers"))
    assert params == {"sample_modulo": 4, "mask_1": "x@example.com"}
    assert "mask_salt" not in select
    assert "x@example.com" not in select


def test_sample_select_with_hash_needs_the_salt_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SALT_ENV, raising=False)
    config = make_config(tables=SAMPLED_TABLES)
    assert masking_salt(config) is None
    with pytest.raises(SeedError) as info:
        sample_select(config, CUSTOMERS, config.override("sales", "customers"))
    assert SALT_ENV in str(info.value) and "sales.customers" in str(info.value)

    monkeypatch.setenv(SALT_ENV, "")  # empty counts as missing
    with pytest.raises(SeedError, match=SALT_ENV):
        sample_select(config, CUSTOMERS, config.override("sales", "customers"))


def test_sample_select_uses_the_configured_salt_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SALT_ENV, raising=False)
    monkeypatch.setenv("OTHER_SALT", SALT)
    config = make_config(tables=SAMPLED_TABLES, seeds={"salt_env": "OTHER_SALT"})
    _, params = sample_select(config, CUSTOMERS, config.override("sales", "customers"))
    assert params["mask_salt"] == SALT


def test_sample_select_rejects_unknown_masked_and_missing_sample_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, SALT)
    config = make_config(
        tables={
            "sales.customers": {
                "source": "prod_sample",
                "sample": {"key": "client_id", "modulo": 10},
                "mask": {"e_mail": "hash"},
            },
        }
    )
    with pytest.raises(SeedError) as info:
        sample_select(config, CUSTOMERS, config.override("sales", "customers"))
    message = str(info.value)
    assert message.startswith("sales.customers: ")
    assert "sample column client_id does not exist" in message
    assert "masked column e_mail does not exist" in message


def test_sample_select_names_the_table_when_a_mask_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, SALT)
    config = make_config(
        tables={
            "sales.customers": {
                "source": "prod_sample",
                "sample": {"key": "customer_id", "modulo": 10},
                "mask": {"signup_date": "hash"},
            },
        }
    )
    with pytest.raises(SeedError, match=r"^sales\.customers: mask of column signup_date \(DATE\)"):
        sample_select(config, CUSTOMERS, config.override("sales", "customers"))


def test_child_follows_parent_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SALT_ENV, SALT)
    config = make_config(tables=SAMPLED_TABLES)
    parent = sample_spec(config, config.override("sales", "customers"))
    child = sample_spec(config, config.override("sales", "orders"))
    assert (parent.column, parent.modulo) == ("customer_id", 10)
    assert (child.column, child.modulo) == ("customer_id", 10)

    select, params = sample_select(config, ORDERS, config.override("sales", "orders"))
    assert select == "`order_id`,\n    `customer_id`,\n    `amount`"
    assert params == {"sample_modulo": 10}  # the parent's modulo, no salt needed

    assert sample_predicate("customer_id") == (
        "mod(abs(farm_fingerprint(cast(`customer_id` as string))), @sample_modulo) = 0"
    )
    # the child's predicate on its foreign key is the parent's on its key, with the column swapped
    assert sample_predicate("buyer_id") == sample_predicate("customer_id").replace("`customer_id`", "`buyer_id`")
    sqlglot.parse_one(f"select 1 from t where {sample_predicate('buyer_id')}", read="bigquery")


def test_child_with_other_fk_name_uses_its_own_column_and_parent_modulo() -> None:
    config = make_config(
        tables={
            "sales.customers": {"source": "prod_sample", "sample": {"key": "customer_id", "modulo": 25}},
            "sales.orders": {"source": "prod_sample", "parent": {"table": "sales.customers", "column": "buyer_id"}},
        }
    )
    spec = sample_spec(config, config.override("sales", "orders"))
    assert (spec.column, spec.modulo) == ("buyer_id", 25)
    with pytest.raises(SeedError, match=r"sales\.orders: sample column buyer_id does not exist"):
        sample_select(config, ORDERS, config.override("sales", "orders"))


# ------------------------------------------------------------------------------ schema_contract


PROD_SCHEMA = [
    col("order_id", "INT64", "REQUIRED"),
    col("status"),
    col("tags", "STRING", "REPEATED"),
    col("address", "RECORD", fields=[col("city"), col("zip", "INT64")]),
]


def test_equal_schemas_have_no_problems() -> None:
    seed = [
        col("ORDER_ID", "INTEGER"),  # seeds yield NULLABLE columns; case does not matter
        col("status", "STRING"),
        col("tags", "STRING", "REPEATED"),
        col("address", "STRUCT", fields=[col("city", "STRING"), col("zip", "INTEGER")]),
    ]
    assert schema_contract("sales", "orders", PROD_SCHEMA, seed) == []


def test_renamed_column_is_missing_and_extra() -> None:
    seed = [
        col("order_id", "INT64"),
        col("state"),
        col("tags", "STRING", "REPEATED"),
        col("address", "RECORD", fields=[col("city"), col("zip", "INT64")]),
    ]
    problems = schema_contract("sales", "orders", PROD_SCHEMA, seed)
    assert problems == [
        "sales.orders: column status is in prod but not in the seed",
        "sales.orders: column state is in the seed but not in prod",
    ]


def test_type_change_names_column_and_both_types() -> None:
    prod = [col("order_id", "INT64")]
    problems = schema_contract("sales", "orders", prod, [col("order_id", "STRING")])
    assert len(problems) == 1
    assert "sales.orders" in problems[0] and "order_id" in problems[0]
    assert "INT64 in prod" in problems[0] and "STRING in the seed" in problems[0]
    assert schema_contract("sales", "orders", [col("n", "FLOAT")], [col("n", "FLOAT64")]) == []
    assert schema_contract("sales", "orders", [col("b", "BOOLEAN")], [col("b", "BOOL")]) == []


def test_repeated_against_scalar_is_a_problem() -> None:
    problems = schema_contract("sales", "orders", [col("tags", "STRING", "REPEATED")], [col("tags", "STRING")])
    assert problems == ["sales.orders: column tags is ARRAY<STRING> in prod but STRING in the seed"]
    reverse = schema_contract("sales", "orders", [col("tags", "STRING")], [col("tags", "STRING", "REPEATED")])
    assert reverse == ["sales.orders: column tags is STRING in prod but ARRAY<STRING> in the seed"]


@pytest.mark.parametrize(
    "seed_fields",
    [
        [col("city")],  # a nested field missing
        [col("city"), col("zip", "STRING")],  # a nested type changed
        [col("city"), col("postcode", "INT64")],  # a nested field renamed
        [col("city"), col("zip", "INT64"), col("country")],  # an extra nested field
    ],
)
def test_nested_field_difference_is_a_problem(seed_fields: list[dict[str, Any]]) -> None:
    prod = [col("address", "RECORD", fields=[col("city"), col("zip", "INT64")])]
    problems = schema_contract("sales", "orders", prod, [col("address", "RECORD", fields=seed_fields)])
    assert problems == ["sales.orders: column address has other nested fields in the seed than in prod"]


def test_not_null_columns_are_required_ones_plus_the_partition_column() -> None:
    info = TableInfo(
        dataset="sales",
        table="orders",
        kind="TABLE",
        schema=[col("order_id", "INT64", "REQUIRED"), col("order_date", "DATE"), col("note")],
        partitioning={"type": "DAY", "field": "order_date"},
    )
    assert _not_null_columns(info) == ["order_id", "order_date"]
    info.schema[1]["mode"] = "REQUIRED"
    assert _not_null_columns(info) == ["order_id", "order_date"]  # not twice
    ingestion = TableInfo(
        dataset="sales", table="events", kind="TABLE", schema=[col("note")], partitioning={"type": "DAY", "field": None}
    )
    assert _not_null_columns(ingestion) == []


# ------------------------------------------------------------------------------ Reseeder.sources


def make_reseeder(config: EnvsyncConfig) -> Reseeder:
    runner = Mock()
    runner.bq = Mock()
    return Reseeder(config, runner, dt.datetime(2026, 6, 1, tzinfo=UTC))


def sales_info(*tables: TableInfo) -> DatasetInfo:
    return DatasetInfo(dataset="sales", location="US", description=None, labels={}, tables=list(tables))


def table(name: str, kind: str = "TABLE", **extra: Any) -> TableInfo:
    return TableInfo(dataset="sales", table=name, kind=kind, schema=[col("id", "INT64")], **extra)


def test_sources_per_table(tmp_path: Path) -> None:
    write(tmp_path / "sales" / "orders.sql", "-- orders\nselect id from unnest(generate_array(1, 3)) as id\n")
    write(tmp_path / "sales" / "customers.sql", "select 1 as customer_id, 'a' as email")
    write(tmp_path / "sales" / "archive.sql", "select 1 as id")
    config = seeds_config(
        tmp_path,
        tables={
            "sales.archive": {"exclude": True},
            "sales.customers": {"source": "prod_sample", "sample": {"key": "customer_id", "modulo": 10}},
        },
    )
    view_sql = "select id from `envsync-demo.sales.orders`"
    info = sales_info(
        table("orders"),
        table("returns"),
        table("archive"),
        table("customers"),
        table("orders_view", "VIEW", view_query=view_sql),
        table("snap", "SNAPSHOT"),
    )
    reseeder = make_reseeder(config)
    sources = {s.table: s for s in reseeder.sources(info)}

    assert [s.table for s in reseeder.sources(info)] == [t.table for t in info.tables]
    assert sources["orders"].source == "seed"
    assert sources["orders"].seed_sql == "select id from unnest(generate_array(1, 3)) as id"
    assert sources["returns"].source == "empty" and sources["returns"].seed_sql is None
    assert sources["archive"].source == "skip" and "exclude" in sources["archive"].reason
    assert sources["orders_view"].source == "view" and sources["orders_view"].view_sql == view_sql
    assert sources["snap"].source == "skip"
    assert sources["customers"].source == "prod_sample" and sources["customers"].seed_sql is None
    assert "config wins" in sources["customers"].reason
    reseeder.runner.run.assert_not_called()  # planning runs no query


def test_prod_sample_without_seed_file_does_not_claim_config_wins(tmp_path: Path) -> None:
    config = seeds_config(
        tmp_path,
        tables={
            "sales.customers": {"source": "prod_sample", "sample": {"key": "customer_id", "modulo": 10}},
        },
    )
    (source,) = make_reseeder(config).sources(sales_info(table("customers")))
    assert source.source == "prod_sample" and "config wins" not in source.reason


def test_seed_for_a_table_not_in_prod_is_a_contract_error(tmp_path: Path) -> None:
    write(tmp_path / "sales" / "orders.sql", "select 1 as id")
    write(tmp_path / "sales" / "refunds.sql", "select 1 as id")
    with pytest.raises(ContractError) as info:
        make_reseeder(seeds_config(tmp_path)).sources(sales_info(table("orders")))
    assert "sales/refunds.sql" in str(info.value)
    assert "sales/orders.sql" not in str(info.value)


def test_invalid_seed_is_a_contract_error_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path / "sales" / "orders.sql", "select * from sales.orders")
    with pytest.raises(ContractError, match=r"sales/orders\.sql reads tables"):
        make_reseeder(seeds_config(tmp_path)).sources(sales_info(table("orders")))


# ------------------------------------------------------------------------------------ units_for


def test_units_for_qa_and_staging() -> None:
    config = make_config()
    units = units_for(config, ["qa", "staging"], ["sales", "marketing"], None)
    assert [(u.env, u.dataset, u.target_dataset, u.test_name) for u in units] == [
        ("qa", "sales", "qa_sales", None),
        ("qa", "marketing", "qa_marketing", None),
        ("staging", "sales", "staging_sales", None),
        ("staging", "marketing", "staging_marketing", None),
    ]
    assert units[0].name == "qa_sales"


def test_units_for_a_test_env() -> None:
    config = make_config()
    units = units_for(config, ["qa", "staging"], ["sales", "marketing"], "abc")
    assert [(u.env, u.dataset, u.target_dataset, u.test_name) for u in units] == [
        ("test", "sales", "test_abc_sales", "abc"),
        ("test", "marketing", "test_abc_marketing", "abc"),
    ]


# ------------------------------------------------------------------------ validate_reseed_params


def test_reseed_params_defaults() -> None:
    config = make_config(environments={"test": {"default_ttl_days": 3, "max_ttl_days": 10}})
    assert validate_reseed_params(config, None, None, None, None) == (
        ["qa", "staging"],
        ["sales", "marketing"],
        None,
        3,
    )
    assert validate_reseed_params(config, [], [], "", "") == (["qa", "staging"], ["sales", "marketing"], None, 3)


def test_reseed_params_accept_and_normalise() -> None:
    config = make_config(environments={"test": {"default_ttl_days": 3, "max_ttl_days": 10}})
    envs, datasets, test, ttl = validate_reseed_params(
        config, ["staging", "qa", "staging"], ["marketing", "marketing"], "abc1", "5"
    )
    assert (envs, datasets, test, ttl) == (["staging", "qa"], ["marketing"], "abc1", 5)
    assert validate_reseed_params(config, ["qa"], ["sales"], "a" * 20, 10)[2:] == ("a" * 20, 10)
    assert validate_reseed_params(config, ["qa"], ["sales"], None, 1)[3] == 1


@pytest.mark.parametrize(
    ("args", "param", "value"),
    [
        ((["prod"], None, None, None), "environments", "prod"),
        ((["qa", "dev"], None, None, None), "environments", "dev"),
        (("qa", None, None, None), "environments", "qa"),
        ((None, ["sales", "nope"], None, None), "datasets", "nope"),
        ((None, "sales", None, None), "datasets", "sales"),
        ((None, None, "Bad", None), "test_env", "Bad"),
        ((None, None, "a_b", None), "test_env", "a_b"),
        ((None, None, "x" * 21, None), "test_env", "x" * 21),
        ((None, None, "1abc", None), "test_env", "1abc"),
        ((None, None, "a-b", None), "test_env", "a-b"),
        ((None, None, 5, None), "test_env", 5),
        ((None, None, None, 0), "ttl_days", 0),
        ((None, None, None, 11), "ttl_days", 11),
        ((None, None, None, True), "ttl_days", True),
        ((None, None, None, "x"), "ttl_days", "x"),
        ((None, None, None, -1), "ttl_days", -1),
        ((None, None, None, 2.0), "ttl_days", 2.0),
    ],
)
def test_reseed_params_reject_naming_param_and_value(args: tuple[Any, ...], param: str, value: Any) -> None:
    config = make_config(environments={"test": {"default_ttl_days": 3, "max_ttl_days": 10}})
    with pytest.raises(ValueError) as info:
        validate_reseed_params(config, *args)
    message = str(info.value)
    assert f"param {param}" in message
    assert repr(value) in message


def test_reseed_params_reject_test_env_with_newline() -> None:
    with pytest.raises(ValueError, match=r"param test_env: 'a\\n'"):
        validate_reseed_params(make_config(), None, None, "a\n", None)


def test_reseed_params_reject_non_ascii_digit_ttl_naming_param() -> None:
    with pytest.raises(ValueError, match=r"param ttl_days"):
        validate_reseed_params(make_config(), None, None, None, "²")


# ------------------------------------------------------------------------------------- testenvs


NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ds(dataset_id: str, labels: dict[str, str] | None) -> SimpleNamespace:
    return SimpleNamespace(dataset_id=dataset_id, labels=labels)


def ts(moment: dt.datetime) -> str:
    return str(int(moment.timestamp()))


def listed() -> list[SimpleNamespace]:
    past, future = NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1)
    test = {"envsync-env": "test"}
    return [
        ds("test_old_sales", {**test, "envsync-expires": ts(past), "envsync-test-env": "old"}),
        ds("test_now_marketing", {**test, "envsync-expires": ts(NOW), "envsync-test-env": "now"}),
        ds("test_new_sales", {**test, "envsync-expires": ts(future), "envsync-test-env": "new"}),
        ds("test_nolabel_sales", dict(test)),
        ds("test_badlabel_sales", {**test, "envsync-expires": "tomorrow"}),
        ds("test_emptylabel_sales", {**test, "envsync-expires": ""}),
        ds("test_qa_sales", {"envsync-env": "qa", "envsync-expires": ts(past)}),
        ds("test_nolabels_sales", None),
        ds("qa_sales", {**test, "envsync-expires": ts(past)}),  # not a test_ dataset
        ds("sales", {**test, "envsync-expires": ts(past)}),  # prod
    ]


def test_expired_test_datasets_finds_only_expired_test_envs() -> None:
    config = make_config()
    client = Mock()
    client.list_datasets.return_value = listed()
    found = expired_test_datasets(config, client, NOW)
    client.list_datasets.assert_called_once_with(project=PROJECT, filter="labels.envsync-env:test")
    assert found == [
        {"dataset": "test_now_marketing", "expires": NOW.isoformat(), "test_env": "now"},
        {"dataset": "test_old_sales", "expires": (NOW - dt.timedelta(days=1)).isoformat(), "test_env": "old"},
    ]


def test_delete_expired_deletes_exactly_the_expired_test_datasets() -> None:
    config = make_config()
    bq = Mock()
    bq.client.list_datasets.return_value = listed()
    deleted = delete_expired(config, bq, NOW)
    assert bq.delete_dataset.call_args_list == [
        call(f"{PROJECT}.test_now_marketing"),
        call(f"{PROJECT}.test_old_sales"),
    ]
    assert [d["dataset"] for d in deleted] == ["test_now_marketing", "test_old_sales"]


def test_delete_expired_goes_through_the_write_guard() -> None:
    config = make_config()
    client = Mock()
    client.list_datasets.return_value = listed()
    bq = GuardedBigQuery(client, WriteGuard.from_config(config), "US")
    delete_expired(config, bq, NOW)
    assert client.delete_dataset.call_args_list == [
        call(f"{PROJECT}.test_now_marketing", delete_contents=True, not_found_ok=True),
        call(f"{PROJECT}.test_old_sales", delete_contents=True, not_found_ok=True),
    ]


def test_delete_expired_with_nothing_expired_deletes_nothing() -> None:
    config = make_config()
    bq = Mock()
    bq.client.list_datasets.return_value = [
        ds("test_new_sales", {"envsync-env": "test", "envsync-expires": ts(NOW + dt.timedelta(seconds=1))}),
    ]
    assert delete_expired(config, bq, NOW) == []
    bq.delete_dataset.assert_not_called()


def test_out_of_range_expiry_label_is_left_alone() -> None:
    config = make_config()
    bq = Mock()
    bq.client.list_datasets.return_value = [
        ds("test_huge_sales", {"envsync-env": "test", "envsync-expires": "1" + "0" * 20}),
        ds("test_old_sales", {"envsync-env": "test", "envsync-expires": ts(NOW - dt.timedelta(days=1))}),
    ]
    assert [d["dataset"] for d in delete_expired(config, bq, NOW)] == ["test_old_sales"]
    bq.delete_dataset.assert_called_once_with(f"{PROJECT}.test_old_sales")


# --------------------------------------------------------------------------------------- config


def config_error(**extra: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(base(**extra), "test.yaml")
    return str(info.value)


def test_prod_sample_needs_exactly_one_of_sample_or_parent() -> None:
    neither = config_error(tables={"sales.orders": {"source": "prod_sample"}})
    assert "tables.sales.orders" in neither and "exactly one of sample" in neither
    both = config_error(
        tables={
            "sales.customers": {"source": "prod_sample", "sample": {"key": "customer_id", "modulo": 10}},
            "sales.orders": {
                "source": "prod_sample",
                "sample": {"key": "order_id", "modulo": 10},
                "parent": {"table": "sales.customers", "column": "customer_id"},
            },
        }
    )
    assert "tables.sales.orders" in both and "exactly one of sample" in both


def test_sample_keys_cannot_be_masked() -> None:
    message = config_error(
        tables={
            "sales.customers": {
                "source": "prod_sample",
                "sample": {"key": "customer_id", "modulo": 10},
                "mask": {"customer_id": "hash"},
            },
        }
    )
    assert "tables.sales.customers" in message and "customer_id" in message and "cannot be masked" in message
    message = config_error(
        tables={
            "sales.customers": {"source": "prod_sample", "sample": {"key": "customer_id", "modulo": 10}},
            "sales.orders": {
                "source": "prod_sample",
                "parent": {"table": "sales.customers", "column": "customer_id"},
                "mask": {"customer_id": "fake"},
            },
        }
    )
    assert "tables.sales.orders" in message and "customer_id" in message and "cannot be masked" in message


@pytest.mark.parametrize(
    "override",
    [
        {"sample": {"key": "order_id", "modulo": 10}},
        {"parent": {"table": "sales.customers", "column": "customer_id"}},
    ],
    ids=["sample", "parent"],
)
def test_sample_and_parent_need_prod_sample(override: dict[str, Any]) -> None:
    message = config_error(
        tables={
            "sales.customers": {"source": "prod_sample", "sample": {"key": "customer_id", "modulo": 10}},
            "sales.orders": override,
        }
    )
    assert "tables.sales.orders" in message and "only with source: prod_sample" in message


def test_a_mask_applies_without_prod_sample_too() -> None:
    """Masks also apply to the dev sync (and prod-copy when privacy lists it), not only to prod samples."""
    config = make_config(
        tables={
            "sales.orders": {"mask": {"email": "hash"}},
            "sales.customers": {"source": "seed", "mask": {"email": {"fixed": "x"}}},
        }
    )
    assert config.override("sales", "orders").mask == {"email": "hash"}


def test_parent_must_itself_be_sampled() -> None:
    missing = config_error(
        tables={
            "sales.orders": {"source": "prod_sample", "parent": {"table": "sales.customers", "column": "customer_id"}},
        }
    )
    assert "tables.sales.orders.parent" in missing and "sales.customers" in missing
    chained = config_error(
        tables={
            "sales.customers": {"source": "prod_sample", "sample": {"key": "customer_id", "modulo": 10}},
            "sales.orders": {"source": "prod_sample", "parent": {"table": "sales.customers", "column": "customer_id"}},
            "sales.items": {"source": "prod_sample", "parent": {"table": "sales.orders", "column": "order_id"}},
        }
    )
    assert "tables.sales.items.parent" in chained and "sales.orders" in chained


def test_sample_and_fixed_mask_values_are_validated() -> None:
    assert "modulo" in config_error(tables={"sales.c": {"source": "prod_sample", "sample": {"key": "id", "modulo": 0}}})
    assert "modulo" in config_error(
        tables={"sales.c": {"source": "prod_sample", "sample": {"key": "id", "modulo": "5"}}}
    )
    assert "key" in config_error(
        tables={"sales.c": {"source": "prod_sample", "sample": {"key": "bad key", "modulo": 5}}}
    )
    assert "mask" in config_error(
        tables={
            "sales.c": {"source": "prod_sample", "sample": {"key": "id", "modulo": 5}, "mask": {"email": "scramble"}}
        }
    )
    ok = make_config(
        tables={
            "sales.c": {
                "source": "prod_sample",
                "sample": {"key": "id", "modulo": 5},
                "mask": {"a": {"fixed": True}, "b": {"fixed": 3}, "c": {"fixed": "x"}},
            }
        }
    )
    fixed = {k: v.fixed for k, v in ok.override("sales", "c").mask.items()}  # type: ignore[union-attr]  # present in this test data
    assert fixed == {"a": True, "b": 3, "c": "x"}
    assert [type(v) for v in fixed.values()] == [bool, int, str]


def test_ttl_defaults_and_order() -> None:
    assert (TtlConfig().default_ttl_days, TtlConfig().max_ttl_days) == (7, 30)
    with pytest.raises(ValidationError, match="default_ttl_days 31 is more than max_ttl_days 30"):
        TtlConfig(default_ttl_days=31)
    message = config_error(environments={"test": {"default_ttl_days": 10, "max_ttl_days": 5}})
    assert "environments.test" in message and "default_ttl_days 10 is more than max_ttl_days 5" in message
    assert TtlConfig(default_ttl_days=5, max_ttl_days=5).max_ttl_days == 5


def test_env_dataset_names() -> None:
    config = make_config()
    assert config.env_dataset("test", "sales", "abc") == "test_abc_sales"
    assert config.env_dataset("qa", "sales") == "qa_sales"
    assert config.env_dataset("staging", "marketing") == "staging_marketing"
    with pytest.raises(ValueError, match="needs a name"):
        config.env_dataset("test", "sales")


def test_prod_dataset_with_test_prefix_is_rejected() -> None:
    message = config_error(prod={"datasets": ["sales", "test_sales"]})
    assert "test_sales" in message and "test prefix 'test_'" in message
