"""A run's handles on the state bucket and BigQuery: its manifest store, its folder there, and its
guarded job runner (used by every operator module, and by the leases)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Context

    from envsync.bigquery.jobs import JobRunner
    from envsync.core.config import EnvsyncConfig
    from envsync.core.manifest import ManifestStore


def manifest_store(config: EnvsyncConfig, conn_id: str, bucket: str | None = None) -> ManifestStore:
    """The JSON store in `bucket` (default: the state bucket; backup exports use config.export_bucket)."""
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    return ManifestStore(storage_client(config.state_project, conn_id), bucket or config.state.bucket)


def run_prefix(store: ManifestStore, context: Context) -> str:
    return store.run_prefix(context["dag"].dag_id, context["run_id"])


def guarded_runner(
    config: EnvsyncConfig,
    conn_id: str,
    context: Context,
    task_id: str,
    location: str | None = None,
    *,
    env: str | None = None,
) -> JobRunner:
    """A JobRunner whose every write passes the prod write guard, labelled with this run and task.

    Its jobs run in (and are billed to) the jobs project of `env`, the environment the task writes
    (`config.jobs_project_of(env)`); without `env`, the top-level project."""
    from envsync.bigquery.jobs import JobRunner
    from envsync.core.clients import bigquery_client
    from envsync.core.guard import GuardedBigQuery, WriteGuard
    from envsync.core.limits import configure

    configure(config.rate_limits.rates())  # this process paces its requests at the config's rates
    project = config.jobs_project_of(env) if env else config.project
    client = bigquery_client(project, config.location, conn_id)
    bq = GuardedBigQuery(client, WriteGuard.from_config(config), location or config.location)
    return JobRunner(
        bq,
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        task_id=task_id,
        timeout=config.sync.job_timeout_seconds,
    )
