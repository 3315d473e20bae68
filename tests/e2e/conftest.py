"""Fixtures of the end-to-end tests: a real Airflow cluster (see cluster.py) on the local Postgres.

The cluster's components are subprocesses with their own Airflow configuration; the pytest process's
temporary SQLite home (tests/conftest.py) is not used by them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cluster import REPO_ROOT, AirflowCluster, postgres_reachable


@pytest.fixture(scope="session")
def postgres_available() -> None:
    """Skip (with the reason) when PostgreSQL is not reachable on 127.0.0.1:5432 as `postgres`."""
    reason = postgres_reachable()
    if reason:
        pytest.skip(f"end-to-end cluster needs PostgreSQL: {reason}")


@pytest.fixture
def make_cluster(postgres_available: None, emulators: Any) -> Iterator[Callable[..., AirflowCluster]]:
    """Factory: start an AirflowCluster wired to the session's emulators; every one is stopped at teardown.

    Keyword arguments go to AirflowCluster (executor=..., triggerer=..., extra_env=... merged over the
    defaults). The default extra_env: the emulators' BIGQUERY_EMULATOR_HOST / STORAGE_EMULATOR_HOST and
    ENVSYNC_CONFIG (the caller's, else config/envsync.yaml).
    """
    clusters: list[AirflowCluster] = []

    def factory(**kwargs: Any) -> AirflowCluster:
        env = {
            **emulators.env(),
            "ENVSYNC_CONFIG": os.environ.get("ENVSYNC_CONFIG") or str(REPO_ROOT / "config" / "envsync.yaml"),
        }
        env.update(kwargs.pop("extra_env", None) or {})
        cluster = AirflowCluster(extra_env=env, **kwargs)
        clusters.append(cluster)
        cluster.start()
        print(
            f"\n[e2e] {cluster.executor} cluster {cluster.name} up at {cluster.base_url}: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in cluster.timings.items())
        )
        return cluster

    yield factory
    for cluster in clusters:
        cluster.stop()
        killed = f" (SIGKILL after {cluster.stop_grace:.0f}s: {', '.join(cluster.killed)})" if cluster.killed else ""
        print(f"\n[e2e] cluster {cluster.name} stopped in {cluster.timings.get('stop', 0):.1f}s{killed}")


@pytest.fixture
def airflow_cluster(make_cluster: Callable[..., AirflowCluster]) -> AirflowCluster:
    """A running LocalExecutor cluster (api-server, scheduler, dag-processor) on a fresh Postgres DB."""
    return make_cluster()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright launches Debian's chromium (Playwright's own browser download is not used);
    without it every browser test is skipped with the reason."""
    from browser import chromium_missing, launch_args

    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    return {**browser_type_launch_args, **launch_args()}
