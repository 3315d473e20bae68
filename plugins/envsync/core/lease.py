"""One writer per environment: a lease object in the state bucket, taken with a generation precondition.

    gs://<state.bucket>/leases/<environment>.json    the holder: DAG, run id, task, deployment, since
    gs://<state.bucket>/leases/<environment>.last.json   the last run that released it (its completed state)

A run that writes an environment takes its lease before its first write and releases it after its last.
The lease object is created with `if_generation_match=0` ("only if there are no live versions": a
create that cannot succeed twice, https://cloud.google.com/storage/docs/request-preconditions); GCS is
strongly consistent for read-after-write, metadata and deletes
(https://cloud.google.com/storage/docs/consistency), so two runs can never both hold it.

* Renewal (the heartbeat) rewrites the object with `if_generation_match=<its generation>`: a renewal
  that finds another holder, or a changed generation, marks the lease lost, and every later write of
  the run is refused (`Lease.fence`, called by the write guard before each write).
* Staleness is judged by the object's `updated` time (the server's clock, not the holder's): a lease
  older than `stale_after_seconds` is stale, and so is a lease whose run Airflow says is no longer
  running (asked only of runs of this deployment: another Airflow's runs are judged by the heartbeat).
* A takeover rewrites the stale object with `if_generation_match=<its generation>`: of several runs
  taking over the same stale lease exactly one succeeds, and that one cleans up after the dead run.
* A retried create may answer 412 after its own success (a retry of a request that did succeed): the
  holder in the object is compared with the caller, so a run never refuses itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import google.cloud.storage as storage  # the form mypy resolves in the google.cloud namespace

log = logging.getLogger(__name__)

PREFIX = "leases"
_KEY = re.compile(r"[a-z][a-z0-9_]{0,62}")


class LeaseHeld(RuntimeError):
    """Another run holds the lease of an environment (after any bounded wait): nothing was written."""

    def __init__(self, env: str, holder: Holder, waited: float):
        self.env = env
        self.holder = holder
        self.waited = waited
        super().__init__(
            f"environment {env} is being written by {holder.describe()} (lease held since {holder.since}, "
            f"last heartbeat {holder.heartbeat}); this run waited {waited:.0f} s and writes nothing"
        )


class LeaseLost(RuntimeError):
    """This run's lease was taken over by another run (its heartbeat was stale): it must write no more."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease. `since`/`heartbeat` are ISO-8601 UTC; `deployment` names the Airflow."""

    dag_id: str
    run_id: str
    task_id: str
    deployment: str
    since: str = ""
    heartbeat: str = ""

    def same_run(self, other: Holder) -> bool:
        return (self.dag_id, self.run_id, self.deployment) == (other.dag_id, other.run_id, other.deployment)

    def describe(self) -> str:
        return f"run {self.run_id} of DAG {self.dag_id} (task {self.task_id}, Airflow deployment {self.deployment})"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Holder:
        return cls(
            **{k: str(data.get(k) or "") for k in ("dag_id", "run_id", "task_id", "deployment", "since", "heartbeat")}
        )


@dataclass(frozen=True)
class LeaseState:
    """An environment's lease as read from the bucket: its holder, the object's generation and its
    server-side `updated` time."""

    env: str
    holder: Holder
    generation: int
    updated: dt.datetime

    def age(self, now: dt.datetime) -> float:
        return (now - self.updated).total_seconds()


@dataclass(frozen=True)
class Takeover:
    """A stale lease this run took over: whose it was and why it was stale."""

    env: str
    previous: Holder
    reason: str


def validate_key(env: str) -> str:
    if not _KEY.fullmatch(env):
        raise ValueError(f"{env!r} is not a lease name: lowercase letters, digits and '_', starting with a letter")
    return env


