"""Pieces the unit tests of the job runner and of the rate limits share: a finished fake job, a
JobRunner whose backoff sleeps are recorded instead of slept, and a virtual clock for limiters."""

from __future__ import annotations

import random
from typing import Any
from unittest import mock


def fake_job(state: str = "DONE", billed: int = 0) -> mock.Mock:
    job = mock.Mock()
    job.state = state
    job.total_bytes_billed = billed
    return job


def backoff_runner(client: Any, **policy: Any) -> tuple[Any, list[float]]:
    """A JobRunner on `client` (a mock) whose backoff waits are appended to the returned list."""
    from envsync.bigquery.jobs import JobRunner, RetryPolicy
    from envsync.core.guard import GuardedBigQuery, WriteGuard

    sleeps: list[float] = []
    guard = WriteGuard("envsync-demo", ["sales"], ["dev_"])
    runner = JobRunner(
        GuardedBigQuery(client, guard, "US"),
        dag_id="prod_to_dev_sync",
        run_id="manual__1",
        task_id="sync_dataset",
        timeout=30,
        retry=RetryPolicy(**policy),
        sleep=sleeps.append,
        rng=random.Random(7),
    )
    return runner, sleeps


class VirtualClock:
    """A monotonic clock that `sleep` advances at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
