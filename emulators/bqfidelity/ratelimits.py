"""BigQuery's rate limits: API requests per user per method, table and dataset metadata updates, the
query queue and concurrent snapshot jobs, answered with BigQuery's errors.

local-bigquery 0.4.0 enforces none of them, so code that bursts against BigQuery (a loop of
``tables.insert``, five CREATE OR REPLACE of one table in a second, a thousand queued queries) passes
locally and fails in production. This module enforces each limit at BigQuery's figures by default.

Limits (https://cloud.google.com/bigquery/quotas) and the errors they answer with
(https://cloud.google.com/bigquery/docs/troubleshoot-quotas: "If a BigQuery operation fails because of
exceeding a quota, the API returns the HTTP 403 Forbidden status code"; reason ``rateLimitExceeded`` for a
short-term limit, ``quotaExceeded`` for a longer-term one; body ``{"error": {"code": 403, "message": ...,
"errors": [{"domain": "global", "reason": ..., "message": ...}], "status": "PERMISSION_DENIED"}}``):

1. API requests per user per method, per second (#api_quotas_and_limits): 100 for most core methods,
   ``tables.insert`` 10, ``projects.list`` 10, ``jobs.get`` 1,000, ``tabledata.list`` 1,000; streaming
   inserts (``tabledata.insertAll``) are exempt. A request over the limit is refused:
   403 ``rateLimitExceeded`` "Exceeded rate limits: too many api requests per user per method for this
   user_method (<Service.method>). For more information, see <troubleshoot-quotas>". The troubleshooting
   page quotes this wording in its log filter ("Too many API requests per user per method for this
   user_method"); BigQuery answers it so, e.g. "(JobService.insertJob)" (the names of other methods
   in the parentheses are INFERENCE: <Resource>Service.<verb><Resource>). The page's other message,
   "Quota exceeded: Your user_method exceeded quota for concurrent api requests per user per method",
   is the one of the 300 *concurrent* requests per user, not enforced here.
   Who the user is: the request's principal (its bearer token's email, as the emulator's row-level
   security identifies it) within the request's project. With anonymous credentials every local client
   is the same principal, so the project stands for the user: envsync runs one service account per
   project. A refused request is not counted.
2. Table metadata updates (#standard_tables, #partitioned_tables): 5 per 10 s per table (50 per 10 s
   for a partitioned table), counting ``tables.insert``, ``tables.patch``, ``tables.update``, DDL on
   tables (CREATE / ALTER / DROP TABLE or VIEW, CTAS, CLONE, SNAPSHOT), load and copy jobs into the
   table, query jobs with it as destination, and DML (INSERT, UPDATE, DELETE, MERGE, TRUNCATE TABLE).
   "while DML statements count toward this limit, they are not subject to it if it is reached".
   Limits follow the table's name ("when you truncate the table, or drop the table and then recreate
   it, the quota/limit doesn't reset"). Over the limit: 403 ``rateLimitExceeded`` "Exceeded rate limits:
   too many table update operations for this table. For more information, see <troubleshoot-quotas>"
   ("too many partitioned table update operations" for a partitioned table): the API request is refused;
   a job fails with that errorResult (location ``table.write``, as BigQuery's jobs report it).
3. Dataset metadata updates (#dataset_limits): 5 per 10 s per dataset: ``datasets.insert``, ``patch``,
   ``update``, ``delete`` and CREATE / ALTER / DROP SCHEMA. Over the limit: 403 ``rateLimitExceeded``
   "Exceeded rate limits: too many dataset metadata update operations for this dataset. For more
   information, see <troubleshoot-quotas>" (the wording BigQuery answers; the pages give none).
4. The query queue (#query_jobs, https://cloud.google.com/bigquery/docs/query-queues): 1,000 interactive
   and 20,000 batch queries queued per project and region ("Additional interactive queries that exceed
   this limit return a quota error"). Locally a job is queued from its insert until one of the
   emulator's 8 job threads takes it. The insert of a further one (``jobs.insert``, ``jobs.query``) is
   refused: 403 ``quotaExceeded`` "Quota exceeded: Your project_and_region exceeded quota for max number of
   jobs that can be queued per project. For more information, see <troubleshoot-quotas>" (the page writes
   "project and region"; BigQuery's answers say ``project_and_region``).
5. Concurrent table snapshot jobs (#table_snapshots): 100 per project, copy jobs with
   ``operationType: SNAPSHOT`` and queries with CREATE SNAPSHOT TABLE, from when a job starts until it is
   done. The pages give no error: INFERENCE, the job fails with 403 ``rateLimitExceeded`` "Exceeded rate
   limits: too many concurrent table snapshot jobs for this project. For more information, see
   <troubleshoot-quotas>", the shape of BigQuery's other concurrency limits ("too many concurrent queries
   for this project_and_region").

Setting: ``BQFIDELITY_RATE_LIMITS``, read when the emulator starts (``devstack.Stack.rate_limits`` passes
it): a JSON object overriding any of ``DEFAULTS`` (e.g. ``{"table_updates": 2, "metadata_window_seconds":
1}``, so that a test reaches a limit on 2 cores), or ``off`` for none. Unset or empty: BigQuery's figures.
Refusals are counted: ``GET /bqfidelity/rate-limits`` answers the limits in force and the refusals so far
by limit (``api:<method id>``, ``table_updates``, ``dataset_updates``, ``queued_queries``,
``concurrent_snapshot_jobs``); ``DELETE`` on it clears the counters and windows.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import importlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("bqfidelity.ratelimits")

ENV = "BQFIDELITY_RATE_LIMITS"
QUOTAS_DOC = "https://cloud.google.com/bigquery/quotas"
TROUBLESHOOT_DOC = "https://cloud.google.com/bigquery/docs/troubleshoot-quotas"
MORE = f"For more information, see {TROUBLESHOOT_DOC}"
STATS_PATH = "/bqfidelity/rate-limits"

DEFAULTS: dict[str, float] = {
    "api_requests_per_second": 100,  # per user per method, most core methods
    "tables_insert_per_second": 10,
    "projects_list_per_second": 10,
    "jobs_get_per_second": 1000,
    "tabledata_list_per_second": 1000,
    "api_window_seconds": 1,
    "table_updates": 5,  # per table per metadata window
    "partitioned_table_updates": 50,
    "dataset_updates": 5,  # per dataset per metadata window
    "metadata_window_seconds": 10,
    "queued_interactive_queries": 1000,  # per project and region
    "queued_batch_queries": 20000,
    "concurrent_snapshot_jobs": 100,  # per project
}
PER_METHOD = {
    "bigquery.tables.insert": "tables_insert_per_second",
    "bigquery.projects.list": "projects_list_per_second",
    "bigquery.jobs.get": "jobs_get_per_second",
    "bigquery.tabledata.list": "tabledata_list_per_second",
}
EXEMPT = {"bigquery.tabledata.insertAll"}
SERVICES = {
    "jobs": ("JobService", "Job"),
    "tables": ("TableService", "Table"),
    "datasets": ("DatasetService", "Dataset"),
    "tabledata": ("TableDataService", "TableData"),
    "projects": ("ProjectService", "Project"),
    "models": ("ModelService", "Model"),
    "routines": ("RoutineService", "Routine"),
    "rowAccessPolicies": ("RowAccessPolicyService", "RowAccessPolicy"),
}
SNAPSHOT_SQL = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?SNAPSHOT\s+TABLE\b", re.IGNORECASE)
TABLE_KINDS = {"TABLE", "VIEW", "MATERIALIZED VIEW", "EXTERNAL"}

# The API method of the request being served ({"method": id, "counted": bool}); None outside requests.
_request: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bqfidelity_rate_request", default=None
)
_lock = threading.Lock()
_windows: dict[tuple, collections.deque] = collections.defaultdict(collections.deque)
_refused: collections.Counter = collections.Counter()
_queued: dict[tuple[str, str], tuple[str, str]] = {}
_queue_sizes: collections.Counter = collections.Counter()
_snapshots: collections.Counter = collections.Counter()
limits: dict[str, float] = dict(DEFAULTS)


def read_setting(value: str | None) -> dict[str, float] | None:
    """The limits BQFIDELITY_RATE_LIMITS asks for: None for ``off``; DEFAULTS updated by a JSON object."""
    text = (value or "").strip()
    if not text:
        return dict(DEFAULTS)
    if text.lower() == "off":
        return None
    try:
        given = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{ENV} is neither 'off' nor a JSON object: {text!r}") from error
    if not isinstance(given, dict):
        raise ValueError(f"{ENV} is neither 'off' nor a JSON object: {text!r}")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{ENV}: unknown limit(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    for key, number in given.items():
        if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
            raise ValueError(f"{ENV}: {key} must be a positive number, not {number!r}")
    return {**DEFAULTS, **given}


def _error(reason: str, message: str, location: str | None = None) -> Exception:
    from local_bigquery.errors import BigQueryError

    return BigQueryError(reason, message, location)


def _admit(key: tuple, limit: float, window: float, *, record: bool = True) -> bool:
    """Sliding window: whether one more operation under `key` stays within `limit` per `window` s;
    records it when admitted (and `record`)."""
    now = time.monotonic()
    with _lock:
        stamps = _windows[key]
        while stamps and now - stamps[0] >= window:
            stamps.popleft()
        if len(stamps) >= limit:
            return False
        if record:
            stamps.append(now)
        return True


def _refuse(name: str) -> None:
    with _lock:
        _refused[name] += 1


# --------------------------------------------------------------------------------------------
# 1. API requests per user per method


def _app_module() -> Any:
    """local_bigquery.app, the module (the package exports its FastAPI object under the same name)."""
    return importlib.import_module("local_bigquery.app")


def _routes() -> list[tuple[str, re.Pattern[str], str]]:
    lb_app = _app_module()
    found = []

    def walk(resource: dict) -> None:
        for child in resource.get("resources", {}).values():
            for method in child.get("methods", {}).values():
                template = method.get("flatPath") or method["path"]
                parts = re.split(r"(\{\+?\w+\})", template)
                pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
                found.append((method["httpMethod"], re.compile(f"{re.escape(lb_app.PREFIX)}/{pattern}"), method["id"]))
            walk(child)

    walk(lb_app.DISCOVERY)
    upload = re.compile(f"/upload{re.escape(lb_app.PREFIX)}/projects/[^/]+/jobs")
    found.append(("POST", upload, "bigquery.jobs.insert"))
    return found


def method_name(method_id: str) -> str:
    """``Service.method`` as BigQuery names it in its rate-limit errors (JobService.insertJob; the
    others by the same pattern: INFERENCE)."""
    _, resource, verb = method_id.split(".", 2)
    service, singular = SERVICES.get(resource, (f"{resource[:1].upper()}{resource[1:]}Service", ""))
    if method_id in ("bigquery.jobs.query", "bigquery.jobs.getQueryResults"):
        return f"{service}.{verb}"
    return f"{service}.{verb}{singular}{'s' if verb == 'list' and singular else ''}"


def _project_of(path: str) -> str:
    match = re.search(r"/projects/([^/:]+)", path)
    return match.group(1) if match else ""


class RateLimitMiddleware:
    """Pure ASGI middleware, outermost: names each request's API method and applies its rate limit."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.routes = _routes()

    def method_of(self, verb: str, path: str) -> str | None:
        for http_method, pattern, method_id in self.routes:
            if http_method == verb and pattern.fullmatch(path):
                return method_id
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method_id = self.method_of(scope["method"], scope["path"])
        if method_id is None or method_id in EXEMPT:
            return await self.app(scope, receive, send)
        from local_bigquery.catalog import row_access

        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization")
        principal = row_access.identify(authorization.decode("latin-1") if authorization else None)[0]
        limit = limits[PER_METHOD.get(method_id, "api_requests_per_second")]
        key = ("api", principal, _project_of(scope["path"]), method_id)
        if not _admit(key, limit, limits["api_window_seconds"]):
            _refuse(f"api:{method_id}")
            log.info("refused %s for %s: over %g requests per second", method_id, principal or "anonymous", limit)
            from fastapi.responses import JSONResponse

            error = _error(
                "rateLimitExceeded",
                "Exceeded rate limits: too many api requests per user per method for this user_method "
                f"({method_name(method_id)}). {MORE}",
            )
            return await JSONResponse(error.response(), status_code=403)(scope, receive, send)
        token = _request.set({"method": method_id, "counted": False})
        try:
            return await self.app(scope, receive, send)
        finally:
            _request.reset(token)


