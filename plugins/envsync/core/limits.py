"""BigQuery's rate limits: envsync paces its requests under them and counts what it hits.

The limits (https://cloud.google.com/bigquery/quotas, per project unless stated):
- API requests: 100 per second per user per method; `tables.insert` 10 per second; `jobs.get` 1,000 per
  second ("API requests per second per user per method").
- Table metadata updates: 5 per 10 seconds per table (tables.insert, patch, update, table DDL, and the
  jobs that write the table); the error "Exceeded rate limits: too many table update operations for
  this table" is transient and cannot be raised. DML statements on one table: 25 per 10 seconds
  (2 mutating at once, 20 queued).
- Dataset metadata updates: 5 per 10 seconds per dataset (datasets.insert, patch, update, delete).
- Queries: concurrency is dynamic; 1,000 interactive queries queued per project and region
  (https://cloud.google.com/bigquery/docs/query-queues).
- Snapshot jobs: 100 concurrent per project.

What envsync does about them:
- **Pacing** (`Pacer`): every request a BigQuery client of envsync sends (`core.clients.bigquery_client`
  mounts `PacedAdapter` on its HTTP session) first takes a slot of its method's limiter (per project and
  REST method, at `rate_limits.api_requests_per_second`, `tables_insert_per_second`,
  `jobs_get_per_second`); every write that goes through the guard (`core.guard.GuardedBigQuery`) first
  takes a slot of its table's and dataset's limiter (`table_updates_per_10s`, `dml_per_table_per_10s`
  for DML statements, `dataset_updates_per_10s`).
  A limiter admits at most `count` events in any `window` seconds: a caller over it sleeps until the
  oldest event leaves the window. The defaults sit under BigQuery's figures because other processes of
  the same identity (the other mapped tasks, other DAGs) share the quota.
- **Recovery**: a request refused with `rateLimitExceeded` is retried by the google client's own
  `DEFAULT_RETRY` (exponential backoff with jitter, 600 s); a job that fails with a transient reason is
  retried by `bigquery.jobs.JobRunner` (exponential backoff with jitter); a `quotaExceeded` job waits
  `QUOTA_WAIT_SECONDS` (Google: "wait 10 minutes or more") before its retry; a daily quota fails the
  object with `DailyQuotaExceeded`, naming the quota (https://cloud.google.com/bigquery/docs/troubleshoot-quotas).
- **Counting**: every refusal by a rate or quota limit is counted (`record_retry`), per reason and
  method, in the process (`RETRIES`) and in the object being worked on (`counting`), so a run's report
  says how many retries the limits cost.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

QUOTAS_DOC = "https://cloud.google.com/bigquery/quotas"
TROUBLESHOOT_DOC = "https://cloud.google.com/bigquery/docs/troubleshoot-quotas"

# BigQuery's documented figures (QUOTAS_DOC)
API_REQUESTS_PER_SECOND = 100  # per user per method
TABLES_INSERT_PER_SECOND = 10
JOBS_GET_PER_SECOND = 1_000
TABLE_UPDATES_PER_10S = 5
DML_PER_TABLE_PER_10S = 25  # DML statements per table ("25 statements per 10 s")
DATASET_UPDATES_PER_10S = 5
QUERY_QUEUE_INTERACTIVE = 1_000  # per project and region
CONCURRENT_SNAPSHOT_JOBS = 100
# "If you receive a quotaExceeded error ... wait 10 minutes or more" (TROUBLESHOOT_DOC)
QUOTA_WAIT_SECONDS = 600.0

RATE_REASONS = frozenset({"rateLimitExceeded", "jobRateLimitExceeded"})
QUOTA_REASONS = frozenset({"quotaExceeded"})
_DAILY = re.compile(r"per day|daily|per-day|/day\b|each day", re.IGNORECASE)


class DailyQuotaExceeded(RuntimeError):
    """A daily BigQuery quota is used up: retrying today cannot succeed; the message names the quota."""


def limit_reasons(error: BaseException) -> list[tuple[str, str]]:
    """(reason, message) of every rate or quota error in a google API error (empty for other errors)."""
    found = []
    for detail in getattr(error, "errors", None) or []:
        if isinstance(detail, dict) and detail.get("reason") in RATE_REASONS | QUOTA_REASONS:
            found.append((str(detail["reason"]), str(detail.get("message") or "")))
    return found


def quota_kind(error: BaseException) -> str | None:
    """ "daily" for a used-up daily quota, "quota" for another quotaExceeded, None otherwise."""
    for reason, message in limit_reasons(error):
        if reason in QUOTA_REASONS:
            text = message or str(getattr(error, "message", "") or error)
            return "daily" if _DAILY.search(text) else "quota"
    return None


# -- counting ------------------------------------------------------------------------------------


@dataclass
class RetryCount:
    """Refusals by BigQuery's rate and quota limits, per "reason method" key (thread-safe)."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))


