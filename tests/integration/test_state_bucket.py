"""The state bucket on the GCS emulator: created when missing, used with object-level calls only, and a
bucket that another project's envsync uses is an error naming it (never trusted for manifests).
https://cloud.google.com/storage/docs/access-control/iam-roles (roles/storage.objectAdmin)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from testkit import NS, PROJECT

pytestmark = pytest.mark.integration


def store_for(name: str) -> Any:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    return ManifestStore(storage_client(PROJECT), name)


def drop_bucket(name: str) -> None:
    from google.api_core.exceptions import NotFound

    from envsync.core.clients import storage_client

    try:
        storage_client(PROJECT).bucket(name).delete(force=True)
    except NotFound:
        pass


def test_a_missing_state_bucket_is_created_marked_and_reused(emulators: Any) -> None:
    from envsync.core.manifest import MARKER

    name = NS.bucket("envsync-bucket-probe")
    drop_bucket(name)
    try:
        store = store_for(name)
        store.ensure_bucket("US")
        marker = store.read(MARKER)
        assert marker is not None and marker["project"] == PROJECT
        store.write("manifests/x/plan.json", {"cut": "2026-11-21T02:00:00+00:00"})
        store_for(name).ensure_bucket("US")  # existing and ours: used as it is
        assert store.read("manifests/x/plan.json") == {"cut": "2026-11-21T02:00:00+00:00"}
    finally:
        drop_bucket(name)


def test_a_bucket_another_projects_envsync_uses_is_refused_naming_it(emulators: Any) -> None:
    from envsync.core.clients import storage_client
    from envsync.core.manifest import MARKER, StateBucketError

    name = NS.bucket("envsync-bucket-foreign")
    drop_bucket(name)
    client = storage_client(PROJECT)
    try:
        client.create_bucket(name, location="US")
        client.bucket(name).blob(MARKER).upload_from_string(json.dumps({"project": "another-project"}))
        with pytest.raises(StateBucketError, match=f"gs://{name} .*another-project"):
            store_for(name).ensure_bucket("US")
        assert [b.name for b in client.list_blobs(name)] == [MARKER]  # nothing was written into it
    finally:
        drop_bucket(name)