# --------------------------------------------------------------------------------------------
# 2. and 3. Table and dataset metadata updates


def _partitioned(reference: tuple[str, str, str]) -> bool:
    from local_bigquery.catalog import metadata
    from local_bigquery.models import Table

    try:
        stored = metadata.load(Table, *reference)
    except Exception:  # noqa: BLE001 - a table that cannot be read is not partitioned
        return False
    return stored is not None and bool(stored.timePartitioning or stored.rangePartitioning)


def table_update(
    reference: tuple[str, str, str],
    *,
    enforce: bool = True,
    partitioned: bool | None = None,
    location: str | None = None,
) -> None:
    """Count one metadata update of the table named `reference`; over the limit (and `enforce`) raise
    BigQuery's error instead. DML passes enforce=False: it counts but is not subject to the limit."""
    if any(not part for part in reference) or reference[1] == "_results":
        return
    window = limits["metadata_window_seconds"]
    key = ("table", *(part.casefold() for part in reference))
    if not enforce:
        _admit(key, float("inf"), window)
        return
    if _admit(key, limits["table_updates"], window):
        return
    if partitioned is None:  # over the limit of standard tables: a partitioned table has more
        partitioned = _partitioned(reference)
    if partitioned and _admit(key, limits["partitioned_table_updates"], window):
        return
    _refuse("table_updates")
    log.info("refused an update of table %s: over its metadata update rate", ".".join(reference))
    kind = "partitioned table" if partitioned else "table"
    raise _error(
        "rateLimitExceeded",
        f"Exceeded rate limits: too many {kind} update operations for this table. {MORE}",
        location,
    )


