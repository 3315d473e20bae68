"""What every envsync DAG shares: default task arguments and the `datasets` and `environments` params.

Imported at DAG parse time: keep it light (no Google clients, no network).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envsync.core.config import EnvsyncConfig

OWNER = "data-platform"
CONN_ID = "google_cloud_default"


def default_args(*, retry_delay: dt.timedelta, execution_timeout: dt.timedelta) -> dict[str, Any]:
    return {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": retry_delay,
        "execution_timeout": execution_timeout,
        "gcp_conn_id": CONN_ID,
    }


def datasets_param(config: EnvsyncConfig, description: str) -> Any:
    from airflow.sdk import Param

    return Param(
        list(config.prod.datasets),
        type="array",
        title="Datasets",
        description=description,
        items={"type": "string", "enum": list(config.prod.datasets)},
        examples=list(config.prod.datasets),  # the trigger form offers them as a multi-select
        minItems=1,
        uniqueItems=True,
    )


def environments_param(choices: list[str], description: str) -> Any:
    """An `environments` trigger-form param: a multi-select of `choices`, all by default."""
    from airflow.sdk import Param

    return Param(
        list(choices),
        type="array",
        title="Environments",
        description=description,
        items={"type": "string", "enum": list(choices)},
        minItems=1,
        uniqueItems=True,
    )


def alert_callbacks(config: EnvsyncConfig, *, on_success: bool) -> dict[str, Any]:
    """DAG callbacks that post Slack alerts: always on failure, and on success when asked."""
    if not config.alerts.enabled:
        return {}
    from envsync.observe.alerts import EnvsyncSlackNotifier

    conn_id = config.alerts.slack_conn_id
    callbacks: dict[str, Any] = {
        "on_failure_callback": [EnvsyncSlackNotifier(kind="failure", slack_webhook_conn_id=conn_id)]
    }
    if on_success:
        callbacks["on_success_callback"] = [EnvsyncSlackNotifier(kind="success", slack_webhook_conn_id=conn_id)]
    return callbacks
