"""Slack alerts through the Airflow Slack provider's webhook notifier, against a local HTTP server
standing in for the webhook: the payloads of a success and of a failure, and that a missing or broken
connection never fails the data work."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from backupkit import ds, make_prod, take_backup, tamper, tref, write_config
from webhookkit import Webhook

pytestmark = pytest.mark.integration
UTC = dt.UTC


@pytest.fixture
def drill_setup(emulators: Any, tmp_path: Path) -> tuple[Path, dt.datetime, list[dict[str, Any]]]:
    make_prod()
    config = write_config(tmp_path / "envsync.yaml")
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    used = take_backup(config, today - dt.timedelta(days=1, hours=6))
    return config, today, used


def test_success_and_failure_payloads(webhook: Webhook, drill_setup: Any, run_dag: Any) -> None:
    config, today, used = drill_setup
    # manual runs (no logical date): T is the trigger time minus a day, the duration the run's own
    ok = run_dag("recovery_drill", None, {}, config_path=config)
    assert str(ok.state) == "success"
    assert len(webhook.posts) == 1 and webhook.paths == ["/services/T000/B000/XXXX"]
    text = webhook.posts[0]["text"]
    assert text.startswith(f":white_check_mark: envsync *recovery_drill* succeeded on *drill* ({ds('shop')})")
    assert "tables: 2 (2 ok, 0 failed) | rows: 50 | est. bytes billed: 0 B | duration: " in text
    assert "T = " in text and "duration: " in text and "h " not in text.split("duration: ")[1].split("\n")[0]
    assert f"/dags/recovery_drill/runs/{ok.run_id.replace(':', '%3A').replace('+', '%2B')}|Open run" in text
    assert webhook.posts[0]["blocks"][0]["text"]["text"] == text

    tamper(next(m["snapshot"] for m in used if m["table"] == "orders"))
    failed = run_dag("recovery_drill", None, {}, config_path=config)
    assert str(failed.state) == "failed"
    assert len(webhook.posts) == 2
    text = webhook.posts[1]["text"]
    assert text.startswith(f":x: envsync *recovery_drill* FAILED on *drill* ({ds('shop')})")
    assert "tables: 2 (1 ok, 1 failed) | rows: " in text
    assert (
        f"failed: {tref('shop.orders')} -> {tref('drill_shop.orders')}: RestoreVerificationError: "
        f"{tref('drill_shop.orders')}: restored 39 rows"
    ) in text
    print("\nsuccess payload:", webhook.posts[0]["text"], "\nfailure payload:", text, sep="\n")


def test_a_failed_plan_names_the_failed_task(webhook: Webhook, emulators: Any, tmp_path: Path, run_dag: Any) -> None:
    make_prod()
    config = write_config(tmp_path / "envsync.yaml")
    dag_run = run_dag("restore", None, {"dataset": ds("shop"), "point_in_time": "not a time"}, config_path=config)
    assert str(dag_run.state) == "failed"
    text = webhook.posts[-1]["text"]
    assert text.startswith(":x: envsync *restore* FAILED") and "no plan was recorded: the plan task failed" in text, (
        text
    )


@pytest.mark.parametrize("connection", [None, "broken", "unreachable"])
def test_missing_or_broken_connection_never_fails_the_run(
    connection: str | None,
    drill_setup: Any,
    run_dag: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, today, _ = drill_setup
    if connection == "broken":
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_ENVSYNC", json.dumps({"conn_type": "slackwebhook"}))  # no token
    elif connection == "unreachable":
        monkeypatch.setenv(
            "AIRFLOW_CONN_SLACK_ENVSYNC",
            json.dumps({"conn_type": "slackwebhook", "password": "http://127.0.0.1:9/services/T/B/X"}),
        )
    else:
        monkeypatch.delenv("AIRFLOW_CONN_SLACK_ENVSYNC", raising=False)
    dag_run = run_dag("recovery_drill", today, {}, config_path=config)
    assert str(dag_run.state) == "success"
    assert "Slack success alert of recovery_drill not sent (connection 'slack_envsync')" in caplog.text


def test_cut_payloads(webhook: Webhook, emulators: Any, tmp_path: Path, run_dag: Any) -> None:
    from cutkit import SEED_VERSION, make_qa, make_staging

    from envsync.environments.cut import CutSync

    make_prod()
    make_qa()
    make_staging()
    config = write_config(tmp_path / "envsync.yaml")
    ok = run_dag("staging_cut", None, {}, config_path=config)
    assert str(ok.state) == "success"
    text = webhook.posts[-1]["text"]
    assert text.startswith(f":white_check_mark: envsync *staging_cut* succeeded on *staging* ({ds('shop')})")
    assert "tables: " in text and " 0 failed) | rows: " in text
    assert (
        "QA -> staging as of T = " in text
        and f"seed version {SEED_VERSION}, migration version none (qa holds no schema migration)" in text
    ), text

    build = CutSync._build

    def lossy_build(self: Any, action: Any, info: Any, source: Any, stage: Any, stats: Any) -> None:
        build(self, action, info, source, stage, stats)
        if action.table == "customers":
            self.runner.run(f"delete from {stage.sql} where customer_id = 1", key=("lossy", action.table))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CutSync, "_build", lossy_build)
        failed = run_dag("staging_cut", None, {}, config_path=config)
    assert str(failed.state) == "failed"
    text = webhook.posts[-1]["text"]
    assert text.startswith(f":x: envsync *staging_cut* FAILED on *staging* ({ds('shop')})")
    assert (
        f"failed: {tref('qa_shop.customers')} -> {tref('staging_shop.customers')}: VerificationError: "
        f"{tref('staging_shop.customers')}: "
    ) in text, text
    assert f"failed: {ds('staging_shop')} -> {ds('staging_shop')}: not published, staging left as it was" in text
    print("\ncut success payload:", webhook.posts[-2]["text"], "\ncut failure payload:", text, sep="\n")