def dataset_update(reference: tuple[str, str], location: str | None = None) -> None:
    """Count one metadata update of the dataset `reference`; over the limit raise BigQuery's error."""
    if any(not part for part in reference) or reference[1] == "_results":
        return
    key = ("dataset", *(part.casefold() for part in reference))
    if _admit(key, limits["dataset_updates"], limits["metadata_window_seconds"]):
        return
    _refuse("dataset_updates")
    log.info("refused an update of dataset %s: over its metadata update rate", ".".join(reference))
    raise _error(
        "rateLimitExceeded",
        f"Exceeded rate limits: too many dataset metadata update operations for this dataset. {MORE}",
        location,
    )


def _api_once(*method_ids: str) -> bool:
    """Whether this call serves one of `method_ids` and is the request's first counted operation."""
    request = _request.get()
    if request is None or request["method"] not in method_ids or request["counted"]:
        return False
    request["counted"] = True
    return True


def _counting_table_create(original: Callable) -> Callable:
    @functools.wraps(original)
    def create(project_id, dataset_id, body, translate):
        if _api_once("bigquery.tables.insert"):
            reference = body.tableReference
            table_id = reference.tableId if reference is not None else None
            partitioned = bool(body.timePartitioning or body.rangePartitioning)
            if table_id:
                table_update((project_id, dataset_id, table_id), partitioned=partitioned)
        return original(project_id, dataset_id, body, translate)

    return create


