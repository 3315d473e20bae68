"""What every envsync DAG shares: default task arguments and the `datasets` trigger-form param.

Imported at DAG parse time: keep it light (no Google clients, no network).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envsync.config import EnvsyncConfig

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
        minItems=1,
        uniqueItems=True,
    )
