"""`make check-sql`: the SQL users write (seeds) analyzed by GoogleSQL against prod's schemas, offline.

A seed `sql/seeds/<dataset>/<table>.sql` must be a SELECT that BigQuery accepts and whose columns
are the table's (names and types); a problem is reported as `file:line: message`. The checker runs in
the emulator venv (bqfidelity.checksql), like the emulator's analyzer; these tests drive it as users
do, through its command line and the Makefile.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SEEDS = REPO_ROOT / "sql" / "seeds"
SCHEMAS = REPO_ROOT / "sql" / "schemas" / "prod.json"
EMULATOR_PYTHON = REPO_ROOT / ".venv-emulators" / "bin" / "python"


@pytest.fixture(scope="module")
def cache() -> Path:
    """The repository's compiled analyzer module (compiled once, ~25 s, shared with the emulators)."""
    from envsync.dev import devstack

    shared = devstack.Stack(root=REPO_ROOT / ".devstack")
    devstack.ensure_analyzer_cache(shared)
    return shared.analyzer_cache


def check_sql(cache: Path, *paths: Path, schemas: Path = SCHEMAS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(EMULATOR_PYTHON),
            "-m",
            "bqfidelity.checksql",
            "--schemas",
            str(schemas),
            "--cache",
            str(cache),
            *map(str, paths),
        ],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT / "emulators")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _broken_copy(tmp_path: Path, relative: str, old: str, new: str) -> tuple[Path, int]:
    """Copy one shipped seed under tmp_path/seeds with `old` replaced by `new`; returns (path, line of new)."""
    source = SEEDS / relative
    text = source.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{relative}: {old!r} must occur once"
    target = tmp_path / "seeds" / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    broken = text.replace(old, new)
    target.write_text(broken, encoding="utf-8")
    return target, broken[: broken.index(new)].count("\n") + 1