def _counting_table_update(original: Callable) -> Callable:
    @functools.wraps(original)
    def update(project_id, dataset_id, table_id, *args, **kwargs):
        if _api_once("bigquery.tables.patch", "bigquery.tables.update"):
            table_update((project_id, dataset_id, table_id))
        return original(project_id, dataset_id, table_id, *args, **kwargs)

    return update


def _counting_dataset(original: Callable, *method_ids: str, from_body: bool = False) -> Callable:
    @functools.wraps(original)
    def wrapper(project_id, second, *args, **kwargs):
        if _api_once(*method_ids):
            if from_body:
                reference = second.datasetReference
                dataset_id = reference.datasetId if reference is not None else None
            else:
                dataset_id = second
            if dataset_id:
                dataset_update((project_id, dataset_id))
        return original(project_id, second, *args, **kwargs)

    return wrapper


def _counting_statement(original: Callable) -> Callable:
    """query._statement: DDL on tables and schemas, queries into a destination table and DML count."""
    from local_bigquery.catalog import names
    from local_bigquery.jobs import query
    from local_bigquery.sql.rules import ddl
    from sqlglot import exp

    @functools.wraps(original)
    def _statement(cur, tree, context, destination, config, dry_run, isolated):
        if not dry_run:
            node = ddl.normalise(tree)
            kind = str(node.args.get("kind") or "").upper()
            target = node.find(exp.Table)
            if isinstance(node, query.DDL) and kind == "SCHEMA" and target is not None:
                dataset_update((target.catalog or context.project_id, target.db or target.name), "dataset.write")
            elif isinstance(node, query.DDL) and kind in TABLE_KINDS and target is not None:
                reference = names.reference(target, context.project_id, context.dataset_id)
                declared = node.find(exp.PartitionedByProperty) is not None or None
                table_update(reference, partitioned=declared, location="table.write")
            elif type(node) in query.STATEMENT_TYPES and not isinstance(node, exp.Export):
                table_update(query._target(node, context), enforce=False)
            elif destination is not None and isinstance(node, exp.Query):
                reference = (destination.projectId, destination.datasetId, destination.tableId)
                table_update(reference, location="table.write")
        return original(cur, tree, context, destination, config, dry_run, isolated)

    return _statement


