"""The demo prod's SQL (sql/demo/*.sql), checked without BigQuery.

Every statement must parse as BigQuery SQL once its identifiers are filled in, take the size and the
reference date only as query parameters, and have only validated, quoted identifiers filled in by
Python.
"""

from __future__ import annotations

import re
import string
from datetime import date, datetime

import pytest
import sqlglot
from sqlglot import exp

from envsync.core.identifiers import IdentifierError
from envsync.dev import demo

PROJECT = "envsync-demo"
SQL_FILES = sorted(demo.SQL_DIR.glob("*.sql"))


def test_every_sql_file_belongs_to_a_demo_object():
    assert {p.name for p in SQL_FILES} == {o.sql_file for o in demo.OBJECTS}
    assert len({o.key for o in demo.OBJECTS}) == len(demo.OBJECTS) == 8


@pytest.mark.parametrize("obj", demo.OBJECTS, ids=lambda o: o.key)
def test_parses_as_one_bigquery_statement(obj):
    statements = sqlglot.parse(demo.render(obj, PROJECT), read="bigquery")
    assert len(statements) == 1
    create = statements[0]
    assert isinstance(create, exp.Create)
    assert create.kind == ("VIEW" if obj.kind == "view" else "TABLE")
    target = create.find(exp.Table)
    assert (target.catalog, target.db, target.name) == (PROJECT, obj.dataset, obj.name)


@pytest.mark.parametrize("obj", demo.OBJECTS, ids=lambda o: o.key)
def test_placeholders_are_identifiers_only(obj):
    fields = {name for _, name, _, _ in string.Formatter().parse(demo.sql_template(obj)) if name}
    assert fields == set(demo.identifiers(obj, PROJECT))
    assert all(v.startswith("`") and v.endswith("`") for v in demo.identifiers(obj, PROJECT).values())


@pytest.mark.parametrize("obj", [o for o in demo.OBJECTS if o.kind == "table"], ids=lambda o: o.key)
def test_size_and_dates_come_from_query_parameters(obj):
    sql = demo.sql_template(obj)
    tree = sqlglot.parse_one(demo.render(obj, PROJECT), read="bigquery")
    used = demo.used_parameters(sql)
    assert set(used) <= set(demo.PARAMETER_NAMES)
    # the size comes from @rows (or a dimension size derived from it), the dates from @ref_date
    assert {"rows", "customers", "campaigns"} & set(used), f"{obj.sql_file} is not sized by a parameter"
    # no date, timestamp or datetime literal anywhere: every date derives from @ref_date
    literals = [n for n in tree.find_all(exp.Cast, exp.Literal) if _is_date_literal(n)]
    assert not literals, f"{obj.sql_file} has date literals {literals}"
    assert not re.search(r"\b(date|timestamp|datetime)\s*'", sql, re.I)
    assert not re.search(r"'\d{4}-\d{2}-\d{2}", sql)
    # no generator may be bounded by a literal row count, except the fixed block grid
    for call in tree.find_all(exp.GenerateSeries):
        end = call.args.get("end")
        if isinstance(end, exp.Literal):
            assert int(end.this) in (3, 4, demo.ID_BLOCKS - 1, demo.ID_BLOCK_SIZE), call.sql("bigquery")
    if obj.name not in ("campaigns", "customers"):
        assert "ref_date" in used, f"{obj.sql_file} must derive its dates from @ref_date"