def test_make_check_sql_accepts_the_shipped_seeds(cache: Path) -> None:
    result = subprocess.run(
        ["make", "-s", "check-sql"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    seeds = sorted(SEEDS.glob("*/*.sql"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"check-sql: {len(seeds)} files, {len(seeds)} statements analyzed by GoogleSQL against 8 prod tables "
        "(sql/schemas/prod.json): all accepted"
    ) in result.stdout


def test_a_seed_BigQuery_would_refuse_is_reported_with_file_and_line(cache: Path, tmp_path: Path) -> None:
    unknown, unknown_line = _broken_copy(
        tmp_path, "sales/customers.sql", "format('%02d', customer_id)", "format('%02d', customer_no)"
    )
    typed, typed_line = _broken_copy(
        tmp_path,
        "marketing/ad_spend.sql",
        "from spend_ids\norder",
        "from spend_ids where spend_id = date '2026-01-01'\norder",
    )

    result = check_sql(cache, tmp_path / "seeds")

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"{typed}:{typed_line}: No matching signature for operator = for argument types: INT64, DATE"
    )
    assert lines[1].startswith(f"{unknown}:{unknown_line}: Unrecognized name: customer_no; Did you mean customer_id?")
    assert lines[-1].endswith("2 problems")


def test_a_seed_whose_columns_do_not_fit_its_table_is_reported_at_the_column(cache: Path, tmp_path: Path) -> None:
    retyped, retyped_line = _broken_copy(
        tmp_path,
        "sales/orders.sql",
        "cast(order_ids.order_id as int64) as order_id",
        "cast(order_ids.order_id as string) as order_id",
    )
    renamed, renamed_line = _broken_copy(tmp_path, "sales/orders_flat.sql", "as shipping_country", "as ship_country")

    result = check_sql(cache, tmp_path / "seeds")

    assert result.returncode == 1
    assert result.stdout.splitlines()[:-1] == [
        f"{retyped}:{retyped_line}: sales.orders: column order_id is INT64 in prod but STRING in the seed",
        f"{renamed}:{renamed_line}: sales.orders_flat: column shipping_country is in prod but not in the seed",
        f"{renamed}:{renamed_line}: sales.orders_flat: column ship_country is in the seed but not in prod",
    ]


def test_nested_field_types_are_compared(cache: Path, tmp_path: Path) -> None:
    path, _ = _broken_copy(
        tmp_path,
        "sales/orders.sql",
        "cast(1 + mod(order_id + line_number, 5) as int64) as quantity",
        "cast(1 + mod(order_id + line_number, 5) as float64) as quantity",
    )
    # reported where the column is selected (`order_items.items,` in the final SELECT list)
    line = path.read_text(encoding="utf-8").splitlines().index("    order_items.items,") + 1

    result = check_sql(cache, tmp_path / "seeds")

    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"{path}:{line}: sales.orders: column items is "
        "ARRAY<STRUCT<sku STRING, quantity INT64, unit_price NUMERIC>> in prod but "
        "ARRAY<STRUCT<sku STRING, quantity FLOAT64, unit_price NUMERIC>> in the seed"
    )


def test_other_sql_files_are_analyzed_statement_by_statement(cache: Path, tmp_path: Path) -> None:
    script = tmp_path / "report.sql"
    script.write_text(
        "-- two statements over prod\n"
        "select customer_id, country from sales.customers;\n"
        "select order_id, shipping.city\n"
        "from `envsync-demo.sales.orders`\n"
        "where order_date > current_timestamp();\n",
        encoding="utf-8",
    )
    result = check_sql(cache, script)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(
        f"{script}:5: No matching signature for operator > for argument types: DATE, TIMESTAMP"
    )
    assert "1 problem" in result.stdout.splitlines()[-1]

    script.write_text("select customer_id from sales.customers;\nselect 1 as x;\n", encoding="utf-8")
    result = check_sql(cache, script)
    assert result.returncode == 0, result.stdout
    assert "2 statements analyzed" in result.stdout


def _migrations(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


ADD_EMAIL = (
    "-- envsync: phase=expand\n"
    "alter table sales.customers add column email string;\n"
    "\n"
    "update sales.customers\n"
    "set email = concat(name, '@example.com')\n"
    "where email is null;\n"
    "create view marketing.customer_emails as\n"
    "select customer_id, email from sales.customers;\n"
)


def test_migrations_are_analyzed_in_version_order_each_against_the_schema_the_earlier_ones_left(
    cache: Path, tmp_path: Path
) -> None:
    # 0002 reads the view and the column 0001 creates, and 0010 (after 0002, not before) reads the
    # column 0002 renames: only a catalog that follows the DDL accepts them
    folder = _migrations(
        tmp_path,
        {
            "0010_report.sql": "-- envsync: phase=expand\ncreate view marketing.emails as\n"
            "select contact_email from sales.customers;\n",
            "0001_add_email.sql": ADD_EMAIL,
            "0002_rename.sql": "-- envsync: phase=contract\n"
            "alter table sales.customers rename column email to contact_email;\n"
            "drop view marketing.customer_emails;\n",
        },
    )

    result = check_sql(cache, folder)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "check-sql: 3 files, 6 statements analyzed" in result.stdout


@pytest.mark.parametrize(
    "files, expected",
    [
        (
            {
                "0001_add_email.sql": ADD_EMAIL,
                "0002_drop_segment.sql": "-- envsync: phase=contract\n"
                "alter table sales.customers drop column segment;\n\n"
                "-- readers of segment break\nselect customer_id, segment\nfrom sales.customers;\n",
            },
            "0002_drop_segment.sql:5: Unrecognized name: segment at [5:21]",
        ),
        (
            {
                "0001_add_email.sql": ADD_EMAIL,
                "0002_again.sql": "-- envsync: phase=expand\nalter table sales.customers add column email string;\n",
            },
            "0002_again.sql:2: Column already exists: email at [2:40]",
        ),
        (
            {"0001_add_email.sql": ADD_EMAIL.replace("where email is null", "where emial is null")},
            "0001_add_email.sql:6: Unrecognized name: emial; Did you mean email? at [6:7]",
        ),
        (
            {"0001_drop.sql": "-- envsync: phase=contract\ndrop table sales.no_such_table;\n"},
            "0001_drop.sql:2: Not found: Table sales.no_such_table",
        ),
        (
            {"0001_no_phase.sql": "alter table sales.customers add column email string;\n"},
            "0001_no_phase.sql:1: a migration must start with '-- envsync: phase=expand' "
            "or '-- envsync: phase=contract'",
        ),
    ],
)
def test_a_migration_BigQuery_would_refuse_is_reported_with_file_and_line(
    cache: Path, tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    folder = _migrations(tmp_path, files)

    result = check_sql(cache, folder)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == f"{folder}/{expected}", result.stdout
    assert result.stdout.splitlines()[-1].endswith("1 problem")


def test_a_schema_file_in_the_plain_form_is_accepted(cache: Path, tmp_path: Path) -> None:
    plain = {
        "sales.customers": [
            {"name": "customer_id", "type": "INTEGER"},
            {"name": "name", "type": "STRING"},
            {"name": "segment", "type": "STRING"},
            {"name": "country", "type": "INT64"},
        ]
    }
    (tmp_path / "schemas.json").write_text(json.dumps(plain), encoding="utf-8")
    seed = tmp_path / "seeds" / "sales" / "customers.sql"
    seed.parent.mkdir(parents=True)
    shutil.copy(SEEDS / "sales" / "customers.sql", seed)

    result = check_sql(cache, seed, schemas=tmp_path / "schemas.json")

    assert result.returncode == 1
    assert "sales.customers: column country is INT64 in prod but STRING in the seed" in result.stdout


@pytest.mark.integration
def test_the_shipped_schema_file_is_the_demo_prod_as_discovered(emulators: Any) -> None:
    """sql/schemas/prod.json is what scripts/prod_schemas.py discovers from a fresh demo prod."""
    from envsync.core.clients import bigquery_client
    from envsync.dev import demo

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import prod_schemas

    project = "envsync-schemas"
    client = bigquery_client(project, "US")
    demo.create_demo_prod(client, project, "US", 50)
    try:
        discovered = prod_schemas.prod_schemas(client, project, ["sales", "marketing"])
    finally:
        demo.drop_demo_prod(client, project)
    shipped = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    assert discovered["tables"] == shipped["tables"]
    assert prod_schemas.dump({**discovered, "project": shipped["project"]}) == SCHEMAS.read_text(encoding="utf-8")
