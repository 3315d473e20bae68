"""A stack on a virtual clock: both emulators read the clock file's offset, follow it when it moves
(`devstack.set_clock` restarts them on their data), and every reading of every thread follows it.

The season test (test_season.py) plays weeks of the schedule on this clock. libfaketime was first given
the clock as a file re-read at every reading of the clock; under many threads at once it once parsed a
half-copied buffer and ended the emulator in the middle of a run. The offset is now fixed for each
process's life, and a move restarts the processes.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = 86400


def _client(stack: Any) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=stack.project,
        location="US",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=stack.bq_url),
    )


def _now(bq: Any) -> dt.datetime:
    return next(iter(bq.query("select current_timestamp() as now", job_retry=None).result()))["now"]


def _offset_of(reading: dt.datetime, before: float, after: float) -> tuple[float, float]:
    """The range of offsets a reading taken between the real times `before` and `after` implies."""
    return reading.timestamp() - after, reading.timestamp() - before


def test_emulators_follow_the_moved_clock_keep_their_data_and_every_thread_reads_it(
    make_stack: Any, tmp_path: Path
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery, storage

    from envsync.dev import devstack

    stack = make_stack(clock_file=tmp_path / "clock")
    devstack.set_clock(stack, 3 * DAY)  # before start: only the file
    devstack.up(stack, timeout=120)
    bq = _client(stack)
    before = time.time()
    low, high = _offset_of(_now(bq), before, time.time())
    assert low - 1 <= 3 * DAY <= high + 1, (low, high)
    bq.create_dataset(bigquery.Dataset(f"{stack.project}.kept"))
    bq.query("create table kept.t as select 1 as n", job_retry=None).result()

    began = time.monotonic()
    devstack.set_clock(stack, 10 * DAY)  # running: restarted on the new offset, on their data
    print(f"emulators restarted on the moved clock in {time.monotonic() - began:.1f} s")
    bq = _client(stack)
    assert [row["n"] for row in bq.query("select n from kept.t", job_retry=None).result()] == [1]

    readings: list[tuple[float, dt.datetime, float]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def read() -> None:
        client = _client(stack)
        try:
            start.wait()
            for _ in range(8):
                before = time.time()
                now = _now(client)
                readings.append((before, now, time.time()))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert len(readings) == 8 * 8
    strays = [
        (now, low, high)
        for before, now, after in readings
        for low, high in [_offset_of(now, before, after)]
        if not low - 1 <= 10 * DAY <= high + 1
    ]
    assert not strays, f"{len(strays)} readings off the clock: {strays[:3]}"

    gcs = storage.Client(
        project=stack.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": stack.gcs_url},
    )
    bucket = gcs.create_bucket(f"clock-{stack.gcs_port}")
    before = time.time()
    blob = bucket.blob("o")
    blob.upload_from_string(b"x")
    blob.reload()
    low, high = _offset_of(blob.time_created, before, time.time())
    assert low - 2 <= 10 * DAY <= high + 2, (blob.time_created, low, high)
