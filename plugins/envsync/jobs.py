"""Run BigQuery jobs with deterministic ids and labels, re-attaching to a job a retried task started.

A job id is derived from the DAG, the run, the object and the step, plus an attempt number. When the
id already exists (409 Conflict) and that job is still PENDING/RUNNING, the runner waits for it
instead of starting another; when it is finished, the next attempt number is used, so a rerun of the
same run executes the step again (every step is idempotent).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.guard import GuardedBigQuery

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
_JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_LABEL_UNSAFE = re.compile(r"[^a-z0-9_-]")


def label_value(value: str) -> str:
    """A valid BigQuery label value (lowercase, [a-z0-9_-], at most 63 characters)."""
    clean = _LABEL_UNSAFE.sub("-", value.lower())
    if len(clean) > 63:
        clean = clean[:54] + "-" + hashlib.sha1(value.encode()).hexdigest()[:8]
    return clean


# Reasons of a 400 that a retry may cure; every other 400 is BigQuery refusing the request itself
# (invalidQuery, invalid, notFound in a query, resourcesExceeded...), and fails the same way on a retry.
# https://cloud.google.com/bigquery/docs/error-messages
TRANSIENT_400_REASONS = frozenset({"backendError", "jobBackendError", "jobInternalError", "internalError",
                                   "rateLimitExceeded", "quotaExceeded"})


def rejected_by_bigquery(error: BaseException) -> bool:
    """True for a BigQuery 400 whose reason says a retry cannot help (e.g. invalidQuery)."""
    from google.api_core.exceptions import BadRequest

    if not isinstance(error, BadRequest):
        return False
    reasons = {e.get("reason") for e in error.errors or [] if isinstance(e, dict)}
    return not reasons & TRANSIENT_400_REASONS


def short_hash(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:10]


@dataclass
class JobStats:
    jobs: int = 0
    bytes_billed: int = 0
    job_ids: list[str] = field(default_factory=list)


def run_recorded(
    result: dict[str, Any],
    work: Callable[[JobStats], dict[str, Any] | None],
    *,
    deterministic: tuple[type[BaseException], ...],
    on_failure: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run one object's work, recording status, error, seconds, jobs and bytes billed in `result`.

    A failure is recorded, not raised; it is retryable unless its exception is one of `deterministic`
    (verification, contract, guard) or a BigQuery 400 that a retry cannot cure (`rejected_by_bigquery`):
    the task decides from that whether a retry can help.
    """
    start = time.monotonic()
    stats = JobStats()
    try:
        result.update(work(stats) or {})
        result["status"] = "ok"
    except Exception as error:
        result.update(status="failed", error=f"{type(error).__name__}: {error}",
                      retryable=not (isinstance(error, deterministic) or rejected_by_bigquery(error)))
        log.error("%s failed: %s", result["target"], error)
        if on_failure is not None:
            on_failure()
    result.update(seconds=JobRunner.elapsed(start), jobs=stats.jobs, bytes_billed=stats.bytes_billed)
    return result


class JobRunner:
    """Starts and waits for query jobs; remembers running job ids so `cancel_all` can stop them."""

    def __init__(
        self,
        bq: GuardedBigQuery,
        *,
        dag_id: str,
        run_id: str,
        task_id: str,
        timeout: float,
    ):
        self.bq = bq
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_id = task_id
        self.timeout = timeout
        self.labels = {
            "envsync-dag": label_value(dag_id),
            "envsync-task": label_value(task_id),
            "envsync-run": label_value(run_id),
        }
        self._prefix = f"envsync_{_JOB_ID_UNSAFE.sub('_', dag_id)[:60]}_{short_hash(dag_id, run_id)}"
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def job_id_base(self, *parts: str) -> str:
        body = "_".join(_JOB_ID_UNSAFE.sub("_", p) for p in parts)
        if len(body) > 800:
            body = body[:780] + "_" + short_hash(*parts)
        return f"{self._prefix}_{body}"

    def run(
        self,
        sql: str,
        *,
        key: tuple[str, ...],
        params: dict[str, Any] | None = None,
        stats: JobStats | None = None,
    ) -> bigquery.QueryJob:
        """Run `sql` to completion under a deterministic job id; re-attach when it is still running."""
        from google.api_core.exceptions import Conflict

        base = self.job_id_base(*key)
        for attempt in range(MAX_ATTEMPTS):
            job_id = f"{base}_{attempt}"
            try:
                job = self.bq.start_query(sql, params=params, job_id=job_id, labels=self.labels)
            except Conflict:
                job = self.bq.client.get_job(job_id, location=self.bq.location)
                if job.state in ("PENDING", "RUNNING"):
                    log.info("re-attaching to BigQuery job %s (%s), started by an earlier try", job_id, job.state)
                else:
                    continue
            with self._lock:
                self._running.add(job_id)
            try:
                job.result(timeout=self.timeout)
            finally:
                with self._lock:
                    self._running.discard(job_id)
            if stats is not None:
                stats.jobs += 1
                stats.bytes_billed += int(job.total_bytes_billed or 0)
                stats.job_ids.append(job_id)
            return job
        raise RuntimeError(f"job id {base}_* used {MAX_ATTEMPTS} times in this run; giving up")

    def cancel_all(self) -> None:
        with self._lock:
            running = list(self._running)
        for job_id in running:
            try:
                self.bq.client.cancel_job(job_id, location=self.bq.location)
                log.info("cancelled BigQuery job %s", job_id)
            except Exception as error:  # best effort while the task is being killed
                log.warning("could not cancel BigQuery job %s: %s", job_id, error)

    @staticmethod
    def elapsed(start: float) -> float:
        return round(time.monotonic() - start, 3)


def run_job(
    runner: JobRunner,
    key: tuple[str, ...],
    start: Callable[[str], Any],
    *,
    stats: JobStats | None = None,
) -> Any:
    """Run a non-query job (copy, extract...) to completion under `runner`'s deterministic job id.

    `start(job_id)` starts the job. As in `JobRunner.run`: on Conflict, a job of that id that is still
    PENDING/RUNNING (started by an earlier try of the task) is waited for; a finished one means the
    next attempt number. The job is cancellable by `runner.cancel_all` while it runs.
    """
    from google.api_core.exceptions import Conflict

    base = runner.job_id_base(*key)
    for attempt in range(MAX_ATTEMPTS):
        job_id = f"{base}_{attempt}"
        try:
            job = start(job_id)
        except Conflict:
            job = runner.bq.client.get_job(job_id, location=runner.bq.location)
            if job.state not in ("PENDING", "RUNNING"):
                continue
            log.info("re-attaching to BigQuery job %s (%s), started by an earlier try", job_id, job.state)
        with runner._lock:
            runner._running.add(job_id)
        try:
            job.result(timeout=runner.timeout)
        finally:
            with runner._lock:
                runner._running.discard(job_id)
        if stats is not None:
            stats.jobs += 1
            stats.job_ids.append(job_id)
        return job
    raise RuntimeError(f"job id {base}_* used {MAX_ATTEMPTS} times in this run; giving up")
