"""Cloud Storage's request preconditions on the GCS emulator (emulators/bqfidelity/gcs.py).

Doc: https://cloud.google.com/storage/docs/request-preconditions : a request whose ifGenerationMatch,
ifGenerationNotMatch, ifMetagenerationMatch or ifMetagenerationNotMatch does not hold fails with
412 Precondition Failed and changes nothing; ifGenerationMatch=0 succeeds only when the object has no
live version. envsync's environment leases (envsync.core.lease) are built on these.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(emulators: Any) -> Iterator[Any]:
    from envsync.core.clients import storage_client

    client = storage_client("envsync-demo")
    made = client.create_bucket(f"fid-gcs-{uuid.uuid4().hex[:10]}")
    yield made
    for blob in client.list_blobs(made.name):
        blob.delete()
    made.delete()


def test_create_only_if_absent_succeeds_once(bucket: Any) -> None:
    from google.api_core.exceptions import PreconditionFailed

    bucket.blob("lease.json").upload_from_string("first", if_generation_match=0)
    with pytest.raises(PreconditionFailed) as refused:
        bucket.blob("lease.json").upload_from_string("second", if_generation_match=0)
    assert "conditionNotMet" in str(refused.value) or refused.value.code == 412
    assert bucket.blob("lease.json").download_as_text() == "first"


def test_writes_and_deletes_with_a_stale_generation_change_nothing(bucket: Any) -> None:
    from google.api_core.exceptions import PreconditionFailed

    blob = bucket.blob("doc.json")
    blob.upload_from_string("v1", if_generation_match=0)
    first = blob.generation
    blob.upload_from_string("v2", if_generation_match=first)
    second = bucket.get_blob("doc.json").generation
    assert second != first
    with pytest.raises(PreconditionFailed):
        bucket.blob("doc.json").upload_from_string("v3", if_generation_match=first)
    with pytest.raises(PreconditionFailed):
        bucket.blob("doc.json").delete(if_generation_match=first)
    assert bucket.blob("doc.json").download_as_text() == "v2"
    bucket.blob("doc.json").delete(if_generation_match=second)
    assert bucket.get_blob("doc.json") is None


def test_reads_and_metadata_updates_check_their_preconditions(bucket: Any) -> None:
    from google.api_core.exceptions import PreconditionFailed

    blob = bucket.blob("meta.json")
    blob.upload_from_string("x", if_generation_match=0)
    current = bucket.get_blob("meta.json")
    with pytest.raises(PreconditionFailed):
        bucket.blob("meta.json").download_as_text(if_generation_match=int(current.generation) + 1)
    assert bucket.blob("meta.json").download_as_text(if_generation_match=current.generation) == "x"
    current.metadata = {"a": "1"}
    current.patch(if_metageneration_match=current.metageneration)
    stale = bucket.blob("meta.json")
    stale.metadata = {"a": "2"}
    with pytest.raises(PreconditionFailed):
        stale.patch(if_metageneration_match=1)
    assert bucket.get_blob("meta.json").metadata == {"a": "1"}
