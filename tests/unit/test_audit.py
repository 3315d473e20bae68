"""The audit rows of a run (pure) and the parameterised INSERT that appends them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from envsync.core.guard import TableRef, Typed
from envsync.observe.audit import ACTION_COLUMNS, RUN_COLUMNS, environment_of, insert_rows, run_rows

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 21, 2, 30, tzinfo=UTC)


def results() -> list[dict[str, Any]]:
    return [
        {
            "table": "sales.orders",
            "target": "dev_sales.orders",
            "action": "clone_window",
            "reason": "r",
            "rows": 10,
            "est_bytes_billed": 100,
            "bytes_billed": 0,
            "jobs": 3,
            "seconds": 1.5,
            "status": "ok",
            "error": None,
        },
        {
            "table": "sales.customers",
            "target": "dev_sales.customers",
            "action": "full_clone",
            "reason": "r",
            "rows": None,
            "est_bytes_billed": 50,
            "bytes_billed": 0,
            "jobs": 1,
            "seconds": 0.5,
            "status": "failed",
            "error": "VerificationError: rows per partition differ",
        },
        {
            "table": "sales.old",
            "target": "dev_sales.old",
            "action": "drop",
            "reason": "dev only",
            "rows": None,
            "status": "dropped",
        },
    ]


def test_run_rows_summarise_the_run_and_keep_every_action() -> None:
    manifest = {
        "cut": "2026-11-21T02:01:00+00:00",
        "window": {"start": "2026-07-01T00:00:00+00:00", "end": "2026-11-21T02:00:00+00:00", "quarters": 2},
        "params": {"datasets": ["sales", "marketing"]},
        "manifest_uri": "gs://b/manifests/x/report.json",
    }
    run, actions = run_rows(
        dag_id="prod_to_dev_sync",
        run_id="scheduled__x",
        run_type="scheduled",
        logical_date=NOW,
        started_at=NOW - dt.timedelta(minutes=5),
        manifest=manifest,
        results=results(),
        status="failed",
        error="AirflowFailException: failed",
        now=NOW,
    )
    assert set(run) == set(RUN_COLUMNS) and all(set(a) == set(ACTION_COLUMNS) for a in actions)
    assert (run["environment"], run["datasets"], run["objects"], run["failed"]) == ("dev", "sales,marketing", 2, 1)
    assert (run["row_count"], run["est_bytes_billed"], run["jobs"], run["duration_seconds"]) == (10, 150, 4, 300.0)
    assert run["window_start"] == "2026-07-01T00:00:00+00:00" and run["manifest"] == "gs://b/manifests/x/report.json"
    assert [(a["table_name"], a["status"]) for a in actions] == [
        ("sales.orders", "ok"),
        ("sales.customers", "failed"),
        ("sales.old", "dropped"),
    ]


@pytest.mark.parametrize(
    "dag_id, manifest, env",
    [
        ("prod_to_dev_sync", {}, "dev"),
        ("reseed_environments", {"params": {"environments": ["qa", "staging"]}}, "qa,staging"),
        ("reseed_environments", {"params": {"test_env": "alice"}}, "test_alice"),
        ("prod_copy", {"env": "prodcopy"}, "prodcopy"),
        ("recovery_drill", None, "drill"),
    ],
)
def test_environment_of(dag_id: str, manifest: Any, env: str) -> None:
    assert environment_of(dag_id, manifest) == env


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def run(self, sql: str, *, key: tuple[str, ...], params: dict[str, Any] | None = None, stats: Any = None) -> None:
        self.calls.append((sql, params or {}))


def test_insert_binds_every_value_as_a_typed_parameter() -> None:
    runner = Recorder()
    table = TableRef("acme-data", "envsync_audit", "table_actions")
    rows = [
        {"table_name": "sales.orders'; drop table x; --", "row_count": 3, "recorded_at": NOW},
        {"table_name": "sales.customers", "status": "ok", "recorded_at": "2026-11-21T02:00:00+00:00"},
    ]
    assert insert_rows(runner, table, ACTION_COLUMNS, rows, key=("k",)) == 2  # type: ignore[arg-type]  # a fake runner
    sql, params = runner.calls[0]
    assert sql.startswith("insert into `acme-data.envsync_audit.table_actions` (`recorded_at`, `dag_id`")
    assert "drop table" not in sql and "(@r0_recorded_at, @r0_dag_id" in sql and "(@r1_recorded_at" in sql
    assert params["r0_table_name"] == "sales.orders'; drop table x; --" and params["r0_row_count"] == 3
    assert params["r1_row_count"] == Typed("INT64", None)
    assert params["r1_recorded_at"] == dt.datetime(2026, 11, 21, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown columns \\['nope'\\]"):
        insert_rows(runner, table, ACTION_COLUMNS, [{"nope": 1}], key=("k",))  # type: ignore[arg-type]  # a fake runner
    assert insert_rows(runner, table, ACTION_COLUMNS, [], key=("k",)) == 0  # type: ignore[arg-type]  # a fake runner


def test_insert_of_5000_actions_is_batched_under_the_parameter_limit() -> None:
    """BigQuery binds at most 10,000 parameters per query (quotas: query jobs): every row still lands."""
    from envsync.observe.audit import MAX_QUERY_PARAMETERS

    runner = Recorder()
    table = TableRef("acme-data", "envsync_audit", "table_actions")
    rows = [{"table_name": f"sales.t{i}", "row_count": i, "recorded_at": NOW} for i in range(5000)]
    assert insert_rows(runner, table, ACTION_COLUMNS, rows, key=("k",)) == 5000  # type: ignore[arg-type]  # a fake runner
    assert len(runner.calls) > 1 and all(len(params) <= MAX_QUERY_PARAMETERS for _, params in runner.calls)
    inserted = [
        params[f"r{i}_table_name"] for _, params in runner.calls for i in range(len(params) // len(ACTION_COLUMNS))
    ]
    assert inserted == [f"sales.t{i}" for i in range(5000)]
