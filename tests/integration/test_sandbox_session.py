"""The preflight and clean-up of `make test-gcp` (tests/sandbox.py), against the emulators standing in
for a sandbox project: it refuses a project holding objects of the run-prefix family it did not
create, and at the end deletes exactly this run's datasets and buckets, nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sandbox

# needs the emulators; `make test-gcp` runs the same code against the real project itself
pytestmark = [pytest.mark.integration, pytest.mark.gcp_incompatible]

PROJECT = "envsync-sandboxtest"
FOREIGN = "envsynct202001010000abcdef"  # a run prefix of another (earlier, killed) run


@pytest.fixture
def clients(emulators: Any) -> Iterator[tuple[Any, Any]]:
    from envsync.core.clients import bigquery_client, storage_client

    bq, gcs = bigquery_client(PROJECT, "US"), storage_client(PROJECT)
    yield bq, gcs
    for dataset in bq.list_datasets(PROJECT):
        bq.delete_dataset(dataset.reference, delete_contents=True, not_found_ok=True)
    for bucket in gcs.list_buckets(prefix="envsynct"):
        for blob in gcs.list_blobs(bucket.name):
            blob.delete()
        bucket.delete()


def datasets(bq: Any) -> set[str]:
    return {d.dataset_id for d in bq.list_datasets(PROJECT)}


def make_dataset(bq: Any, name: str, table: bool = False) -> None:
    bq.create_dataset(f"{PROJECT}.{name}")
    if table:
        bq.query(f"create table `{PROJECT}.{name}.t` as select 1 as x", job_retry=None).result()


def test_cleanup_deletes_this_runs_objects_and_nothing_else(clients: tuple[Any, Any]) -> None:
    bq, gcs = clients
    run = sandbox.new_run_prefix()
    make_dataset(bq, "keep_me", table=True)  # there before the run: never touched
    session = sandbox.preflight(bq, gcs, PROJECT, run)
    assert session.before == {"keep_me"}

    make_dataset(bq, f"{run}mainsales", table=True)  # what the run creates
    make_dataset(bq, f"{run}maindev_{run}mainsales", table=True)
    bucket = gcs.create_bucket(f"{run}-main-abcdef")
    for i in range(3):
        bucket.blob(f"manifests/{i}.json").upload_from_string("{}")
    make_dataset(bq, "stray")  # made during the run without the prefix

    sandbox.cleanup(session)
    assert sorted(session.deleted_datasets) == sorted([f"{run}mainsales", f"{run}maindev_{run}mainsales"])
    assert session.deleted_buckets == [f"{run}-main-abcdef"]
    assert session.leaked == ["stray"] and session.left == []
    assert datasets(bq) == {"keep_me", "stray"}
    # the GCS emulator ignores `prefix` when listing buckets (the session's other buckets come back too)
    assert [b.name for b in gcs.list_buckets(prefix=run) if b.name.startswith(run)] == []
    assert "deleted 2 datasets and 1 buckets" in session.summary() and "LEAKED" in session.summary()
    assert sandbox.cleanup(session) is session and len(session.deleted_datasets) == 2  # once only


def test_a_dataset_of_another_run_makes_it_refuse_to_start(clients: tuple[Any, Any]) -> None:
    bq, gcs = clients
    make_dataset(bq, f"{FOREIGN}mainsales")
    make_dataset(bq, "envsynctest")  # not of the family: fine
    before = datasets(bq)
    with pytest.raises(sandbox.SandboxError) as refused:
        sandbox.preflight(bq, gcs, PROJECT, sandbox.new_run_prefix())
    message = str(refused.value)
    assert message.startswith(f"test-gcp: refusing to start on project '{PROJECT}'")
    assert f"bq rm -r -f -d {PROJECT}:{FOREIGN}mainsales" in message and "envsynctest" not in message
    assert datasets(bq) == before  # nothing was created


def test_a_bucket_of_another_run_makes_it_refuse_to_start(clients: tuple[Any, Any]) -> None:
    bq, gcs = clients
    gcs.create_bucket(f"{FOREIGN}-bkp-123456")
    with pytest.raises(sandbox.SandboxError, match=rf"gcloud storage rm -r gs://{FOREIGN}-bkp-123456"):
        sandbox.preflight(bq, gcs, PROJECT, sandbox.new_run_prefix())
    assert datasets(bq) == set()
