"""The seed files (sql/seeds/<dataset>/<table>.sql), checked without BigQuery.

A seed is the versioned, deterministic content of one table of a derived environment: one BigQuery
SELECT (possibly WITH ... SELECT) that yields exactly the table's rows. It must be self-contained
(no table, no query parameter) and give the same rows on every run (no random, clock or session
function). Whether its columns match prod's schema is checked against BigQuery, not here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

SEEDS_DIR = Path(__file__).resolve().parents[2] / "sql" / "seeds"
SEED_FILES = sorted(SEEDS_DIR.glob("*/*.sql"))
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Functions whose result changes from one run (or one caller) to the next.
NON_DETERMINISTIC = {
    "rand",
    "current_date",
    "current_timestamp",
    "current_datetime",
    "current_time",
    "generate_uuid",
    "session_user",
}
# sqlglot parses most of them into dedicated nodes (generate_uuid becomes exp.Uuid); the names above
# still catch any of them that a sqlglot version leaves as an anonymous function.
NON_DETERMINISTIC_NODES = tuple(
    getattr(exp, name)
    for name in ("Rand", "CurrentDate", "CurrentTimestamp", "CurrentDatetime", "CurrentTime", "Uuid", "SessionUser")
    if hasattr(exp, name)
)


def _key(path: Path) -> str:
    return f"{path.parent.name}.{path.stem}"


def _parse(path: Path) -> exp.Expression:
    statements = sqlglot.parse(path.read_text(encoding="utf-8"), read="bigquery")
    assert len(statements) == 1 and statements[0] is not None, f"{_key(path)}: {len(statements)} statements"
    return statements[0]


def test_there_are_seeds_and_nothing_else_in_the_seed_tree():
    assert SEED_FILES, f"no seed under {SEEDS_DIR}"
    stray = [
        p.relative_to(SEEDS_DIR)
        for p in SEEDS_DIR.rglob("*")
        if p.is_file() and (p.suffix != ".sql" or p.parent.parent != SEEDS_DIR)
    ]
    assert not stray, f"files that are not sql/seeds/<dataset>/<table>.sql: {stray}"


@pytest.mark.parametrize("path", SEED_FILES, ids=_key)
def test_path_names_a_dataset_and_a_table(path):
    assert IDENTIFIER.fullmatch(path.parent.name), path
    assert IDENTIFIER.fullmatch(path.stem), path


@pytest.mark.parametrize("path", SEED_FILES, ids=_key)
def test_starts_with_a_comment_saying_what_the_rows_are(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("-- ") and first[3:].strip(), f"{_key(path)}: first line {first!r}"


@pytest.mark.parametrize("path", SEED_FILES, ids=_key)
def test_is_one_select_statement(path):
    text = path.read_text(encoding="utf-8")
    # no ';' at all: a second statement, or even a trailing one, breaks `select * from (<seed>)`
    tokens = sqlglot.tokenize(text, read="bigquery")
    assert not [t for t in tokens if t.token_type == TokenType.SEMICOLON], f"{_key(path)}: has a ';'"
    tree = _parse(path)
    assert isinstance(tree, (exp.Select, exp.Union)), f"{_key(path)}: top level is {type(tree).__name__}"
    # named columns only: a seed spells out each of prod's column names, once
    names = tree.named_selects
    projections = tree.selects
    assert not any(p.is_star for p in projections), f"{_key(path)}: select star instead of named columns"
    assert len(names) == len(projections) and all(names), f"{_key(path)}: unnamed column in {names}"
    assert len(set(names)) == len(names), f"{_key(path)}: duplicate column names {names}"


@pytest.mark.parametrize("path", SEED_FILES, ids=_key)
def test_references_no_table(path):
    tree = _parse(path)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    tables = [
        table.sql("bigquery")
        for table in tree.find_all(exp.Table)
        if table.db or table.catalog or table.name not in ctes
    ]
    assert not tables, f"{_key(path)} reads tables {tables}: a seed must be self-contained data"


@pytest.mark.parametrize("path", SEED_FILES, ids=_key)
def test_takes_no_query_parameter(path):
    tree = _parse(path)
    parameters = [p.sql("bigquery") for p in tree.find_all(exp.Parameter, exp.Placeholder)]
    assert not parameters, f"{_key(path)} uses parameters {parameters}"


@pytest.mark.parametrize("path", SEED_FILES, ids=_key)
def test_uses_no_non_deterministic_function(path):
    tree = _parse(path)
    found = [node.sql("bigquery") for node in tree.find_all(*NON_DETERMINISTIC_NODES)]
    found += [
        node.sql("bigquery") for node in tree.find_all(exp.Anonymous) if str(node.name).lower() in NON_DETERMINISTIC
    ]
    # bare keywords (`current_date` without parentheses) may also come back as plain columns
    found += [
        column.sql("bigquery")
        for column in tree.find_all(exp.Column)
        if not column.table and column.name.lower() in NON_DETERMINISTIC
    ]
    assert not found, f"{_key(path)} is not deterministic: {found}"


@pytest.mark.parametrize("path", SEED_FILES, ids=_key)
def test_sql_style_is_dbt_like(path):
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("--")[0]
        indent = len(code) - len(code.lstrip(" "))
        where = f"{_key(path)}:{number}"
        assert indent % 4 == 0, f"{where}: indent {indent} is not a multiple of 4"
        assert "\t" not in line and line == line.rstrip(), f"{where}: tabs or trailing blanks"
        assert not code.lstrip().startswith(","), f"{where}: leading comma"
        for keyword in ("SELECT", "FROM", "WHERE", "WITH", "JOIN", "GROUP BY", "ORDER BY", " AS "):
            assert keyword not in re.sub(r"'[^']*'", "", code), f"{where}: uppercase {keyword.strip()}"


# The checks above must be able to fail: each bad seed below is rejected by the same helpers.
@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("-- x\nselect 1 as a;\nselect 2 as a", "';'"),
        ("-- x\ninsert into d.t (a) select 1", "top level"),
        ("-- x\nselect a from d.t", "reads tables"),
        ("-- x\nselect a from `p.d.t`", "reads tables"),
        ("-- x\nwith t as (select 1 as a) select a from t, other", "reads tables"),
        ("-- x\nselect rand() as a", "not deterministic"),
        ("-- x\nselect current_date() as a", "not deterministic"),
        ("-- x\nselect current_date as a", "not deterministic"),
        ("-- x\nselect current_timestamp() as a", "not deterministic"),
        ("-- x\nselect current_datetime() as a", "not deterministic"),
        ("-- x\nselect generate_uuid() as a", "not deterministic"),
        ("-- x\nselect session_user() as a", "not deterministic"),
        ("-- x\nselect @rows as a", "parameters"),
        ("-- x\nselect *, 1 as b from unnest([1]) as a", "select star"),
        ("-- x\nselect 1 as a, 2 as a", "duplicate column"),
    ],
)
def test_bad_seeds_are_rejected(tmp_path, sql, problem):
    path = tmp_path / "sales" / "bad.sql"
    path.parent.mkdir()
    path.write_text(sql, encoding="utf-8")
    checks = (
        test_is_one_select_statement,
        test_references_no_table,
        test_takes_no_query_parameter,
        test_uses_no_non_deterministic_function,
    )
    failures = []
    for check in checks:
        try:
            check(path)
        except (AssertionError, sqlglot.errors.ParseError) as error:
            failures.append(str(error))
    assert failures, f"accepted: {sql!r}"
    assert any(problem in f for f in failures), failures


def test_good_seed_is_accepted(tmp_path):
    path = tmp_path / "sales" / "good.sql"
    path.parent.mkdir()
    path.write_text(
        "-- two rows\nwith ids as (\n    select id\n    from unnest(generate_array(1, 2)) as id\n)\n\n"
        "select\n    id,\n    date_add(date '2026-01-01', interval id day) as day\nfrom ids\n",
        encoding="utf-8",
    )
    test_is_one_select_statement(path)
    test_references_no_table(path)
    test_takes_no_query_parameter(path)
    test_uses_no_non_deterministic_function(path)
    test_sql_style_is_dbt_like(path)