# --------------------------------------------------------------------------------------------
# 4. and 5. The query queue and concurrent snapshot jobs (jobs.insert / jobs.query, the job runner)


def _queue_of(configuration: Any) -> str | None:
    query = configuration.query
    if query is None or configuration.dryRun:
        return None
    return "queued_batch_queries" if (query.priority or "").upper() == "BATCH" else "queued_interactive_queries"


def _queueing_submit(original: Callable) -> Callable:
    @functools.wraps(original)
    def submit(project_id, job_id, configuration, upload=None):
        queue = _queue_of(configuration)
        if queue is None:
            return original(project_id, job_id, configuration, upload)
        region = (project_id, "US", queue)  # the emulator keeps every job in the US multi-region
        with _lock:
            full = _queue_sizes[region] >= limits[queue]
            mine = not full and (project_id, job_id) not in _queued
            if mine:
                _queued[(project_id, job_id)] = region
                _queue_sizes[region] += 1
        if full:
            _refuse("queued_queries")
            log.info("refused a query of %s: %g %s", project_id, limits[queue], queue.replace("_", " "))
            raise _error(
                "quotaExceeded",
                "Quota exceeded: Your project_and_region exceeded quota for max number of jobs that can be "
                f"queued per project. {MORE}",
            )
        try:
            return original(project_id, job_id, configuration, upload)
        except BaseException:
            if mine:
                _dequeue(project_id, job_id)
            raise

    return submit


def _dequeue(project_id: str, job_id: str) -> None:
    with _lock:
        region = _queued.pop((project_id, job_id), None)
        if region is not None:
            _queue_sizes[region] -= 1


def _is_snapshot(job: Any, job_type: str) -> bool:
    configuration = job.configuration
    if job_type == "copy":  # the model's field is copy_ (``copy`` is pydantic's method)
        return (configuration.copy_.operationType or "").upper() == "SNAPSHOT"
    if job_type == "query" and configuration.query is not None:
        return bool(SNAPSHOT_SQL.search(configuration.query.query or ""))
    return False


def _written_by(job: Any, job_type: str) -> tuple[str, str, str] | None:
    """The destination table of a load or copy job (query jobs count per statement)."""
    if job_type not in ("load", "copy"):
        return None
    destination = getattr(job.configuration, "copy_" if job_type == "copy" else "load").destinationTable
    if destination is None:
        return None
    return destination.projectId, destination.datasetId, destination.tableId


