"""Jobs take time, when a test asks for it: a latency file holds every job RUNNING before it runs, and
jobs.cancel stops it meanwhile.

What BigQuery does: jobs are asynchronous. ``jobs.insert`` "starts a new asynchronous job" and answers
with the job while it is still PENDING or RUNNING
(https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/insert); the client polls ``jobs.get``
(or ``getQueryResults``) until ``status.state`` is DONE
(https://cloud.google.com/bigquery/docs/managing-jobs); ``jobs.cancel`` "requests that a job be
cancelled", and a job cancelled before it completed ends DONE with an ``errorResult`` of reason
``stopped`` and without its effects (https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/cancel,
https://cloud.google.com/bigquery/docs/managing-jobs#cancel_jobs).

What local-bigquery 0.4.0 does: it runs each job in a thread at once and ``jobs.insert`` waits up to
``runner.SUBMIT_WAIT_MS`` (1 s) for it, so nearly every job is already DONE in the insert's answer and
a test cannot stop a client, or kill its process, while one of its jobs still runs.

What this module does, only when ``BQFIDELITY_LATENCY_FILE`` names a file (``python -m bqfidelity
serve --latency-file PATH`` sets it; ``envsync.dev.devstack.Stack.latency_file`` passes it):
- every job reads the file when it starts: a number of seconds (``3``, ``0.5``); a missing or empty
  file, ``0`` or a negative number means no latency; a file that is not a number is logged and means none;
- a job with latency is saved RUNNING (its ``startTime`` set then, and kept), stays RUNNING that long,
  then runs as before;
- ``jobs.insert`` (and the upload endpoint of load jobs) answers as soon as such a job is RUNNING,
  instead of waiting ``SUBMIT_WAIT_MS`` for it to finish; ``jobs.query`` and ``getQueryResults`` wait
  their ``timeoutMs`` as before (``jobComplete: false`` past it);
- ``jobs.cancel`` meanwhile wakes the job within ``POLL_SECONDS``: it ends DONE with reason ``stopped``
  ("Job execution was cancelled: User requested cancellation", the emulator's answer for cancelled
  jobs) and runs nothing.

The file is read again at every job, so a test can slow jobs down or speed them up while the emulator
runs. Jobs waiting out their latency hold a thread of the emulator's job pool (8 threads): a ninth
concurrent job stays PENDING until one is free, as jobs queue on BigQuery. Without the variable
nothing is patched.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("bqfidelity.latency")

ENV = "BQFIDELITY_LATENCY_FILE"
# How often a job waiting out its latency looks whether jobs.cancel was called.
POLL_SECONDS = 0.05

# (project, job id, startTime) of the job this thread runs after holding it: its saves keep that startTime.
_held: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar("bqfidelity_held", default=None)
_warned: set[str] = set()


def latency_file() -> Path | None:
    """The latency file named by BQFIDELITY_LATENCY_FILE (None: no latency setting)."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def seconds(path: Path) -> float:
    """The latency the file asks for now: 0.0 when it is missing, empty, not positive or not a number."""
    try:
        text = path.read_text().strip()
    except OSError:
        return 0.0
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        if text not in _warned:
            _warned.add(text)
            log.warning("latency file %s holds %r, not a number of seconds: no latency", path, text)
        return 0.0
    return value if value > 0 and value != float("inf") else 0.0


def _holding_running(original: type) -> type:
    """The runner's per-job record, plus whether the job is held and when that was decided."""

    @dataclasses.dataclass
    class Running(original):  # type: ignore[misc,valid-type]
        held: bool = False
        decided: threading.Event = dataclasses.field(default_factory=threading.Event)

    Running.__qualname__ = Running.__name__ = original.__name__
    return Running


def _delayed(original: Callable[..., Any], path: Path) -> Callable[..., Any]:
    from local_bigquery.catalog import metadata
    from local_bigquery.jobs import store

    @functools.wraps(original)
    def _execute(job: Any, job_type: str, session: Any, running: Any, upload: str | None) -> Any:
        wait = seconds(path)
        decided = getattr(running, "decided", None)
        if wait <= 0 or running.cancelled:
            if decided is not None:
                decided.set()
            return original(job, job_type, session, running, upload)
        project_id, job_id = job.jobReference.projectId, job.jobReference.jobId
        started = metadata.now()
        job = store.save(job.replace(status={"state": "RUNNING"}, statistics=job.statistics.replace(startTime=started)))
        running.held = True
        if decided is not None:
            decided.set()
        log.debug("job %s:%s held RUNNING for %.3g s", project_id, job_id, wait)
        deadline = time.monotonic() + wait
        while not running.cancelled and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(POLL_SECONDS, left))
        token = _held.set((project_id, job_id, started))
        try:
            # cancelled meanwhile: the runner ends the job with reason "stopped" before running anything
            return original(job, job_type, session, running, upload)
        finally:
            _held.reset(token)

    return _execute


def _keeping_start(original: Callable[..., Any]) -> Callable[..., Any]:
    """store.save: the held job keeps the startTime it got when it became RUNNING."""

    @functools.wraps(original)
    def save(job: Any) -> Any:
        held = _held.get()
        if held is not None and job.statistics is not None and job.statistics.startTime is not None:
            reference = job.jobReference
            if (reference.projectId, reference.jobId) == held[:2] and job.statistics.startTime != held[2]:
                job = job.replace(statistics=job.statistics.replace(startTime=held[2]))
        return original(job)

    return save


def _answering_running(original: Callable[..., Any]) -> Callable[..., Any]:
    """runner.submitted (jobs.insert's answer): a held job is answered RUNNING at once."""
    from local_bigquery.jobs import runner

    @functools.wraps(original)
    def submitted(project_id: str, job_id: str) -> Any:
        running = runner._running.get((project_id, job_id))
        decided = getattr(running, "decided", None)
        if running is None or decided is None:
            return original(project_id, job_id)
        budget = runner.SUBMIT_WAIT_MS / 1000
        begun = time.monotonic()
        if decided.wait(budget) and running.held:
            return runner.get(project_id, job_id)
        left_ms = max(0, int((budget - (time.monotonic() - begun)) * 1000))
        return runner.wait(project_id, job_id, left_ms)

    return submitted


def install() -> None:
    """With BQFIDELITY_LATENCY_FILE set: wrap the job runner (``_execute``, ``submitted``, its per-job
    record) and the job store's ``save``; without it, patch nothing."""
    path = latency_file()
    if path is None:
        return
    path = path.absolute()
    from local_bigquery.jobs import runner, store

    runner.Running = _holding_running(runner.Running)
    runner._execute = _delayed(runner._execute, path)
    runner.submitted = _answering_running(runner.submitted)
    store.save = _keeping_start(store.save)
    log.info("latency: every job stays RUNNING for the seconds in %s (now %g) before it runs", path, seconds(path))
