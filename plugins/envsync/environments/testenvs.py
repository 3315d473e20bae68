"""Expiry of on-demand test environments: find the expired ones and delete them, nothing else.

A test environment's datasets are named test_<name>_<ds> and labelled `envsync-env: test` and
`envsync-expires: <unix seconds>`. Only datasets with both, whose name has the test prefix, and whose
expiry has passed are deleted (through the guard, which refuses prod and non-environment datasets).
Test environments live in the test environment's project (`environments.test.project`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.config import EnvsyncConfig
    from envsync.core.guard import GuardedBigQuery

log = logging.getLogger(__name__)


def expired_test_datasets(config: EnvsyncConfig, client: bigquery.Client, now: dt.datetime) -> list[dict[str, Any]]:
    """The test environment datasets of the test environment's project whose expiry is at or before `now`."""
    prefix = config.environments.test.prefix
    found = []
    for item in client.list_datasets(project=config.project_of("test"), filter="labels.envsync-env:test"):
        labels = item.labels or {}
        if not item.dataset_id.startswith(prefix) or labels.get("envsync-env") != "test":
            continue
        try:
            expires = dt.datetime.fromtimestamp(int(labels.get("envsync-expires", "")), dt.UTC)
        except (ValueError, OverflowError, OSError):
            log.warning("%s has no valid envsync-expires label; leaving it alone", item.dataset_id)
            continue
        if expires <= now:
            found.append(
                {"dataset": item.dataset_id, "expires": expires.isoformat(), "test_env": labels.get("envsync-test-env")}
            )
    return sorted(found, key=lambda d: d["dataset"])


def delete_expired(
    config: EnvsyncConfig,
    bq: GuardedBigQuery,
    now: dt.datetime,
    only: Callable[[dict[str, Any]], bool] = lambda item: True,
) -> list[dict[str, Any]]:
    """Delete the expired test environment datasets (those `only` accepts: e.g. one environment's)."""
    project = config.project_of("test")
    expired = [item for item in expired_test_datasets(config, bq.client, now) if only(item)]
    for item in expired:
        bq.delete_dataset(f"{project}.{item['dataset']}")
        log.info(
            "deleted expired test environment dataset %s (expired %s)",
            config.qualified(project, item["dataset"]),
            item["expires"],
        )
    log.info("%d expired test environment dataset(s) deleted", len(expired))
    return expired
