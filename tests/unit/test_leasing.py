"""Which datasets each environment lease covers, and which lease a restore target takes (pure)."""

from __future__ import annotations

import pytest

from envsync.core.config import parse_config
from envsync.core.lease import Holder, validate_key
from envsync.operators.leasing import env_datasets, target_lease

CONFIG = parse_config(
    {"project": "envsync-demo", "prod": {"datasets": ["sales", "marketing"]}, "state": {"bucket": "envsync-state"}}
)


@pytest.mark.parametrize(
    ("env", "datasets"),
    [
        ("prod", ["sales", "marketing"]),
        ("dev", ["dev_sales", "dev_marketing"]),
        ("staging", ["staging_sales", "staging_marketing"]),
        ("backup_staging", ["backup_staging_sales", "backup_staging_marketing"]),
        ("drill_staging", ["drill_staging_sales", "drill_staging_marketing"]),
        ("test_demo", ["test_demo_sales", "test_demo_marketing"]),
    ],
)
def test_a_lease_covers_its_environments_datasets(env: str, datasets: list[str]) -> None:
    assert env_datasets(CONFIG, env) == datasets
    for dataset in datasets:
        assert target_lease(CONFIG, dataset) == env


def test_unknown_environments_and_datasets_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'nope' is not an environment"):
        env_datasets(CONFIG, "nope")
    with pytest.raises(ValueError, match="'scratch' belongs to no environment"):
        target_lease(CONFIG, "scratch")
    with pytest.raises(ValueError, match="not a lease name"):
        validate_key("Dev/../x")


def test_a_holder_is_the_same_run_only_in_the_same_deployment() -> None:
    a = Holder("prod_to_dev_sync", "r1", "plan", "airflow-a")
    assert a.same_run(Holder("prod_to_dev_sync", "r1", "sync_dataset", "airflow-a", since="x"))
    assert not a.same_run(Holder("prod_to_dev_sync", "r1", "plan", "airflow-b"))
    assert "run r1 of DAG prod_to_dev_sync" in a.describe()


@pytest.mark.parametrize(
    ("answer", "running"),
    [
        ("running", True),
        ("queued", True),
        ("failed", False),
        ("success", False),
        (RuntimeError("404 Not Found"), False),
    ],
)
def test_airflow_says_whether_a_holder_of_this_deployment_still_runs(
    monkeypatch: pytest.MonkeyPatch, answer: object, running: bool
) -> None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    from envsync.operators.leasing import airflow_run_state

    def state(dag_id: str, run_id: str) -> str:
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    monkeypatch.setenv("ENVSYNC_DEPLOYMENT", "airflow-here")
    monkeypatch.setattr(RuntimeTaskInstance, "get_dagrun_state", staticmethod(state))
    assert airflow_run_state(Holder("restore", "r1", "plan", "airflow-here")) is running
    assert airflow_run_state(Holder("restore", "r1", "plan", "airflow-elsewhere")) is None  # only its heartbeat tells