def deployment_id() -> str:
    """This Airflow deployment's name in leases: ENVSYNC_DEPLOYMENT, else a hash of the metadata
    database's URL (or of the execution API's URL on workers without database access)."""
    named = os.environ.get("ENVSYNC_DEPLOYMENT", "").strip()
    if named:
        return named
    identity = ""
    try:
        from airflow.configuration import conf

        identity = conf.get("database", "sql_alchemy_conn", fallback="") or conf.get(
            "core", "execution_api_server_url", fallback=""
        )
    except Exception:  # pragma: no cover - Airflow not configured (tools outside Airflow)
        identity = ""
    identity = identity or os.uname().nodename
    return "airflow-" + hashlib.sha256(identity.encode()).hexdigest()[:10]


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class LeaseSettings:
    wait_seconds: float = 0.0
    poll_seconds: float = 10.0
    heartbeat_seconds: float = 30.0
    stale_after_seconds: float = 600.0


@dataclass
class Leases:
    """The leases of one state bucket.

    `is_running(holder)` answers whether Airflow still runs the holder's DAG run: True, False, or None
    when it cannot tell (another deployment, or no Airflow to ask): then only the heartbeat's age counts.
    """

    client: storage.Client
    bucket: str
    settings: LeaseSettings = field(default_factory=LeaseSettings)
    is_running: Callable[[Holder], bool | None] = lambda holder: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], dt.datetime] = now_utc

    def path(self, env: str) -> str:
        return f"{PREFIX}/{validate_key(env)}.json"

    def uri(self, env: str) -> str:
        return f"gs://{self.bucket}/{self.path(env)}"

    def _blob(self, env: str) -> Any:
        return self.client.bucket(self.bucket).blob(self.path(env))

    # ----- reading -------------------------------------------------------------------------
    def read(self, env: str) -> LeaseState | None:
        from google.api_core.exceptions import NotFound

        blob = self._blob(env)
        try:
            blob.reload()
            generation, updated = int(blob.generation or 0), blob.updated
            text = blob.download_as_text(if_generation_match=generation)
        except NotFound:
            return None
        except Exception as error:  # 412: replaced between reload and download: read again
            from google.api_core.exceptions import PreconditionFailed

            if isinstance(error, PreconditionFailed):
                return self.read(env)
            raise
        return LeaseState(env, Holder.from_dict(json.loads(text)), generation, updated or self.clock())

    def last_release(self, env: str) -> dict[str, Any] | None:
        from google.api_core.exceptions import NotFound

        try:
            return json.loads(self.client.bucket(self.bucket).blob(f"{PREFIX}/{env}.last.json").download_as_text())
        except NotFound:
            return None

    def stale_reason(self, state: LeaseState) -> str | None:
        """Why a lease may be taken over (None: its holder is alive)."""
        age = state.age(self.clock())
        if age > self.settings.stale_after_seconds:
            bound = self.settings.stale_after_seconds
            return f"its last heartbeat is {age:.0f} s old (leases.stale_after_seconds: {bound:g})"
        running = self.is_running(state.holder)
        if running is False:
            return "Airflow says its run is no longer running"
        return None

    # ----- writing -------------------------------------------------------------------------
    def _write(self, env: str, holder: Holder, generation: int) -> int:
        blob = self._blob(env)
        blob.upload_from_string(
            json.dumps(asdict(holder), sort_keys=True), content_type="application/json", if_generation_match=generation
        )
        return int(blob.generation or 0)

    def _try_create(self, env: str, me: Holder) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        try:
            self._write(env, me, 0)
            return True
        except PreconditionFailed:
            current = self.read(env)
            return current is not None and current.holder.same_run(me)  # our own retried create

    def acquire(
        self, envs: Iterable[str], me: Holder, *, on_wait: Callable[[str, Holder, float], None] | None = None
    ) -> list[Takeover]:
        """Take the leases of `envs` (in name order, so two runs wanting the same set never deadlock).

        A lease this run already holds (a retried task) is kept. A stale one is taken over (returned, so
        the caller can clean up after the dead run). A live one is waited for, polling, up to
        `settings.wait_seconds`; then every lease taken here is given back and LeaseHeld is raised.
        """
        from google.api_core.exceptions import NotFound, PreconditionFailed

        stamp = self.clock().isoformat()
        me = Holder(me.dag_id, me.run_id, me.task_id, me.deployment, since=stamp, heartbeat=stamp)
        taken: list[str] = []
        takeovers: list[Takeover] = []
        started = time.monotonic()
        try:
            for env in sorted(set(envs)):
                while True:
                    if self._try_create(env, me):
                        taken.append(env)
                        break
                    state = self.read(env)
                    if state is None:
                        continue  # released meanwhile: create again
                    if state.holder.same_run(me):
                        self.renew(env, me)
                        taken.append(env)
                        break
                    reason = self.stale_reason(state)
                    if reason is not None:
                        try:  # replace exactly the stale generation: of several takers, one wins
                            self._write(env, me, state.generation)
                        except (PreconditionFailed, NotFound):
                            continue  # someone else changed it first: look again
                        log.warning("lease %s: taken over from %s: %s", self.uri(env), state.holder.describe(), reason)
                        takeovers.append(Takeover(env, state.holder, reason))
                        taken.append(env)
                        break
                    waited = time.monotonic() - started
                    if waited >= self.settings.wait_seconds:
                        raise LeaseHeld(env, state.holder, waited)
                    if on_wait is not None:
                        on_wait(env, state.holder, waited)
                    self.sleep(min(self.settings.poll_seconds, max(self.settings.wait_seconds - waited, 0.1)))
        except BaseException:
            for env in taken:
                self.release(env, me, status="abandoned")
            raise
        return takeovers

    def renew(self, env: str, me: Holder) -> LeaseState:
        """Refresh the heartbeat of a lease this run holds; LeaseLost when another run holds it."""
        from google.api_core.exceptions import PreconditionFailed

        for _ in range(5):
            state = self.read(env)
            if state is None or not state.holder.same_run(me):
                whom = "nobody" if state is None else state.holder.describe()
                raise LeaseLost(
                    f"this run no longer holds the lease of environment {env} ({self.uri(env)}): it is now held "
                    f"by {whom}; it was taken over as stale, and this run must write nothing more"
                )
            holder = Holder(
                me.dag_id,
                me.run_id,
                me.task_id,
                me.deployment,
                since=state.holder.since,
                heartbeat=self.clock().isoformat(),
            )
            try:
                generation = self._write(env, holder, state.generation)
                return LeaseState(env, holder, generation, self.clock())
            except PreconditionFailed:
                continue  # changed between read and write: read again
        raise LeaseLost(f"could not renew the lease of environment {env}: it kept changing under this run")

    def release(self, env: str, me: Holder, *, status: str = "success") -> bool:
        """Give the lease back if this run holds it (never another run's); record the release."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        state = self.read(env)
        if state is None or not state.holder.same_run(me):
            return False
        try:
            self._blob(env).delete(if_generation_match=state.generation)
        except (NotFound, PreconditionFailed):
            return False
        record = {**asdict(state.holder), "released": self.clock().isoformat(), "status": status}
        self.client.bucket(self.bucket).blob(f"{PREFIX}/{env}.last.json").upload_from_string(
            json.dumps(record, sort_keys=True), content_type="application/json"
        )
        log.info("lease %s released by %s (%s)", self.uri(env), me.describe(), status)
        return True

    def holders(self, envs: Sequence[str]) -> dict[str, LeaseState | None]:
        return {env: self.read(env) for env in envs}


class Heartbeat:
    """Renews a run's leases every `heartbeat_seconds` while a task works, in a daemon thread.

    `fence()` raises LeaseLost once a renewal found another holder: the write guard calls it before
    every write, so a run whose lease was taken over writes nothing more.
    """

    def __init__(self, leases: Leases, envs: Sequence[str], me: Holder):
        self.leases = leases
        self.envs = list(envs)
        self.me = me
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew_all(self) -> None:
        for env in self.envs:
            try:
                self.leases.renew(env, self.me)
            except LeaseLost as error:
                self.lost = error
                raise

    def fence(self, *_: Any) -> None:
        if self.lost is not None:
            raise self.lost

    def _loop(self) -> None:
        while not self._stop.wait(self.leases.settings.heartbeat_seconds):
            try:
                self.renew_all()
            except LeaseLost as error:
                log.error("%s", error)
                return
            except Exception as error:  # a failed renewal is retried at the next beat
                log.warning("could not renew the leases %s: %s", self.envs, error)

    def __enter__(self) -> Heartbeat:
        self.renew_all()
        self._thread = threading.Thread(target=self._loop, name="envsync-lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
