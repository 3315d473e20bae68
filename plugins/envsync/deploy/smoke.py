"""The smoke test of a deployed release, through the target Airflow's REST API v2.

1. Every DAG of the live release (its MANIFEST.json) is served, tagged `envsync:<release>` by the
   loader: the Airflow really runs this release (Composer takes minutes to sync a bucket: it waits).
2. No import error (`GET /api/v2/importErrors`).
3. Every DAG's details (`GET /api/v2/dags/{id}/details`) hold the params its file declares.
4. A dry run of prod_to_dev_sync (`POST /api/v2/dags/prod_to_dev_sync/dagRuns`, conf
   `{"dry_run": true}`: it plans and writes nothing) is polled until it succeeds.

The result (smoke_passed / smoke_failed, with what failed) is recorded in the bucket's ledger for the
live digest. Auth: `POST /auth/token` with a username and password (Airflow's simple auth manager), a
bearer token, or a Google OAuth token from application default credentials (Cloud Composer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from envsync.deploy.release import Bucket, DeployError, live, record, release_manifest

log = logging.getLogger(__name__)

DRY_RUN_DAG = "prod_to_dev_sync"
DRY_RUN_CONF = {"dry_run": True}
AUTH_MODES = ("password", "token", "google", "none")
RELEASE_TAG = "envsync:"  # the tag the loader (envsync/deploy/loader.py, airflow-only imports) gives each DAG


class SmokeFailed(DeployError):
    """The smoke test found a problem (recorded as smoke_failed); the message lists every problem."""


@dataclass
class AirflowApi:
    """A small client of Airflow's REST API v2."""

    base_url: str
    auth: str = "none"
    username: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = 30.0
    _client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import httpx

        if self.auth not in AUTH_MODES:
            raise DeployError(f"auth {self.auth!r} is not allowed; allowed: {list(AUTH_MODES)}")
        if self.auth == "password" and not (self.username and self.password):
            raise DeployError("auth password needs --username and --password")
        if self.auth == "token" and not self.token:
            raise DeployError("auth token needs a token (--token or ENVSYNC_AIRFLOW_TOKEN)")
        self._client = httpx.Client(base_url=self.base_url.rstrip("/"), timeout=self.timeout)

    def close(self) -> None:
        self._client.close()

    def _authenticate(self) -> None:
        if self.auth == "password":
            response = self._client.post("/auth/token", json={"username": self.username, "password": self.password})
            if response.status_code >= 400:
                raise DeployError(
                    f"POST {self.base_url}/auth/token as {self.username!r}: HTTP {response.status_code}: "
                    f"{response.text[:300]}"
                )
            self.token = str(response.json()["access_token"])
        elif self.auth == "google":
            import google.auth
            import google.auth.transport.requests

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            credentials.refresh(google.auth.transport.requests.Request())
            self.token = str(credentials.token)

    def request(self, method: str, path: str, *, expect: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """One call (authenticating first, and once more on 401); the decoded JSON, or DeployError."""
        for attempt in (0, 1):
            if self.auth in ("password", "google") and (self.token is None or attempt == 1):
                self._authenticate()
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            response = self._client.request(method, path, headers=headers, **kwargs)
            if response.status_code != 401 or self.auth in ("none", "token"):
                break
        if response.status_code not in tuple(expect):
            raise DeployError(f"{method} {self.base_url}{path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def dags(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self.request("GET", "/api/v2/dags", params={"limit": 100, "offset": offset})
            for dag in page["dags"]:
                found[dag["dag_id"]] = dag
            offset += len(page["dags"])
            if not page["dags"] or offset >= int(page["total_entries"]):
                return found

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"])


def _tags(dag: dict[str, Any]) -> set[str]:
    return {t["name"] if isinstance(t, dict) else str(t) for t in dag.get("tags") or []}


def served(api: AirflowApi, expected: Iterable[str], tag: str) -> list[str]:
    """What keeps the release from being served: missing DAGs, DAGs of another release (empty: none)."""
    dags = api.dags()
    problems = []
    for dag_id in expected:
        if dag_id not in dags:
            problems.append(f"DAG {dag_id} is missing")
        elif tag not in _tags(dags[dag_id]):
            other = sorted(t for t in _tags(dags[dag_id]) if t.startswith(RELEASE_TAG)) or ["no release tag"]
            problems.append(f"DAG {dag_id} serves {', '.join(other)}, not {tag}")
    return problems


def check(
    api: AirflowApi,
    manifest: dict[str, Any],
    release: str,
    *,
    wait_seconds: float = 600.0,
    run_timeout: float = 1800.0,
    unpause: bool = False,
    poll: float = 5.0,
) -> dict[str, Any]:
    """Run the checks; returns a summary, raises SmokeFailed naming every problem."""
    expected: dict[str, list[str] | None] = dict(manifest.get("dags") or {})
    tag = RELEASE_TAG + release
    deadline = time.monotonic() + wait_seconds
    while True:
        problems = served(api, expected, tag)
        if not problems:
            break
        if time.monotonic() >= deadline:
            errors = [e.get("filename") for e in api.import_errors()]
            raise SmokeFailed(
                f"after {wait_seconds:.0f} s Airflow does not serve release {release}: {'; '.join(problems)}"
                + (f"; import errors in {errors}" if errors else "")
            )
        log.info("waiting for Airflow to serve %s: %s", release, "; ".join(problems[:3]))
        time.sleep(poll)
    log.info("Airflow serves the %d DAGs of %s", len(expected), release)
    problems = [f"import error in {e.get('filename')}: {str(e.get('stack_trace'))[:300]}" for e in api.import_errors()]
    for dag_id, params in sorted(expected.items()):
        details = api.request("GET", f"/api/v2/dags/{dag_id}/details")
        if details.get("has_import_errors"):
            problems.append(f"DAG {dag_id} has import errors")
        missing = sorted(set(params or []) - set(details.get("params") or {}))
        if missing:
            problems.append(f"DAG {dag_id} lacks params {missing} (its file declares {params})")
    if DRY_RUN_DAG not in expected:
        problems.append(f"the release has no {DRY_RUN_DAG} DAG to dry-run")
    if problems:
        raise SmokeFailed("; ".join(problems))
    dag = api.dags()[DRY_RUN_DAG]
    if dag.get("is_paused"):
        if not unpause:
            raise SmokeFailed(
                f"{DRY_RUN_DAG} is paused: its dry run would stay queued; unpause it (its schedule then runs), "
                "or pass --unpause"
            )
        api.request("PATCH", f"/api/v2/dags/{DRY_RUN_DAG}", json={"is_paused": False})
        log.info("unpaused %s", DRY_RUN_DAG)
    run = api.request(
        "POST",
        f"/api/v2/dags/{DRY_RUN_DAG}/dagRuns",
        json={"logical_date": None, "conf": DRY_RUN_CONF, "note": f"envsync smoke test of {release}"},
    )
    run_id = run["dag_run_id"]
    log.info("triggered the dry run %s of %s", run_id, DRY_RUN_DAG)
    run_deadline = time.monotonic() + run_timeout
    state = run.get("state")
    while state not in ("success", "failed"):
        if time.monotonic() >= run_deadline:
            raise SmokeFailed(f"the dry run {run_id} of {DRY_RUN_DAG} is still {state} after {run_timeout:.0f} s")
        time.sleep(poll)
        state = api.request("GET", f"/api/v2/dags/{DRY_RUN_DAG}/dagRuns/{run_id}")["state"]
    if state != "success":
        tis = api.request("GET", f"/api/v2/dags/{DRY_RUN_DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
        failed = sorted(ti["task_id"] for ti in tis if ti.get("state") not in ("success", "skipped"))
        raise SmokeFailed(f"the dry run {run_id} of {DRY_RUN_DAG} ended {state} (tasks not successful: {failed})")
    return {"dags": sorted(expected), "dry_run": run_id}


def smoke(
    target: Bucket,
    environment: str,
    api: AirflowApi,
    *,
    actor: str,
    notify: Callable[[dict[str, Any]], None] = lambda entry: None,
    **options: Any,
) -> dict[str, Any]:
    """Smoke-test the release live in `target` and record the result in its ledger for the live digest."""
    current = live(target)
    if current.get("environment") not in (None, environment):
        raise DeployError(f"gs://{target.name} serves {current.get('environment')}, not {environment}")
    base = {
        "action": "smoke",
        "actor": actor,
        "environment": environment,
        "version": current.get("version"),
        "digest": current.get("digest"),
        "release": current["release"],
        "api_url": api.base_url,
    }
    try:
        summary = check(api, release_manifest(target, current), str(current["release"]), **options)
    except DeployError as error:
        entry = record(target, {**base, "result": "smoke_failed", "reason": str(error)})
        notify(entry)
        raise SmokeFailed(f"smoke test of {current['release']} on {environment} failed: {error}") from None
    text = (
        f"{len(summary['dags'])} DAGs served, no import error, dry run {summary['dry_run']} of {DRY_RUN_DAG} succeeded"
    )
    entry = record(target, {**base, "result": "smoke_passed", "summary": text, "dry_run": summary["dry_run"]})
    notify(entry)
    return entry
