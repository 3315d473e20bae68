"""Environment leases in the DAGs: which environments a run writes, taking and giving back their leases,
renewing them while a task works, and cleaning up after a run that died holding one.

The plan task of a writing run takes the leases (`take_leases`) before anything is written and records
them in `<run prefix>/leases.json`, and renews them while it goes on planning (`renews_taken_leases`: a
plan of thousands of tables takes longer than `leases.stale_after_seconds`); every unit task renews them
while it works (`working_under_lease`:
a heartbeat thread, and a fence the write guard calls before each write); the report task gives them
back (`release_leases`). A run refused a lease records why in `<run prefix>/lease.json`, so its audit
row names the run that holds it. Lease names: dev, qa, staging, prodcopy, test_<name>, drill,
drill_staging, backup, backup_staging, prod (README "Overlapping runs").
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from envsync.core.config import EnvsyncConfig
    from envsync.core.lease import Heartbeat, Holder, Leases, LeaseState, Takeover

log = logging.getLogger(__name__)

LEASES_FILE = "leases.json"
REFUSED_FILE = "lease.json"
# stage tables a run builds before it publishes them (dev sync, cut: __envsync_stage; restores: __restore)
STAGE_SUFFIXES = ("__envsync_stage", "__restore")


# leases of the environments with a fixed set of datasets, in the order target_lease tries them
FIXED_LEASES = ("prod", "drill_staging", "backup_staging", "drill", "backup", "dev", "qa", "staging", "prodcopy")


def lease_env(lease: str) -> str:
    """The environment of the config whose datasets a lease covers (`prod`, `dev`, ... `test`)."""
    if lease.startswith("test_"):
        return "test"
    if lease in ("drill_staging", "backup_staging"):
        return lease.split("_")[0]
    if lease not in FIXED_LEASES:
        raise ValueError(f"{lease!r} is not an environment envsync writes")
    return lease


def lease_project(config: EnvsyncConfig, lease: str) -> str:
    """The project holding the datasets a lease covers (staging's backups and drills: the backup and
    drill projects)."""
    return config.project_of(lease_env(lease))


def env_datasets(config: EnvsyncConfig, env: str) -> list[str]:
    """The datasets a lease covers (in the project `lease_project` names)."""
    prefixes = config.env_prefixes()
    staging = prefixes["staging"]
    if env == "prod":
        return list(config.prod.datasets)
    if env in ("drill_staging", "backup_staging"):
        return [prefixes[env.split("_")[0]] + staging + ds for ds in config.prod.datasets]
    if env.startswith("test_"):
        return [config.env_dataset("test", ds, env.removeprefix("test_")) for ds in config.prod.datasets]
    if env not in prefixes:
        raise ValueError(f"{env!r} is not an environment envsync writes")
    return [prefixes[env] + ds for ds in config.prod.datasets]


def backup_lease(source: str) -> str:
    """The lease of the backup datasets of `source` (prod or staging)."""
    return "backup" if source == "prod" else f"backup_{source}"


def drill_lease(source: str) -> str:
    return "drill" if source == "prod" else f"drill_{source}"


def target_lease(config: EnvsyncConfig, dataset: str, project: str | None = None) -> str:
    """The lease of the environment a dataset of `project` belongs to (a restore's target dataset).

    Without `project` the dataset name alone must tell: in a split layout an environment with an empty
    prefix holds prod's dataset names, so a name found in several projects is refused as ambiguous."""
    found = {
        lease: lease_project(config, lease)
        for lease in FIXED_LEASES
        if dataset in env_datasets(config, lease) and project in (None, lease_project(config, lease))
    }
    test = config.environments.test.prefix
    if dataset.startswith(test) and project in (None, config.project_of("test")):
        for ds in config.prod.datasets:
            if dataset.endswith("_" + ds) and len(dataset) > len(test) + len(ds) + 1:
                found.setdefault("test_" + dataset[len(test) : -len(ds) - 1], config.project_of("test"))
                break
    where = "" if project is None else f" in project {project!r}"
    if not found:
        raise ValueError(f"dataset {dataset!r}{where} belongs to no environment envsync writes")
    if len(found) > 1:
        named = ", ".join(f"{lease} (project {proj!r})" for lease, proj in found.items())
        raise ValueError(f"dataset {dataset!r} is a dataset of {named}: name its project")
    return next(iter(found))


def airflow_run_state(holder: Holder) -> bool | None:
    """Whether Airflow still runs the holder's DAG run (None: another deployment, or no Airflow to ask)."""
    from envsync.core.lease import deployment_id

    if holder.deployment != deployment_id():
        return None
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        state = str(RuntimeTaskInstance.get_dagrun_state(holder.dag_id, holder.run_id) or "").lower()
    except Exception as error:  # outside a task, or the run is gone from this Airflow
        if "not found" in str(error).lower() or "404" in str(error):
            return False
        log.info("could not ask Airflow for the state of %s: %s", holder.describe(), error)
        return None
    return state in ("queued", "running")


def leases_for(config: EnvsyncConfig, conn_id: str) -> Leases:
    from envsync.core.clients import storage_client
    from envsync.core.lease import Leases, LeaseSettings

    s = config.leases
    return Leases(
        storage_client(config.state_project, conn_id),
        config.state.bucket,
        LeaseSettings(
            wait_seconds=s.wait_seconds,
            poll_seconds=s.poll_seconds,
            heartbeat_seconds=s.heartbeat_seconds,
            stale_after_seconds=s.stale_after_seconds,
        ),
        is_running=airflow_run_state,
    )


def me(context: Context, task_id: str) -> Holder:
    from envsync.core.lease import Holder, deployment_id

    return Holder(context["dag"].dag_id, context["run_id"], task_id, deployment_id())


# the heartbeats of the leases a plan task took (`renews_taken_leases`), stopped when the task ends
_plan_beats: contextvars.ContextVar[list[Heartbeat] | None] = contextvars.ContextVar("envsync_plan_beats", default=None)


def renews_taken_leases(execute: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a plan operator's `execute`: the leases `take_leases` takes during it are renewed every
    `leases.heartbeat_seconds` until it returns or fails; a lease taken over meanwhile fails the task
    (nothing was written: a plan task only reads and records its manifest)."""

    @functools.wraps(execute)
    def wrapper(self: Any, context: Context) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        beats: list[Heartbeat] = []
        token = _plan_beats.set(beats)
        try:
            result = execute(self, context)
        finally:
            _plan_beats.reset(token)
            for beat in beats:
                beat.__exit__(None, None, None)
        lost = next((beat.lost for beat in beats if beat.lost is not None), None)
        if lost is not None:
            raise AirflowFailException(str(lost))
        return result

    return wrapper


def take_leases(config: EnvsyncConfig, conn_id: str, context: Context, task_id: str, envs: Sequence[str]) -> None:
    """Take the leases of `envs` for this run before its first write; fail naming the holder when another
    run keeps one past `leases.wait_seconds`. Clean up after every dead run whose lease was taken over."""
    from airflow.sdk.exceptions import AirflowFailException

    from envsync.core.lease import LeaseHeld
    from envsync.operators.runtime import manifest_store, run_prefix

    store = manifest_store(config, conn_id)
    prefix = run_prefix(store, context)
    leases = leases_for(config, conn_id)
    holder = me(context, task_id)

    def waiting(env: str, other: Holder, waited: float) -> None:
        log.info(
            "environment %s is being written by %s; waiting (%.0f s of at most %d s, leases.wait_seconds)",
            env,
            other.describe(),
            waited,
            config.leases.wait_seconds,
        )

    log.info("taking the leases of %s (%s)", ", ".join(sorted(envs)), ", ".join(leases.uri(e) for e in sorted(envs)))
    try:
        takeovers = leases.acquire(envs, holder, on_wait=waiting)
    except LeaseHeld as refused:
        store.write(
            f"{prefix}/{REFUSED_FILE}", {"refused": str(refused), "env": refused.env, "holder": asdict(refused.holder)}
        )
        raise AirflowFailException(str(refused)) from None
    store.write(f"{prefix}/{LEASES_FILE}", {"envs": sorted(set(envs)), "holder": asdict(holder)})
    log.info("this run holds the leases of %s", ", ".join(sorted(set(envs))))
    beats = _plan_beats.get()
    if beats is not None:  # renewed while this plan task goes on (renews_taken_leases)
        from envsync.core.lease import Heartbeat

        beat = Heartbeat(leases, sorted(set(envs)), holder)
        beat.__enter__()
        beats.append(beat)
    for takeover in takeovers:
        clean_up_dead_run(config, conn_id, context, takeover)


def held_envs(config: EnvsyncConfig, conn_id: str, context: Context) -> list[str]:
    from envsync.operators.runtime import manifest_store, run_prefix

    store = manifest_store(config, conn_id)
    recorded = store.read(f"{run_prefix(store, context)}/{LEASES_FILE}") or {}
    return list(recorded.get("envs") or [])


def refusal(config: EnvsyncConfig, conn_id: str, context: Context) -> str | None:
    """Why this run was refused a lease (the message naming the holder), if it was."""
    from envsync.operators.runtime import manifest_store, run_prefix

    store = manifest_store(config, conn_id)
    recorded = store.read(f"{run_prefix(store, context)}/{REFUSED_FILE}")
    return None if recorded is None else str(recorded.get("refused"))


@contextlib.contextmanager
def working_under_lease(
    config: EnvsyncConfig, conn_id: str, context: Context, task_id: str
) -> Iterator[Heartbeat | None]:
    """Renew this run's leases while a task works; fail the task at once when one was taken over."""
    from airflow.sdk.exceptions import AirflowFailException

    from envsync.core.lease import Heartbeat, LeaseLost

    envs = held_envs(config, conn_id, context)
    if not envs:
        yield None
        return
    beat = Heartbeat(leases_for(config, conn_id), envs, me(context, task_id))
    try:
        beat.__enter__()
    except LeaseLost as lost:
        raise AirflowFailException(str(lost)) from None
    try:
        yield beat
    finally:
        beat.__exit__(None, None, None)


def release_leases(config: EnvsyncConfig, conn_id: str, context: Context, task_id: str, status: str) -> list[str]:
    envs = held_envs(config, conn_id, context)
    leases = leases_for(config, conn_id)
    holder = me(context, task_id)
    return [env for env in envs if leases.release(env, holder, status=status)]


def clean_up_dead_run(config: EnvsyncConfig, conn_id: str, context: Context, takeover: Takeover) -> dict[str, Any]:
    """After taking over a dead run's lease: cancel the BigQuery jobs it left running (they carry its
    run-id label) in the jobs project of the leased environment, drop the stage tables left in the
    environment's datasets (in its own project), and record it in the audit as `killed`."""
    from envsync.bigquery.jobs import label_value
    from envsync.core.guard import TableRef
    from envsync.observe.audit import record_run
    from envsync.operators.runtime import guarded_runner

    dead = takeover.previous
    runner = guarded_runner(config, conn_id, context, "lease-takeover", env=lease_env(takeover.env))
    client = runner.bq.client
    labels = {"envsync-dag": label_value(dead.dag_id), "envsync-run": label_value(dead.run_id)}
    since = _parse(dead.since) - dt.timedelta(minutes=5) if dead.since else None
    cancelled: list[str] = []
    for state in ("running", "pending"):
        try:
            jobs = list(client.list_jobs(state_filter=state, min_creation_time=since))  # envsync's own jobs
        except Exception as error:  # say so, go on: the jobs stop at their own timeout (jobTimeoutMs)
            log.warning("could not list BigQuery jobs to cancel those of %s: %s", dead.describe(), error)
            break
        for job in jobs:
            job_labels = getattr(job, "labels", None) or {}
            if all(job_labels.get(k) == v for k, v in labels.items()):
                try:
                    client.cancel_job(job.job_id, location=job.location or config.location)
                    cancelled.append(job.job_id)
                except Exception as error:
                    log.warning("could not cancel BigQuery job %s of %s: %s", job.job_id, dead.describe(), error)
    removed: list[str] = []
    if takeover.env != "prod":  # prod is read-only: a confirmed restore rebuilds its own stages
        project = lease_project(config, takeover.env)
        for dataset in env_datasets(config, takeover.env):
            try:
                tables = list(client.list_tables(f"{project}.{dataset}"))
            except Exception:  # NotFound: the dataset is not there (yet)
                continue
            for item in tables:
                if item.table_id.endswith(STAGE_SUFFIXES):
                    runner.bq.delete_table(TableRef(project, dataset, item.table_id))
                    removed.append(config.qualified(project, dataset, item.table_id))
    summary = (
        f"killed: its lease of {takeover.env} was taken over by run {context['run_id']} of DAG "
        f"{context['dag'].dag_id} because {takeover.reason}; {len(cancelled)} BigQuery job(s) it left running "
        f"cancelled{': ' + ', '.join(cancelled) if cancelled else ''}; {len(removed)} stage table(s) removed"
        f"{': ' + ', '.join(removed) if removed else ''}"
    )
    log.warning("%s: %s", dead.describe(), summary)
    now = dt.datetime.now(dt.UTC)
    try:
        record_run(
            config,
            guarded_runner(config, conn_id, context, "lease-takeover", env="audit"),
            {
                "recorded_at": now,
                "dag_id": dead.dag_id,
                "run_id": dead.run_id,
                "environment": takeover.env,
                "status": "killed",
                "started_at": _parse(dead.since) if dead.since else None,
                "duration_seconds": (now - _parse(dead.since)).total_seconds() if dead.since else None,
                "objects": 0,
                "failed": 0,
                "error": summary[:2000],
            },
            [],
        )
    except Exception as error:  # the audit never fails the data work
        log.warning("could not record the killed run in the audit tables: %s", error)
    return {"cancelled": cancelled, "removed": removed, "summary": summary}


def lease_holders(config: EnvsyncConfig, conn_id: str, envs: Sequence[str]) -> dict[str, LeaseState | None]:
    """Who holds each environment's lease now (readers: parity, the page)."""
    return leases_for(config, conn_id).holders(envs)


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)
