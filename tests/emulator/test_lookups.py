"""Table lookups cost one object, not the whole catalog, and answer as before (emulators/bqfidelity/lookups.py).

BigQuery's tables.get does not depend on how many tables a project holds
(https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/get); local-bigquery 0.4.0 sized every
table of every dataset on each lookup. These tests check that the answers are unchanged where the
lookups were replaced (tables and views found, missing tables 404, a job's results readable through
getQueryResults and tabledata.list, result tables never listed, temporary tables of a script), and, in
the emulator's own Python, that the replaced lookups give exactly the original answers without
enumerating the catalog.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fidkit import in_emulator, run

pytestmark = pytest.mark.integration

P = "envsync-demo"


def _table(bq: Any, ds: str, name: str = "t") -> str:
    from google.cloud import bigquery
    from google.cloud.bigquery import SchemaField as F

    table = bigquery.Table(f"{P}.{ds}.{name}", schema=[F("id", "INTEGER", "REQUIRED"), F("d", "DATE")])
    table.time_partitioning = bigquery.TimePartitioning(field="d")
    bq.create_table(table)
    run(bq, f"insert into `{P}.{ds}.{name}` (id, d) values (1, date '2026-11-01'), (2, null), (3, null)")
    return f"{P}.{ds}.{name}"


def test_tables_get_finds_tables_and_views_with_their_schema_and_rows(bq: Any, dataset: Callable[..., str]) -> None:
    """tables.get (https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/get): type, schema, numRows."""
    ds = dataset()
    name = _table(bq, ds)
    run(bq, f"create view `{P}.{ds}.v` as select id from `{name}`")
    table = bq.get_table(name)
    assert (table.table_type, table.num_rows) == ("TABLE", 3)
    assert [(f.name, f.mode) for f in table.schema] == [("id", "REQUIRED"), ("d", "NULLABLE")]
    assert table.time_partitioning.field == "d"
    view = bq.get_table(f"{P}.{ds}.v")
    assert view.table_type == "VIEW"
    assert [f.name for f in view.schema] == ["id"]


def test_missing_and_wrong_case_tables_are_not_found(bq: Any, dataset: Callable[..., str]) -> None:
    """Table names are case-sensitive (https://cloud.google.com/bigquery/docs/tables#table_naming): T is not t."""
    from google.api_core.exceptions import NotFound

    ds = dataset()
    _table(bq, ds)
    for missing in ("nope", "T"):
        with pytest.raises(NotFound):
            bq.get_table(f"{P}.{ds}.{missing}")
    with pytest.raises(NotFound):
        run(bq, f"select * from `{P}.{ds}.nope`")
    bq.delete_table(f"{P}.{ds}.t")
    with pytest.raises(NotFound):
        bq.get_table(f"{P}.{ds}.t")


def test_query_results_readable_and_result_tables_never_listed(bq: Any, dataset: Callable[..., str]) -> None:
    """A query's anonymous result table (https://cloud.google.com/bigquery/docs/cached-results, "writing
    query results": temporary, not listed) is read by getQueryResults and tabledata.list, never listed."""
    ds = dataset()
    name = _table(bq, ds)
    job = bq.query(f"select id, d from `{name}` order by id", job_retry=None)
    assert [row["id"] for row in job.result()] == [1, 2, 3]  # jobs.getQueryResults
    destination = job.destination
    assert destination is not None
    assert [row["id"] for row in bq.list_rows(destination)] == [1, 2, 3]  # tabledata.list
    assert [row["id"] for row in bq.list_rows(destination, max_results=2)] == [1, 2]
    assert [t.table_id for t in bq.list_tables(f"{P}.{ds}")] == ["t"]
    assert destination.dataset_id not in {d.dataset_id for d in bq.list_datasets(P)}


def test_temporary_tables_of_a_script_are_seen_by_its_statements(bq: Any, dataset: Callable[..., str]) -> None:
    """Multi-statement queries keep temporary tables for the script
    (https://cloud.google.com/bigquery/docs/multi-statement-queries#temporary_tables)."""
    ds = dataset()
    name = _table(bq, ds)
    rows = run(bq, f"create temp table ids as select id from `{name}` where id > 1; select count(*) as n from ids;")
    assert rows == [{"n": 2}]


def test_information_schema_tables_lists_names_types_and_creation_times(bq: Any, dataset: Callable[..., str]) -> None:
    """INFORMATION_SCHEMA.TABLES (https://cloud.google.com/bigquery/docs/information-schema-tables): one row
    per table, view and snapshot of the dataset (or of the region), with table_type, is_insertable_into and
    creation_time as tables.get reports them. The fidelity layer builds it from the table listing rather
    than a full load of every table; the answers must stay those of BigQuery."""
    from google.cloud import bigquery

    ds, other = dataset(), dataset()
    name = _table(bq, ds)
    run(bq, f"create table `{P}.{ds}.ddl` (a int64) options (description = 'made by DDL')")
    run(bq, f"create view `{P}.{ds}.v` as select id from `{name}`")
    run(bq, f"create snapshot table `{P}.{ds}.t__20261130T0100Z` clone `{name}`")
    bq.create_table(bigquery.Table(f"{P}.{ds}.no_schema"))  # a table without columns yet
    run(bq, f"create table `{P}.{other}.elsewhere` (a int64)")
    expected_types = {
        "t": "BASE TABLE",
        "ddl": "BASE TABLE",
        "v": "VIEW",
        "t__20261130T0100Z": "SNAPSHOT",
        "no_schema": "BASE TABLE",
    }

    rows = run(
        bq,
        f"select table_catalog, table_schema, table_name, table_type, is_insertable_into, "
        f"is_typed, creation_time from `{P}.{ds}.INFORMATION_SCHEMA.TABLES` order by table_name",
    )
    assert [r["table_name"] for r in rows] == sorted(expected_types)
    for row in rows:
        table = bq.get_table(f"{P}.{ds}.{row['table_name']}")
        assert (row["table_catalog"], row["table_schema"]) == (P, ds)
        assert row["table_type"] == expected_types[row["table_name"]]
        assert row["is_insertable_into"] == ("YES" if row["table_type"] == "BASE TABLE" else "NO")
        assert row["is_typed"] == "NO"
        assert row["creation_time"] == table.created, row["table_name"]

    region = run(
        bq,
        f"select table_schema, table_name, table_type from `{P}.region-us.INFORMATION_SCHEMA.TABLES` "
        "where table_schema in unnest(@ds) order by 1, 2",
        ds=[ds, other],
    )
    assert [(r["table_schema"], r["table_name"]) for r in region] == (
        [(ds, n) for n in sorted(expected_types)] + [(other, "elsewhere")]
    )

    bq.delete_table(f"{P}.{ds}.ddl")
    after = run(bq, f"select table_name from `{P}.{ds}.INFORMATION_SCHEMA.TABLES` order by 1")
    assert [r["table_name"] for r in after] == sorted(set(expected_types) - {"ddl"})


_EQUIVALENCE = textwrap.dedent(
    """
    import os, tempfile
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="bqfidelity-lookups-")
    os.environ["DEFAULT_PROJECT_ID"] = "envsync-demo"
    from local_bigquery.engine import database as db
    from bqfidelity import lookups

    original_objects, original_fetch = db.objects, db.fetch
    sent = []
    def recording(sql, params=None):
        sent.append(sql)
        return original_fetch(sql, params)
    fetch = lookups._fetch(db, recording)
    db.fetch = fetch
    objects = lookups._objects(db, original_objects)
    con = db.connection()
    P = "envsync-demo"
    diffs, enumerations = [], []

    def same(tag, *args):
        want, sent[:] = original_objects(*args), []
        got = objects(*args)
        if got != want:
            diffs.append((tag, "objects", want, got))
        if args[0] == P and any("duckdb_tables()" in s for s in sent):
            enumerations.append((tag, "objects", sent[:]))
        if len(args) == 3:
            for sql, params in ((lookups.REQUIRED_COLUMNS_SQL, list(args)),
                                (lookups.HAS_COLUMN_SQL, [*args, "_PARTITIONTIME"]),
                                (lookups.HAS_COLUMN_SQL, [*args, "id"])):
                want, sent[:] = original_fetch(sql, params), []
                got = fetch(sql, params)
                if sorted(got) != sorted(want):
                    diffs.append((tag, sql[:40], want, got))
                ducklake_table = args[0] == P and not args[2].startswith("v")
                if ducklake_table and any("duckdb_columns()" in s for s in sent):
                    enumerations.append((tag, sql[:40], sent[:]))

    T = f'"{P}"."p"."t"'
    con.execute(f'CREATE SCHEMA "{P}"."p"')
    con.execute(f'CREATE SCHEMA "{P}"."q"')
    for i in range(30):
        con.execute(f'CREATE TABLE "{P}"."q"."f{i}" (a INT)')
    con.execute(f"CREATE TABLE {T} (id BIGINT NOT NULL, d DATE, s STRUCT(a INT) NOT NULL)")
    same("empty", P, "p", "t")
    con.execute(f"INSERT INTO {T} SELECT range, NULL, {{'a': 1}} FROM range(10)")
    same("inserted", P, "p", "t")
    con.execute(f"DELETE FROM {T} WHERE id < 3")
    same("deleted", P, "p", "t")
    con.execute(f"ALTER TABLE {T} ALTER COLUMN id DROP NOT NULL")
    same("drop not null", P, "p", "t")
    con.execute(f"ALTER TABLE {T} ADD COLUMN z INT")
    same("added column", P, "p", "t")
    con.execute(f'CREATE VIEW "{P}"."p"."v" AS SELECT id AS "_PARTITIONTIME" FROM {T}')
    same("view", P, "p", "v")
    same("listing", P, "p")
    same("missing", P, "p", "nope")
    same("other case", P, "p", "T")
    con.execute(f'ALTER TABLE {T} RENAME TO t2')
    same("renamed away", P, "p", "t")
    same("renamed to", P, "p", "t2")
    same("listing after rename", P, "p")
    con.execute(f'DROP TABLE "{P}"."p"."t2"')
    same("dropped", P, "p", "t2")
    con.execute(f'CREATE OR REPLACE TABLE "{P}"."p"."t" AS SELECT 1 AS id UNION ALL SELECT 2')
    same("ctas", P, "p", "t")
    cur = con.cursor()
    cur.execute("BEGIN")
    cur.execute(f'CREATE TABLE "{P}"."p"."pending" (a INT)')
    same("uncommitted", P, "p", "pending")
    cur.execute("COMMIT")
    same("committed", P, "p", "pending")
    con.execute(f'CREATE TABLE "emulator"."_results"."{P}:job_1" (a INT NOT NULL, b INT)')
    con.execute(f'INSERT INTO "emulator"."_results"."{P}:job_1" VALUES (1, 2), (3, 4)')
    same("result table", "emulator", "_results", f"{P}:job_1")
    same("result table other case", "emulator", "_results", f"{P}:JOB_1")
    same("result table missing", "emulator", "_results", f"{P}:job_2")
    con.execute('CREATE TABLE "emulator"."_results"."we""ird.na me" AS SELECT 1 AS a')
    same("quoted name", "emulator", "_results", 'we"ird.na me')
    same("no such database", "nodb", "x", "y")
    temp = con.cursor()
    temp.execute("CREATE TEMP TABLE tt AS SELECT 1 AS a")
    temp.execute("CREATE TEMP VIEW tv AS SELECT 1 AS a")
    if temp.sql(lookups.TEMPORARY_SQL).fetchall() != temp.sql(lookups.TEMPORARY_CHEAP_SQL).fetchall():
        diffs.append(("temporary tables",))
    assert not diffs, diffs
    assert not enumerations, enumerations
    print("identical")
    """
)


def test_replaced_lookups_answer_exactly_as_local_bigquery_without_enumerating(tmp_path: Path) -> None:
    """In the emulator's Python: objects(), a table's NOT NULL columns, the _PARTITIONTIME check and the
    temporary tables give local-bigquery's own answers, and no DuckLake lookup lists every table."""
    done = in_emulator(_EQUIVALENCE, tmp_path)
    assert done.returncode == 0 and "identical" in done.stdout, done.stdout + done.stderr[-3000:]


_IMPORTS = textwrap.dedent(
    """
    import collections, importlib.util, os, sys, tempfile
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="bqfidelity-imports-")
    os.environ["DEFAULT_PROJECT_ID"] = "envsync-demo"
    from local_bigquery.engine import database as db
    searched = collections.Counter()
    class Spy:
        def find_spec(self, name, path=None, target=None):
            searched[name] += 1
            return None
    sys.meta_path.insert(0, Spy())
    from local_bigquery.catalog import datasets, tables
    from local_bigquery.models import Dataset
    P = "envsync-demo"
    datasets.create(P, Dataset.model_validate({"datasetReference": {"projectId": P, "datasetId": "b"}}))
    con = db.connection()
    for i in range(10):
        con.execute(f'CREATE TABLE "{P}"."b"."t{i}" (a INT)')
        tables.record(P, "b", f"t{i}", tables.defaults(P, "b", f"t{i}"))
    def convert():   # a listing: each table's stored metadata is read and converted
        return [t.model_dump() for t in tables.list_(P, "b")]
    before = convert()
    print("searched before:", searched["pandas"])
    from bqfidelity import lookups
    print("marked:", lookups._record_missing_modules())
    searched.clear()
    after = convert()
    print("searched after:", searched["pandas"])
    print("same answers:", before == after)
    """
)


def test_a_module_the_emulator_lacks_is_not_searched_for_on_every_result(tmp_path: Path) -> None:
    """DuckDB's Python client tries `import pandas` on each result it converts; pandas is not installed
    in the emulator's environment, so each try searched sys.path again (0.8 s of a 1,000-table listing).
    Marked absent once, the import fails at once and the results are the same."""
    done = in_emulator(_IMPORTS, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert int(lines["searched before"]) >= 10, done.stdout  # the cost being removed is there
    assert lines["marked"] == "['pandas']"
    assert lines["searched after"] == "0"
    assert lines["same answers"] == "True"


_PARAMETERS = textwrap.dedent(
    """
    import os, tempfile
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="bqfidelity-params-")
    os.environ["DEFAULT_PROJECT_ID"] = "envsync-demo"
    import sqlglot
    from bqfidelity import lookups
    from local_bigquery.sql.rules import parameters
    texts = [f"CAST(CAST($r{i}_c AS VARCHAR) AS VARCHAR)" for i in range(50)]
    plain = [sqlglot.parse_one(t, dialect="duckdb") for t in texts]
    lookups.install()
    calls = []
    original = sqlglot.parse_one
    def counted(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)
    sqlglot.parse_one = counted
    cached = parameters.sqlglot
    first = [cached.parse_one(t, dialect="duckdb") for t in texts]
    second = [cached.parse_one(t, dialect="duckdb") for t in texts]
    print("same trees:", all(a == p and b == p for a, b, p in zip(first, second, plain)))
    print("fresh trees:", all(a is not b for a, b in zip(first, second)))
    first[0].set("this", sqlglot.exp.column("changed"))
    print("copy unaffected:", cached.parse_one(texts[0], dialect="duckdb") == plain[0])
    print("parsed:", len(calls))
    print("sql:", [e.sql(dialect="duckdb") for e in second] == [p.sql(dialect="duckdb") for p in plain])
    """
)


def test_query_parameters_are_parsed_once_per_text_with_the_same_trees(tmp_path: Path) -> None:
    """local-bigquery parses each parameter's DuckDB expression at every placeholder of every translation;
    the fidelity layer parses each text once and hands out copies: same trees, same SQL, fresh objects."""
    done = in_emulator(_PARAMETERS, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert lines["same trees"] == "True" and lines["fresh trees"] == "True", done.stdout
    assert lines["copy unaffected"] == "True" and lines["sql"] == "True", done.stdout
    assert lines["parsed"] == "50", done.stdout  # 100 requests, one parse per distinct text


def test_many_query_parameters_bind_each_value_to_its_own_placeholder(bq: Any, dataset: Callable[..., str]) -> None:
    """Parameterized queries (https://cloud.google.com/bigquery/docs/parameterized-queries): 2,000 named
    values in one INSERT, then the same names with other values in a second one, each lands in its row."""
    ds = dataset()
    run(bq, f"create table `{P}.{ds}.p` (n int64, s string)")
    for offset in (0, 1000):
        params = {}
        values = []
        for i in range(1000):
            params[f"r{i}_n"], params[f"r{i}_s"] = offset + i, f"v{offset + i}"
            values.append(f"(@r{i}_n, @r{i}_s)")
        run(bq, f"insert into `{P}.{ds}.p` (n, s) values " + ", ".join(values), **params)
    rows = run(
        bq,
        f"select count(*) as c, countif(s = concat('v', cast(n as string))) as ok, "
        f"min(n) as lo, max(n) as hi, count(distinct n) as d from `{P}.{ds}.p`",
    )
    assert rows == [{"c": 2000, "ok": 2000, "lo": 0, "hi": 1999, "d": 2000}]