def _is_date_literal(node: exp.Expression) -> bool:
    if isinstance(node, exp.Cast):
        return node.to.this in (
            exp.DataType.Type.DATE,
            exp.DataType.Type.TIMESTAMP,
            exp.DataType.Type.DATETIME,
        ) and isinstance(node.this, exp.Literal)
    return bool(node.is_string and re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", node.this))


def test_id_grid_covers_the_largest_demo():
    assert demo.ID_BLOCKS * demo.ID_BLOCK_SIZE == demo.MAX_ROWS
    for path in SQL_FILES:
        text = path.read_text()
        for match in re.finditer(r"generate_array\(0, (\d+)\)", text):
            assert int(match.group(1)) == demo.ID_BLOCKS - 1, path.name


def test_dimensions_have_no_date_or_time_expression():
    """customers and campaigns are the dimensions without any date column: nothing in them makes one."""
    for obj in demo.OBJECTS:
        if obj.name not in ("customers", "campaigns"):
            continue
        tree = sqlglot.parse_one(demo.render(obj, PROJECT), read="bigquery")
        assert "ref_date" not in demo.used_parameters(demo.sql_template(obj))
        timely = [
            n.sql("bigquery")
            for n in tree.find_all(exp.Func)
            if type(n).__name__.startswith(("Date", "Time", "CurrentDate", "CurrentTimestamp"))
        ]
        assert not timely, f"{obj.sql_file}: {timely}"


def test_view_mixes_qualified_and_dataset_only_references():
    obj = next(o for o in demo.OBJECTS if o.kind == "view")
    tree = sqlglot.parse_one(demo.render(obj, PROJECT), read="bigquery")
    select = tree.expression
    refs = {(t.catalog, t.db, t.name) for t in select.find_all(exp.Table) if t.db}
    assert (PROJECT, "sales", "orders") in refs
    assert ("", "marketing", "campaigns") in refs
    assert {db for _, db, _ in refs} == {"sales", "marketing"}


def test_sql_style_is_dbt_like():
    for path in SQL_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("--")[0]
            indent = len(code) - len(code.lstrip(" "))
            assert indent % 4 == 0, f"{path.name}:{number}: indent {indent} is not a multiple of 4"
            assert "\t" not in line and line == line.rstrip(), f"{path.name}:{number}: tabs or trailing blanks"
            assert not code.lstrip().startswith(","), f"{path.name}:{number}: leading comma"
            for keyword in ("SELECT", "FROM", "WHERE", "WITH", "CREATE", "JOIN", "GROUP BY", " AS "):
                assert keyword not in re.sub(r"'[^']*'", "", code), f"{path.name}:{number}: uppercase {keyword.strip()}"


def test_identifiers_are_validated_before_they_reach_sql():
    obj = demo.OBJECTS[0]
    with pytest.raises(IdentifierError):
        demo.render(obj, "bad`project; drop")
    with pytest.raises(IdentifierError):
        demo.render(demo.DemoObject("sales`x", "t", "table", obj.sql_file), PROJECT)


@pytest.mark.parametrize("rows", [0, -1, 50_000_001, 1.5, "10", True, None])
def test_rows_are_validated(rows):
    with pytest.raises(ValueError, match="rows must be"):
        demo.parameters(rows)


def test_ref_date_must_be_a_date():
    with pytest.raises(ValueError, match="ref_date"):
        demo.parameters(10, datetime(2026, 11, 21))
    with pytest.raises(ValueError, match="ref_date"):
        demo.parameters(10, "2026-11-21")


def test_parameters_and_expected_sizes():
    p = demo.parameters(1_000_000, date(2026, 11, 21))
    assert p == {"rows": 1_000_000, "ref_date": date(2026, 11, 21), "customers": 100_000, "campaigns": 100}
    assert demo.parameters(1)["customers"] == 10 and demo.parameters(1)["campaigns"] == 10
    assert demo.parameters(demo.MAX_ROWS)["campaigns"] == 1000
    sizes = demo.expected_row_counts(1000)
    assert sizes["sales.orders"] == 1000 and sizes["sales.orders_flat"] == 500
    assert sizes["marketing.ad_spend"] == 50 and sizes["sales.customers"] == 100


def test_cli_rejects_bad_rows(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--rows", "0"])
    assert exit_info.value.code == 2
    assert "rows must be between 1 and 50,000,000" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(["--rows", "lots"])
    assert "--rows must be an integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(["--rows", "10", "--ref-date", "21/11/2026"])
    assert "--ref-date must be YYYY-MM-DD" in capsys.readouterr().err
