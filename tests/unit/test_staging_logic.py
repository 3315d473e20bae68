"""Staging's backups and the QA -> staging cut, the pure parts: config, params, the cut's alert line and
its audit counts. The BigQuery parts run on the emulators (tests/integration/test_staging_*.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from envsync.core.config import ConfigError, parse_config
from envsync.observe.alerts import build_message
from envsync.observe.audit import environment_of, run_rows
from envsync.operators.params import check_backup_environments, check_environment


def config(**backups: Any) -> Any:
    data = {
        "project": "envsync-demo",
        "prod": {"datasets": ["sales", "marketing"]},
        "state": {"bucket": "envsync-demo-state"},
    }
    if backups:
        data["backups"] = backups
    return parse_config(data, "test.yaml")


def test_backups_protect_prod_by_default_and_staging_when_listed() -> None:
    assert config().backups.environments == ["prod"]
    both = config(environments=["prod", "staging"])
    assert both.backups.environments == ["prod", "staging"]
    # staging's datasets, its backup and drill datasets: the source name with the usual prefixes
    assert both.source_dataset("prod", "sales") == "sales"
    assert both.source_dataset("staging", "sales") == "staging_sales"
    assert both.env_dataset("backup", both.source_dataset("staging", "sales")) == "backup_staging_sales"
    assert both.env_dataset("drill", both.source_dataset("staging", "sales")) == "drill_staging_sales"
    with pytest.raises(ValueError, match="environment 'qa' has no backups; allowed: \\['prod', 'staging'\\]"):
        both.source_dataset("qa", "sales")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["prod", "qa"], "backups.environments.1: Input should be 'prod' or 'staging' (got 'qa')"),
        ([], "backups.environments: List should have at least 1 item"),
        (["staging", "staging"], "backups.environments: environments are listed twice: ['staging', 'staging']"),
    ],
)
def test_bad_backup_environments_name_the_key(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(environments=value)
    assert message in str(info.value)


def test_the_cut_schedule_is_optional() -> None:
    assert config().environments.staging.cut_schedule is None
    data = {
        "project": "envsync-demo",
        "prod": {"datasets": ["sales"]},
        "state": {"bucket": "b-state"},
        "environments": {"staging": {"prefix": "staging_", "cut_schedule": "0 6 * * 1"}},
    }
    assert parse_config(data).environments.staging.cut_schedule == "0 6 * * 1"
    data["environments"]["staging"]["cut_schedul"] = "x"
    with pytest.raises(ConfigError, match="environments.staging.cut_schedul: unknown key"):
        parse_config(data)


def test_source_and_environments_params() -> None:
    assert check_environment("source", None) == "prod"
    assert check_environment("source", "staging") == "staging"
    with pytest.raises(ValueError, match="param source must be one of \\['prod', 'staging'\\], got 'qa'"):
        check_environment("source", "qa")
    cfg = config(environments=["prod", "staging"])
    assert check_backup_environments(cfg, None) == ["prod", "staging"]
    assert check_backup_environments(cfg, ["staging", "staging"]) == ["staging"]
    with pytest.raises(ValueError, match="param environments must be one of \\['prod', 'staging'\\], got 'dev'"):
        check_backup_environments(cfg, ["dev"])
    with pytest.raises(ValueError, match="param environments must be a list"):
        check_backup_environments(cfg, "staging")


def cut_report(failed: bool) -> dict[str, Any]:
    def row(
        table: str, action: str, status: str = "ok", rows: int | None = None, error: str | None = None
    ) -> dict[str, Any]:
        return {
            "table": table,
            "target": table.replace("qa_", "staging_"),
            "action": action,
            "status": status,
            "rows": rows,
            "error": error,
            "est_bytes_billed": 0,
        }

    results = [
        row("staging_sales.orders", "pre_cut_pin", rows=40),
        row("staging_sales.customers", "pre_cut_pin", rows=10),
        row("qa_sales.orders", "stage", rows=35),
        row(
            "qa_sales.customers",
            "stage",
            "failed" if failed else "ok",
            10,
            "VerificationError: differs" if failed else None,
        ),
    ]
    results += (
        [row("staging_sales", "publish", "failed", error="not published, staging left as it was")]
        if failed
        else [row("qa_sales.orders", "publish"), row("qa_sales.customers", "publish")]
    )
    return {
        "dag_id": "staging_cut",
        "env": "staging",
        "cut": "2026-11-30T12:00:00+00:00",
        "params": {"datasets": ["sales"]},
        "results": results,
        "staging_cut": {"cut": "2026-11-30T12:00:00+00:00", "seed_version": "abc", "migration_version": None},
    }


def test_the_cut_alert_counts_the_copied_tables_and_names_what_it_carried_over() -> None:
    ok = build_message(
        kind="success",
        dag_id="staging_cut",
        run_id="r1",
        report=cut_report(False),
        duration=65,
        url="http://x/run",
        failed_tasks=[],
    )["text"]
    assert ok.splitlines()[:3] == [
        ":white_check_mark: envsync *staging_cut* succeeded on *staging* (sales)",
        "tables: 2 (2 ok, 0 failed) | rows: 45 | est. bytes billed: 0 B | duration: 1m 5s",
        "T = 2026-11-30T12:00:00+00:00",
    ]
    assert ok.splitlines()[3] == (
        "QA -> staging as of T = 2026-11-30T12:00:00+00:00: seed version abc, migration "
        "version none (qa holds no schema migration)"
    )
    bad = build_message(
        kind="failure",
        dag_id="staging_cut",
        run_id="r2",
        report=cut_report(True),
        duration=5,
        url="http://x/run",
        failed_tasks=["publish"],
    )["text"]
    assert "tables: 2 (1 ok, 1 failed)" in bad
    assert "failed: qa_sales.customers -> staging_sales.customers: VerificationError: differs" in bad
    assert "failed: staging_sales -> staging_sales: not published, staging left as it was" in bad


def test_the_cut_audit_row_counts_copied_tables_only() -> None:
    report = cut_report(False)
    assert environment_of("staging_cut", report) == "staging"
    run, actions = run_rows(
        dag_id="staging_cut",
        run_id="r1",
        run_type="manual",
        logical_date=None,
        started_at=None,
        manifest=report,
        results=report["results"],
        status="success",
        error=None,
        now=dt.datetime(2026, 11, 30, 12, 5, tzinfo=dt.UTC),
    )
    assert (run["objects"], run["row_count"], run["failed"]) == (2, 45, 0)
    assert len(actions) == 6  # every step is kept as a table action


class FakeClient:
    """get_table of a published staging table whose stage an earlier try dropped."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels

    def get_table(self, ref: str) -> Any:
        from google.api_core.exceptions import NotFound

        if ref.endswith("__envsync_stage"):
            raise NotFound(ref)
        return type("Table", (), {"labels": self.labels, "table_type": "TABLE"})()


@pytest.mark.parametrize(
    ("labels", "published"), [({"envsync-run": "this-run"}, True), ({}, False), ({"envsync-run": "another-run"}, False)]
)
def test_a_retried_publish_finds_what_an_earlier_try_published(labels: dict[str, str], published: bool) -> None:
    from google.api_core.exceptions import NotFound

    from envsync.bigquery.actions import Action
    from envsync.environments.cut import CutSync
    from envsync.sync.plan import DatasetPlan

    cfg = config(environments=["staging"])
    bq = type("Bq", (), {"client": FakeClient(labels)})()
    runner = type("Runner", (), {"bq": bq, "labels": {"envsync-run": "this-run"}})()
    sync = CutSync(cfg, bq, runner, None)
    action = Action("qa_sales", "orders", "staging_sales", "full_clone", "QA's table as of T")
    plan = DatasetPlan("qa_sales", "staging_sales", "US", None, {}, [action], [], {})
    if published:
        assert sync.publish_table(plan, action, None) == "published by an earlier try of this run"
    else:  # a stage that is missing for another reason fails the publish (and the cut rolls back)
        with pytest.raises(NotFound):
            sync.publish_table(plan, action, None)