def _fail_at_start(job: Any, job_type: str, running: Any, upload: str | None, error: Exception) -> None:
    """End the job DONE with `error`, having run nothing (as the runner ends a failed job)."""
    from local_bigquery.catalog import metadata
    from local_bigquery.jobs import runner, store
    from local_bigquery.models import JobStatistics

    decided = getattr(running, "decided", None)  # the latency module's record: not held
    if decided is not None:
        decided.set()
    started = job.statistics.replace(startTime=metadata.now())
    job = store.save(job.replace(status={"state": "RUNNING"}, statistics=started))
    store.save(runner._done(job, JobStatistics.model_validate({job_type: {}}), error))
    runner._running.pop((job.jobReference.projectId, job.jobReference.jobId), None)
    if upload and os.path.exists(upload):
        os.remove(upload)


def _limited_execute(original: Callable) -> Callable:
    @functools.wraps(original)
    def _execute(job, job_type, session, running, upload):
        project_id = job.jobReference.projectId
        counted = False  # this job holds one of the project's concurrent snapshot jobs
        refused: Exception | None = None
        try:
            _dequeue(project_id, job.jobReference.jobId)
            if _is_snapshot(job, job_type):
                with _lock:
                    counted = _snapshots[project_id] < limits["concurrent_snapshot_jobs"]
                    if counted:
                        _snapshots[project_id] += 1
                if not counted:
                    _refuse("concurrent_snapshot_jobs")
                    raise _error(
                        "rateLimitExceeded",
                        f"Exceeded rate limits: too many concurrent table snapshot jobs for this project. {MORE}",
                    )
            if (written := _written_by(job, job_type)) is not None:
                table_update(written, location="table.write")
        except Exception as error:
            if getattr(error, "reason", None) not in ("rateLimitExceeded", "quotaExceeded"):
                # never leave a job PENDING for want of a count: log it, and run the job
                log.exception("rate limits: could not count job %s", job.jobReference.jobId)
            else:
                refused = error
        try:
            if refused is not None:
                return _fail_at_start(job, job_type, running, upload, refused)
            return original(job, job_type, session, running, upload)
        finally:
            if counted:
                with _lock:
                    _snapshots[project_id] -= 1

    return _execute


# --------------------------------------------------------------------------------------------


def stats() -> dict[str, Any]:
    with _lock:
        return {
            "limits": dict(limits),
            "refused": dict(_refused),
            "queued": {"/".join(key): size for key, size in _queue_sizes.items() if size},
            "snapshot_jobs": {key: size for key, size in _snapshots.items() if size},
        }


def reset() -> dict[str, Any]:
    with _lock:
        _refused.clear()
        _windows.clear()
    return stats()


def install() -> None:
    """Unless BQFIDELITY_RATE_LIMITS is ``off``: the rate-limit middleware, the counting wrappers of the
    catalog (tables.create / update, datasets.create / update / delete), of query statements and of the
    job runner (submit, _execute), and the stats endpoint."""
    chosen = read_setting(os.environ.get(ENV))
    if chosen is None:
        log.info("rate limits: off (%s=off)", ENV)
        return
    limits.clear()
    limits.update(chosen)
    from local_bigquery import errors
    from local_bigquery.catalog import datasets, tables
    from local_bigquery.jobs import query, runner

    errors.STATUSES.setdefault("rateLimitExceeded", (403, "PERMISSION_DENIED"))
    errors.STATUSES.setdefault("quotaExceeded", (403, "PERMISSION_DENIED"))
    lb_app = _app_module()
    lb_app.app.add_middleware(RateLimitMiddleware)
    lb_app.app.add_api_route(STATS_PATH, stats, methods=["GET"], include_in_schema=False)
    lb_app.app.add_api_route(STATS_PATH, reset, methods=["DELETE"], include_in_schema=False)
    tables.create = _counting_table_create(tables.create)
    tables.update = _counting_table_update(tables.update)
    datasets.create = _counting_dataset(datasets.create, "bigquery.datasets.insert", from_body=True)
    datasets.update = _counting_dataset(datasets.update, "bigquery.datasets.patch", "bigquery.datasets.update")
    datasets.delete = _counting_dataset(datasets.delete, "bigquery.datasets.delete")
    query._statement = _counting_statement(query._statement)
    runner.submit = _queueing_submit(runner.submit)
    runner._execute = _limited_execute(runner._execute)
    changed = {key: value for key, value in limits.items() if value != DEFAULTS[key]}
    log.info("rate limits: BigQuery's%s", f", with {changed}" if changed else "")
