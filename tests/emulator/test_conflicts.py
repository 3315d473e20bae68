"""Concurrent DDL that is idempotent by its own words succeeds in every job (emulators/bqfidelity/conflicts.py).

BigQuery's DDL reference (DDL_DOC) gives these statements an outcome that does not depend on who else
runs them: CREATE TABLE / VIEW / SCHEMA ... IF NOT EXISTS "has no effect" when the object exists, DROP
... IF EXISTS "has no effect" when it does not, ADD COLUMN IF NOT EXISTS / DROP COLUMN IF EXISTS likewise
for the column. So two jobs doing the same thing at the same moment both succeed: the one that comes
second sees the other's result and does nothing. The emulator's storage (DuckLake) refused the second
commit instead ("Failed to commit DuckLake transaction", a flaky 400 in CI when two parity runs created
their audit table at once). What stays an error: a plain CREATE TABLE that loses the race (the table
exists: only one job creates it), and a multi-statement transaction that conflicts with another one
(TRANSACTIONS_DOC, "Transaction concurrency": "Conflicting transactions are cancelled"), which is never
run again statement by statement.

The tests run on a stack of their own with the rate limits off (devstack.Stack.rate_limits): eight DDL jobs on
one table within 10 s are over BigQuery's table metadata update rate (emulators/bqfidelity/ratelimits.py),
which is not what these tests are about.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import fidkit
import pytest
from google.api_core import exceptions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "envsync-demo"
DDL_DOC = "https://cloud.google.com/bigquery/docs/reference/standard-sql/data-definition-language"
TRANSACTIONS_DOC = "https://cloud.google.com/bigquery/docs/transactions"
THREADS = 8
ROUNDS = 3


@pytest.fixture(scope="module")
def stack(make_module_stack: Any) -> Iterator[tuple[Any, Any, str]]:
    """A started stack of the module's own (rate limits off), a client on it and a dataset `ds` in it.

    One for the module (a start takes ~10 s)."""
    from google.cloud import bigquery

    from envsync.dev import devstack

    own = make_module_stack(rate_limits="off")
    devstack.up(own, timeout=120)
    client = fidkit.client_of(own)
    dataset = bigquery.Dataset(f"{PROJECT}.ds")
    dataset.location = "US"
    client.create_dataset(dataset)
    yield own, client, f"{PROJECT}.ds"


def at_once(own: Any, statements: list[str]) -> list[Exception | None]:
    """Run the statements as query jobs, each from a thread and a client of its own, all released at the
    same moment; returns each job's error (None: it succeeded)."""
    clients = [fidkit.client_of(own) for _ in statements]
    barrier = threading.Barrier(len(statements))
    outcomes: list[Exception | None] = [None] * len(statements)

    def job(index: int) -> None:
        barrier.wait()
        try:
            fidkit.run(clients[index], statements[index])
        except Exception as error:  # noqa: BLE001 - every outcome is asserted by the test
            outcomes[index] = error

    threads = [threading.Thread(target=job, args=(index,)) for index in range(len(statements))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def failures(outcomes: list[Exception | None]) -> list[str]:
    return [f"{type(error).__name__}: {error}" for error in outcomes if error is not None]


def test_create_table_if_not_exists_at_once_succeeds_in_every_job(stack: tuple[Any, Any, str]) -> None:
    """DDL_DOC, CREATE TABLE: "IF NOT EXISTS: If any table exists with the same name, the CREATE statement
    has no effect." The audit tables' statement (sql/audit/create_parity.sql: partitioned, NOT NULL)."""
    own, client, ds = stack
    for round_ in range(ROUNDS):
        table = f"{ds}.parity_{round_}"
        sql = (
            f"create table if not exists `{table}` (checked_at timestamp not null, run_id string not null, "
            "detail string) partition by date(checked_at)"
        )
        assert failures(at_once(own, [sql] * THREADS)) == []
        assert [t.table_id for t in client.list_tables(ds)].count(f"parity_{round_}") == 1
        created = client.get_table(table)
        assert [(f.name, f.field_type, f.mode) for f in created.schema] == [
            ("checked_at", "TIMESTAMP", "REQUIRED"),
            ("run_id", "STRING", "REQUIRED"),
            ("detail", "STRING", "NULLABLE"),
        ]
        assert created.time_partitioning is not None and created.time_partitioning.field == "checked_at"
        fidkit.run(client, f"insert into `{table}` (checked_at, run_id) values (current_timestamp(), 'r')")
        assert fidkit.run(client, f"select count(*) as n from `{table}`") == [{"n": 1}]


def test_create_view_and_schema_if_not_exists_at_once_succeed_in_every_job(stack: tuple[Any, Any, str]) -> None:
    """DDL_DOC, CREATE VIEW and CREATE SCHEMA: IF NOT EXISTS "has no effect" when one exists."""
    own, client, ds = stack
    for round_ in range(ROUNDS):
        view = f"create view if not exists `{ds}.v_{round_}` as select {round_} as x"
        schema = f"create schema if not exists `{PROJECT}.ds_{round_}` options (location = 'US')"
        assert failures(at_once(own, [view] * (THREADS // 2) + [schema] * (THREADS // 2))) == []
        assert fidkit.run(client, f"select x from `{ds}.v_{round_}`") == [{"x": round_}]
        assert client.get_dataset(f"{PROJECT}.ds_{round_}").dataset_id == f"ds_{round_}"


def test_drop_table_if_exists_at_once_succeeds_in_every_job(stack: tuple[Any, Any, str]) -> None:
    """DDL_DOC, DROP TABLE: "IF EXISTS: If no table exists with that name, the statement has no effect."
    DROP SCHEMA IF EXISTS likewise for a dataset."""
    own, client, ds = stack
    for round_ in range(ROUNDS):
        table = f"{ds}.gone_{round_}"
        fidkit.run(client, f"create table `{table}` (x int64)")
        fidkit.run(client, f"insert into `{table}` values (1), (2)")
        assert failures(at_once(own, [f"drop table if exists `{table}`"] * THREADS)) == []
        with pytest.raises(exceptions.NotFound):
            client.get_table(table)
    fidkit.run(client, f"create schema `{PROJECT}.emptied` options (location = 'US')")
    assert failures(at_once(own, [f"drop schema if exists `{PROJECT}.emptied`"] * THREADS)) == []
    with pytest.raises(exceptions.NotFound):
        client.get_dataset(f"{PROJECT}.emptied")


def test_add_column_if_not_exists_at_once_succeeds_in_every_job(stack: tuple[Any, Any, str]) -> None:
    """DDL_DOC, ALTER TABLE ADD COLUMN: "IF NOT EXISTS: If the column already exists, the statement has no
    effect" (sql/audit/add_columns_recovery_drills.sql); DROP COLUMN IF EXISTS likewise."""
    own, client, ds = stack
    table = f"{ds}.wide"
    fidkit.run(client, f"create table `{table}` (x int64)")
    for round_ in range(ROUNDS - 1):  # two rounds of the pair (an ALTER job takes longer)
        add = f"alter table `{table}` add column if not exists c{round_} string"
        assert failures(at_once(own, [add] * THREADS)) == []
        assert [f.name for f in client.get_table(table).schema] == ["x", f"c{round_}"]
        drop = f"alter table `{table}` drop column if exists c{round_}"
        assert failures(at_once(own, [drop] * THREADS)) == []
        assert [f.name for f in client.get_table(table).schema] == ["x"]


def test_plain_create_table_at_once_succeeds_in_one_job_only(stack: tuple[Any, Any, str]) -> None:
    """Without IF NOT EXISTS the race has a loser: one job creates the table, every other one fails (the
    table exists, or the conflict with the job that created it); none is made to succeed."""
    own, client, ds = stack
    for round_ in range(ROUNDS):
        outcomes = at_once(own, [f"create table `{ds}.once_{round_}` (x int64)"] * THREADS)
        assert outcomes.count(None) == 1, failures(outcomes)
        assert all(isinstance(e, exceptions.Conflict | exceptions.BadRequest) for e in outcomes if e), failures(
            outcomes
        )
        assert [t.table_id for t in client.list_tables(ds)].count(f"once_{round_}") == 1


def test_conflicting_transactions_the_second_commit_fails_and_changes_nothing(stack: tuple[Any, Any, str]) -> None:
    """TRANSACTIONS_DOC, "Transaction concurrency": "If a transaction mutates (update or deletes) rows in a
    table, then other transactions ... that mutate rows in the same table cannot run concurrently.
    Conflicting transactions are cancelled." Two transactions, each open in a session of its own
    (transactions over several queries of a session, TRANSACTIONS_DOC "Transaction scope"), delete rows
    of one table: the first COMMIT keeps its delete, the second fails and changes nothing; its statements
    are not run again one by one (run again, the second delete would leave only row 3)."""
    from google.cloud import bigquery

    _, client, ds = stack
    table = f"`{ds}.accounts`"
    fidkit.run(client, f"create table {table} (id int64)")
    fidkit.run(client, f"insert into {table} values (1), (2), (3)")

    def in_session(sql: str, session: str | None = None) -> str:
        config = bigquery.QueryJobConfig(
            create_session=session is None,
            connection_properties=[bigquery.ConnectionProperty("session_id", session)] if session else [],
        )
        job = client.query(sql, job_config=config, job_retry=None)
        job.result()
        return session or job.session_info.session_id

    first = in_session(f"begin transaction; delete from {table} where id = 1;")
    second = in_session(f"begin transaction; delete from {table} where id = 2;")
    in_session("commit transaction;", first)
    with pytest.raises(exceptions.GoogleAPICallError):
        in_session("commit transaction;", second)
    assert fidkit.run(client, f"select id from {table} order by id") == [{"id": 2}, {"id": 3}]
