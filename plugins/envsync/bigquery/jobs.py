"""Run BigQuery jobs with deterministic ids and labels, re-attaching to a job a retried task started.

A job id is derived from the DAG, the run, the object and the step, plus an attempt number. When the
id already exists (409 Conflict) and that job is still PENDING/RUNNING, the runner waits for it
instead of starting another; when it is finished, the next attempt number is used, so a rerun of the
same run executes the step again (every step is idempotent).

Transient BigQuery errors are retried inside the job with exponential backoff and jitter (`RetryPolicy`:
1 s doubling up to 32 s, as BigQuery's SLA asks of clients, bounded in count and total seconds), not
failed per table: an error raised when the job is started (retried under the same job id, so a job the
failed request did create is found through the Conflict) and an error of the finished job (retried under
the next attempt number). Transient means the reasons rateLimitExceeded, backendError, internalError,
tableUnavailable (and the job* variants), a message saying "too many table update operations", or
resourcesExceeded whose message says it is temporary; see `is_transient_job_error`. A 404 from get_job
straight after a Conflict is retried too: the job exists but is not visible yet.
Every query job carries a server-side timeout (`jobTimeoutMs` = the runner's timeout), so a job whose
task gave up (and dropped its staging table) is stopped by BigQuery instead of finishing later and
re-creating the table; a job the worker stops waiting for is also cancelled.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envsync.core.limits import (
    QUOTA_WAIT_SECONDS,
    DailyQuotaExceeded,
    RetryCount,
    counting,
    limit_reasons,
    quota_kind,
    record_retry,
)

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.guard import GuardedBigQuery

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
# (invalidQuery, invalid, notFound in a query, resourcesExceeded of a too-big query...), and fails the
# same way on a retry. https://cloud.google.com/bigquery/docs/error-messages
TRANSIENT_400_REASONS = frozenset(
    {
        "backendError",
        "jobBackendError",
        "jobInternalError",
        "internalError",
        "rateLimitExceeded",
        "jobRateLimitExceeded",
        "quotaExceeded",
        "tableUnavailable",
    }
)

# Reasons retried with backoff inside one job (https://cloud.google.com/bigquery/docs/error-messages,
# https://cloud.google.com/bigquery/docs/troubleshoot-quotas: rateLimitExceeded is a short-term limit,
# "retry the operation after a few seconds, use exponential backoff"). quotaExceeded is a longer-term
# limit: not retried with this backoff, but after the wait Google advises (`JobRunner._limited`).
TRANSIENT_JOB_REASONS = frozenset(
    {
        "rateLimitExceeded",
        "jobRateLimitExceeded",
        "backendError",
        "internalError",
        "tableUnavailable",
        "jobBackendError",
        "jobInternalError",
    }
)
# "Exceeded rate limits: too many table update operations for this table" (table update operations per
# table quota; https://cloud.google.com/bigquery/docs/troubleshoot-quotas) may come with any reason.
_TRANSIENT_MESSAGE = re.compile(r"too many table update operations|exceeded rate limits", re.IGNORECASE)
# resourcesExceeded is usually the query itself (too much memory for one stage): the same query fails
# again. Only a message that says the shortage is temporary is retried.
_RESOURCES_TRANSIENT = re.compile(r"transient|temporar|try again|retry", re.IGNORECASE)


def _error_details(error: BaseException) -> list[tuple[str, str]]:
    details = [
        (str(e.get("reason") or ""), str(e.get("message") or ""))
        for e in getattr(error, "errors", None) or []
        if isinstance(e, dict)
    ]
    return details or [("", "")]


def is_transient_job_error(error: BaseException) -> bool:
    """True when BigQuery says a retry of the job may succeed: server errors (5xx, 429), the transient
    reasons, "too many table update operations", and resourcesExceeded that says it is temporary."""
    from google.api_core.exceptions import GoogleAPICallError, ServerError, TooManyRequests

    if not isinstance(error, GoogleAPICallError):
        return False
    if isinstance(error, (ServerError, TooManyRequests)):
        return True
    if _TRANSIENT_MESSAGE.search(str(error.message or "")):
        return True
    for reason, message in _error_details(error):
        if reason in TRANSIENT_JOB_REASONS or _TRANSIENT_MESSAGE.search(message):
            return True
        if reason == "resourcesExceeded" and _RESOURCES_TRANSIENT.search(message or str(error.message or "")):
            return True
    return False


def rejected_by_bigquery(error: BaseException) -> bool:
    """True for a BigQuery 400 whose reason says a retry cannot help (e.g. invalidQuery)."""
    from google.api_core.exceptions import BadRequest

    if not isinstance(error, BadRequest) or is_transient_job_error(error):
        return False
    reasons = {e.get("reason") for e in error.errors or [] if isinstance(e, dict)}
    return not reasons & TRANSIENT_400_REASONS


class JobTimeoutError(RuntimeError):
    """A job did not finish within the runner's timeout; it was cancelled (and has a server-side timeout)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between retries of one job: initial * multiplier**n seconds, capped at `maximum`, with
    jitter (each wait is drawn from [delay/2, delay]); at most `max_retries` retries and `deadline`
    seconds of waiting in total. BigQuery's SLA asks for at least 1 s, growing exponentially to 32 s."""

    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 32.0
    max_retries: int = 8
    deadline: float = 300.0
    # quotaExceeded: "wait 10 minutes or more" before a retry (envsync.core.limits.QUOTA_WAIT_SECONDS),
    # at most `quota_retries` times per job
    quota_wait: float = QUOTA_WAIT_SECONDS
    quota_retries: int = 2

    def delay(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.maximum, self.initial * self.multiplier**retry)
        return ceiling * (0.5 + rng.random() / 2)


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
    retries = RetryCount()
    try:
        with counting(retries):
            result.update(work(stats) or {})
        result["status"] = "ok"
    except Exception as error:
        result.update(
            status="failed",
            error=f"{type(error).__name__}: {error}",
            retryable=not (isinstance(error, (*deterministic, DailyQuotaExceeded)) or rejected_by_bigquery(error)),
        )
        log.error("%s failed: %s", result["target"], error)
        if on_failure is not None:
            on_failure()
    result.update(seconds=JobRunner.elapsed(start), jobs=stats.jobs, bytes_billed=stats.bytes_billed)
    if retries.total():  # refusals by BigQuery's rate and quota limits, retried (envsync.core.limits)
        result.update(retries=retries.total(), retry_reasons=retries.as_dict())
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
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.bq = bq
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_id = task_id
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
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

    @property
    def job_timeout_ms(self) -> int:
        """The server-side timeout of every job this runner starts (JobConfiguration.jobTimeoutMs)."""
        return int(self.timeout * 1000)

    def _limited(
        self, error: BaseException, reasons: list[tuple[str, str]], job_id: str, quota_waits: list[float], where: str
    ) -> bool:
        """Count a refusal by a rate or quota limit (`reasons`: limit_reasons(error)); for quotaExceeded,
        wait as Google advises and return True: the caller retries under a new job id (or give up); a
        used-up daily quota raises DailyQuotaExceeded, naming it. False for a rate limit."""
        for reason, _message in reasons:
            record_retry(reason, where)
        kind = quota_kind(error)
        if kind == "daily":
            raise DailyQuotaExceeded(
                f"BigQuery job {job_id}: a daily quota is used up ({error}); retrying today cannot succeed: "
                "the object is left as it was and runs again once the quota resets (midnight Pacific time), "
                f"or after the quota is raised (https://cloud.google.com/bigquery/quotas)"
            ) from error
        if kind == "quota":
            policy = self.retry
            if len(quota_waits) >= policy.quota_retries:
                log.error("BigQuery job %s: quota still exceeded after %d waits: %s", job_id, len(quota_waits), error)
                raise error
            wait = policy.quota_wait * (1 + self.rng.random() / 10)  # never less than Google's advice
            quota_waits.append(wait)
            log.warning(
                "BigQuery job %s: quota exceeded (%s); waiting %.0f s as Google advises; then retry %d of at most %d",
                job_id,
                error,
                wait,
                len(quota_waits),
                policy.quota_retries,
            )
            self.sleep(wait)
            return True
        return False

    def _backoff(self, error: BaseException, job_id: str, waits: list[float], why: str) -> None:
        """Sleep before the next retry of a job, or re-raise `error` when the retry budget is spent."""
        policy = self.retry
        delay = policy.delay(len(waits), self.rng)
        if len(waits) >= policy.max_retries or sum(waits) + delay > policy.deadline:
            log.error(
                "BigQuery job %s: giving up after %d retries (%.1f s of backoff): %s",
                job_id,
                len(waits),
                sum(waits),
                error,
            )
            raise error
        waits.append(delay)
        log.warning(
            "BigQuery job %s: %s (%s); retry %d of at most %d in %.1f s",
            job_id,
            why,
            error,
            len(waits),
            policy.max_retries,
            delay,
        )
        self.sleep(delay)

    def run(
        self,
        sql: str,
        *,
        key: tuple[str, ...],
        params: dict[str, Any] | None = None,
        stats: JobStats | None = None,
    ) -> bigquery.QueryJob:
        """Run `sql` to completion under a deterministic job id; re-attach when it is still running;
        retry transient errors with backoff (see the module docstring)."""
        return self.run_job(
            key,
            lambda job_id: self.bq.start_query(
                sql, params=params, job_id=job_id, labels=self.labels, job_timeout_ms=self.job_timeout_ms
            ),
            stats=stats,
        )

    def run_job(self, key: tuple[str, ...], start: Callable[[str], Any], *, stats: JobStats | None = None) -> Any:
        """Run one job (query, copy, load, extract) to completion; `start(job_id)` starts it.

        The job id is deterministic (`key` plus an attempt number). On Conflict, a job of that id that
        is still PENDING/RUNNING (started by an earlier try of the task) is waited for, a finished one
        means the next attempt number; transient errors are retried with backoff; the job is cancelled
        when the worker stops waiting for it, and `cancel_all` can stop it while it runs.
        """
        from google.api_core.exceptions import Conflict, NotFound

        base = self.job_id_base(*key)
        waits: list[float] = []
        quota_waits: list[float] = []
        attempt = 0
        while attempt < MAX_ATTEMPTS:
            job_id = f"{base}_{attempt}"
            try:
                job = start(job_id)
            except Conflict:
                try:
                    job = self.bq.client.get_job(job_id, location=self.bq.location)
                except NotFound as error:
                    self._backoff(error, job_id, waits, "exists (409) but is not visible yet")
                    continue  # the same id: jobs.get sees the job once it has propagated
                if job.state in ("PENDING", "RUNNING"):
                    log.info("re-attaching to BigQuery job %s (%s), started by an earlier try", job_id, job.state)
                else:
                    attempt += 1
                    continue
            except Exception as error:
                reasons = limit_reasons(error)
                if reasons and self._limited(error, reasons, job_id, quota_waits, "jobs.insert"):
                    attempt += 1  # quotaExceeded, waited out: the request may have made a failed job of that id
                    continue
                if not is_transient_job_error(error):
                    raise
                self._backoff(error, job_id, waits, "could not be started")
                if any(r == "jobRateLimitExceeded" for r, _ in reasons):
                    attempt += 1  # "retry with a new jobId" (https://cloud.google.com/bigquery/docs/error-messages)
                # else the same id: if the failed request did create the job, the Conflict path finds it
                continue
            with self._lock:
                self._running.add(job_id)
            try:
                job.result(timeout=self.timeout)
            except concurrent.futures.TimeoutError:
                self._cancel(job_id)
                raise JobTimeoutError(
                    f"BigQuery job {job_id} did not finish within {self.timeout:g} s "
                    "(sync.job_timeout_seconds); it was cancelled"
                ) from None
            except Exception as error:
                reasons = limit_reasons(error)
                if reasons and self._limited(error, reasons, job_id, quota_waits, "job"):
                    attempt += 1
                    continue
                if not is_transient_job_error(error):
                    raise
                self._backoff(error, job_id, waits, "failed with a transient error")
                attempt += 1
                continue
            finally:
                with self._lock:
                    self._running.discard(job_id)
            if stats is not None:
                stats.jobs += 1
                billed = getattr(job, "total_bytes_billed", None)  # query jobs only; None until known
                stats.bytes_billed += billed if isinstance(billed, int) else 0
                stats.job_ids.append(job_id)
            return job
        raise RuntimeError(f"job id {base}_* used {MAX_ATTEMPTS} times in this run; giving up")

    def _cancel(self, job_id: str) -> None:
        try:
            self.bq.client.cancel_job(job_id, location=self.bq.location)
            log.info("cancelled BigQuery job %s", job_id)
        except Exception as error:  # best effort while the task is being killed
            log.warning("could not cancel BigQuery job %s: %s", job_id, error)

    def cancel_all(self) -> None:
        with self._lock:
            running = list(self._running)
        for job_id in running:
            self._cancel(job_id)

    @staticmethod
    def elapsed(start: float) -> float:
        return round(time.monotonic() - start, 3)