RETRIES = RetryCount()  # this process
_current: contextvars.ContextVar[RetryCount | None] = contextvars.ContextVar("envsync_retry_count", default=None)


def record_retry(reason: str, method: str) -> None:
    """Count one refusal by a limit (`reason`, e.g. rateLimitExceeded) of `method` (a REST method or "job")."""
    key = f"{reason} {method}"
    RETRIES.add(key)
    current = _current.get()
    if current is not None:
        current.add(key)


@contextlib.contextmanager
def counting(count: RetryCount) -> Iterator[RetryCount]:
    """Count the refusals of the work done in this thread (context) into `count` too."""
    token = _current.set(count)
    try:
        yield count
    finally:
        _current.reset(token)


# -- pacing --------------------------------------------------------------------------------------


class WindowLimiter:
    """At most `count` events in any `window` seconds, per key; `acquire(key)` sleeps until the event
    fits and returns the seconds it waited (thread-safe)."""

    def __init__(
        self,
        count: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if count < 1 or window <= 0:
            raise ValueError(f"a limiter needs count >= 1 and window > 0, got {count} per {window} s")
        self.count, self.window = count, window
        self.clock, self.sleep = clock, sleep
        self._events: dict[Any, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def note(self, key: Any = None) -> None:
        """Count an event of `key` that does not wait for its slot (it still fills the window)."""
        with self._lock:
            self._events.setdefault(key, collections.deque()).append(self.clock())

    def acquire(self, key: Any = None) -> float:
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock()
                events = self._events.setdefault(key, collections.deque())
                while events and events[0] <= now - self.window:
                    events.popleft()
                if len(events) < self.count:
                    events.append(now)
                    if len(self._events) > 10_000:  # forget keys with nothing in their window
                        for k in [k for k, e in self._events.items() if not e or e[-1] <= now - self.window]:
                            del self._events[k]
                    return waited
                wait = events[0] + self.window - now
            self.sleep(wait)
            waited += wait


@dataclass(frozen=True)
class Rates:
    """What envsync allows itself (config `rate_limits`); the defaults leave room under BigQuery's figures."""

    api_requests_per_second: int = 50
    tables_insert_per_second: int = 5
    jobs_get_per_second: int = 500
    table_updates_per_10s: int = 4
    dataset_updates_per_10s: int = 4
    dml_per_table_per_10s: int = 20


class Pacer:
    """Limiters per (project, method), per table and per dataset; counts the seconds callers waited."""

    def __init__(self, rates: Rates = Rates(), *, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.rates = rates
        per_second = {
            "tables.insert": rates.tables_insert_per_second,
            "jobs.get": rates.jobs_get_per_second,
        }
        self._methods: dict[str, WindowLimiter] = {}
        self._make = lambda method: WindowLimiter(
            per_second.get(method, rates.api_requests_per_second), 1.0, clock=clock, sleep=sleep
        )
        self._tables = WindowLimiter(rates.table_updates_per_10s, 10.0, clock=clock, sleep=sleep)
        self._datasets = WindowLimiter(rates.dataset_updates_per_10s, 10.0, clock=clock, sleep=sleep)
        self._dml = WindowLimiter(rates.dml_per_table_per_10s, 10.0, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self.waited = RetryCount()  # milliseconds waited, per limiter kind

    def _limiter(self, method: str) -> WindowLimiter:
        with self._lock:
            if method not in self._methods:
                self._methods[method] = self._make(method)
            return self._methods[method]

    def _note(self, kind: str, waited: float) -> float:
        if waited > 0:
            self.waited.add(kind, round(waited * 1000))
        return waited

    def request(self, project: str, method: str) -> float:
        return self._note("request", self._limiter(method).acquire((project, method)))

    def table_update(self, project: str, dataset: str, table: str) -> float:
        return self._note("table", self._tables.acquire((project, dataset, table)))

    def table_dml(self, project: str, dataset: str, table: str) -> float:
        """DML counts toward the table's metadata updates but is not held by that limit ("while DML
        statements count toward this limit, they are not subject to it if it is reached"): it waits only
        for the DML rate."""
        waited = self._note("dml", self._dml.acquire((project, dataset, table)))
        self._tables.note((project, dataset, table))
        return waited

    def dataset_update(self, project: str, dataset: str) -> float:
        return self._note("dataset", self._datasets.acquire((project, dataset)))


_pacer = Pacer()
_pacer_lock = threading.Lock()


def pacer() -> Pacer:
    return _pacer


def configure(rates: Rates) -> Pacer:
    """Use `rates` in this process (a task applies its config's `rate_limits`); a no-op when unchanged."""
    global _pacer
    with _pacer_lock:
        if _pacer.rates != rates:
            _pacer = Pacer(rates)
        return _pacer


# -- requests ------------------------------------------------------------------------------------

_PATH = re.compile(r"/bigquery/v2/projects/(?P<project>[^/]+)(?P<rest>/[^?]*)?")
_WRITE_VERBS = {"POST": "insert", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


@dataclass(frozen=True)
class Request:
    project: str
    method: str  # REST method, e.g. tables.get
    dataset: str | None = None
    table: str | None = None


def rest_method(verb: str, url: str) -> Request | None:
    """The BigQuery REST method of an HTTP request (None when it is not a BigQuery v2 API call)."""
    match = _PATH.search(url)
    if not match:
        return None
    project = match["project"]
    parts = [p for p in (match["rest"] or "").split("/") if p]
    verb = verb.upper()
    upload = "/upload/" in url
    if not parts:
        return Request(project, "projects.get")
    head = parts[0]
    if head == "jobs":
        if len(parts) == 1:
            return Request(project, "jobs.insert" if verb == "POST" or upload else "jobs.list")
        if len(parts) >= 3 and parts[2] == "cancel":
            return Request(project, "jobs.cancel")
        return Request(project, "jobs.delete" if verb == "DELETE" else "jobs.get")
    if head == "queries":
        return Request(project, "jobs.query" if len(parts) == 1 else "jobs.getQueryResults")
    if head == "datasets":
        if len(parts) == 1:
            return Request(project, "datasets.insert" if verb == "POST" else "datasets.list")
        dataset = parts[1]
        if len(parts) == 2:
            return Request(project, f"datasets.{_WRITE_VERBS.get(verb, 'get')}", dataset)
        if parts[2] == "tables":
            if len(parts) == 3:
                return Request(project, "tables.insert" if verb == "POST" else "tables.list", dataset)
            table = parts[3]
            if len(parts) == 4:
                return Request(project, f"tables.{_WRITE_VERBS.get(verb, 'get')}", dataset, table)
            if parts[4] == "data":
                return Request(project, "tabledata.list", dataset, table)
            if parts[4] == "insertAll":
                return Request(project, "tabledata.insertAll", dataset, table)
            return Request(project, f"tables.{parts[4]}", dataset, table)
        return Request(project, f"{parts[2]}.{'list' if len(parts) == 3 else 'get'}", dataset)
    return Request(project, f"{head}.{'list' if len(parts) == 1 else 'get'}")


def refusal_reasons(status: int, body: bytes | str | None) -> list[str]:
    """The rate or quota reasons of an error response (403 / 400 / 429 with a BigQuery error body)."""
    if status not in (400, 403, 429) or not body:
        return []
    try:
        payload = json.loads(body)
    except (ValueError, TypeError):
        return []
    error = payload.get("error") if isinstance(payload, dict) else None
    details = error.get("errors") if isinstance(error, dict) else None
    reasons = [str(d.get("reason")) for d in details or [] if isinstance(d, dict)]
    return [r for r in reasons if r in RATE_REASONS | QUOTA_REASONS]


def paced_adapter(base: Any = None) -> Any:
    """A requests transport adapter that paces BigQuery API calls and counts their refusals."""
    from requests.adapters import HTTPAdapter

    class PacedAdapter(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            call = rest_method(request.method or "GET", request.url or "")
            if call is not None:
                pacer().request(call.project, call.method)
            response = super().send(request, *args, **kwargs)
            if call is not None and response.status_code in (400, 403, 429):
                for reason in refusal_reasons(response.status_code, response.content):
                    record_retry(reason, call.method)
            return response

    return PacedAdapter()
