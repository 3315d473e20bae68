"""ManifestStore.ensure_bucket: the state bucket is used with object-level calls only, created only when it
does not exist, and a bucket of another project is an error naming it (never trusted for manifests).
Bucket names are global: https://cloud.google.com/storage/docs/buckets#naming ; IAM:
https://cloud.google.com/storage/docs/access-control/iam-roles (roles/storage.objectAdmin has no
storage.buckets.get)."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core.exceptions import Conflict, Forbidden, NotFound, PreconditionFailed

from envsync.core.manifest import MARKER, ManifestStore, StateBucketError

OURS, THEIRS = "envsync-demo", "someone-else"


class FakeBlob:
    def __init__(self, gcs: FakeGCS, bucket: str, name: str):
        self.gcs, self.bucket_name, self.name = gcs, bucket, name

    def upload_from_string(self, text: str, content_type: str = "", if_generation_match: int | None = None) -> None:
        objects = self.gcs.objects(self.bucket_name)
        if if_generation_match == 0 and self.name in objects:
            raise PreconditionFailed("exists")
        objects[self.name] = text

    def download_as_text(self, **_: Any) -> str:
        objects = self.gcs.objects(self.bucket_name)
        if self.name not in objects:
            raise NotFound("no such object")
        return objects[self.name]


class FakeBucket:
    def __init__(self, gcs: FakeGCS, name: str):
        self.gcs, self.name, self.project_number = gcs, name, None

    def blob(self, name: str) -> FakeBlob:
        return FakeBlob(self.gcs, self.name, name)

    def reload(self) -> None:
        self.gcs.calls.append("buckets.get")
        if not self.gcs.bucket_metadata_readable:
            raise Forbidden("storage.buckets.get denied")
        self.project_number = self.gcs.buckets[self.name]["number"]


class FakeGCS:
    """Buckets of several projects; the caller (project OURS) may use objects only of its own buckets."""

    def __init__(self, project: str = OURS):
        self.project = project
        self.buckets: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.bucket_metadata_readable = False
        self.may_create = True

    def add(self, name: str, owner: str, number: int, objects: dict[str, str] | None = None) -> None:
        self.buckets[name] = {"owner": owner, "number": number, "objects": dict(objects or {})}

    def objects(self, name: str) -> dict[str, str]:
        if name not in self.buckets:
            raise NotFound(f"bucket {name} not found")
        if self.buckets[name]["owner"] != self.project and not self.buckets[name].get("shared"):
            raise Forbidden("storage.objects denied")
        return self.buckets[name]["objects"]

    def bucket(self, name: str) -> FakeBucket:
        return FakeBucket(self, name)

    def list_blobs(self, name: str, max_results: int | None = None, prefix: str = "") -> list[Any]:
        self.calls.append("objects.list")
        return [FakeBlob(self, name, n) for n in sorted(self.objects(name))][:max_results]

    def get_bucket(self, name: str) -> Any:  # must not be used: needs storage.buckets.get
        raise AssertionError("ensure_bucket must not call buckets.get through get_bucket")

    def create_bucket(self, name: str, location: str) -> FakeBucket:
        self.calls.append("buckets.insert")
        if not self.may_create:
            raise Forbidden("storage.buckets.create denied")
        if name in self.buckets:
            raise Conflict("bucket name taken")
        self.add(name, self.project, 111)
        bucket = FakeBucket(self, name)
        bucket.project_number = 111
        return bucket


def test_a_missing_bucket_is_created_and_marked_as_this_projects() -> None:
    gcs = FakeGCS()
    ManifestStore(gcs, "state").ensure_bucket("US")  # type: ignore[arg-type]  # a fake storage client
    assert "buckets.insert" in gcs.calls
    assert '"project": "envsync-demo"' in gcs.buckets["state"]["objects"][MARKER]


def test_an_existing_bucket_needs_only_object_level_calls() -> None:
    gcs = FakeGCS()
    gcs.add("state", OURS, 111, {"manifests/x/plan.json": "{}"})
    ManifestStore(gcs, "state").ensure_bucket("US")  # type: ignore[arg-type]  # a fake storage client
    assert "buckets.insert" not in gcs.calls and "buckets.get" not in gcs.calls
    ManifestStore(gcs, "state").ensure_bucket("US")  # type: ignore[arg-type]   # second use: marker read back


def test_a_bucket_of_another_project_is_an_error_naming_it() -> None:
    gcs = FakeGCS()
    gcs.add("state", THEIRS, 999)
    with pytest.raises(StateBucketError, match=r"gs://state .*may not list its objects.*choose another name"):
        ManifestStore(gcs, "state").ensure_bucket("US")  # type: ignore[arg-type]  # a fake storage client
    assert "buckets.insert" not in gcs.calls


def test_a_readable_bucket_marked_by_another_project_is_never_trusted() -> None:
    gcs = FakeGCS()
    gcs.add("state", THEIRS, 999, {MARKER: '{"project": "someone-else"}'})
    gcs.buckets["state"]["shared"] = True
    with pytest.raises(StateBucketError, match="gs://state.*belongs to project 'someone-else'"):
        ManifestStore(gcs, "state").ensure_bucket("US")  # type: ignore[arg-type]  # a fake storage client


def test_a_different_project_number_is_an_error_when_the_metadata_is_readable() -> None:
    gcs = FakeGCS()
    gcs.add("state", OURS, 222, {MARKER: '{"project": "envsync-demo", "project_number": 111}'})
    gcs.bucket_metadata_readable = True
    with pytest.raises(StateBucketError, match="project number 222, not 111"):
        ManifestStore(gcs, "state").ensure_bucket("US")  # type: ignore[arg-type]  # a fake storage client


def test_a_bucket_taken_between_probe_and_create_by_another_project_is_an_error() -> None:
    gcs = FakeGCS()
    real_create = gcs.create_bucket

    def racing_create(name: str, location: str) -> FakeBucket:
        gcs.add(name, THEIRS, 999)
        return real_create(name, location)

    gcs.create_bucket = racing_create  # type: ignore[method-assign]  # patching the fake
    with pytest.raises(StateBucketError, match="gs://state"):
        ManifestStore(gcs, "state").ensure_bucket("US")  # type: ignore[arg-type]  # a fake storage client


def test_a_missing_bucket_without_create_permission_says_what_to_do() -> None:
    gcs = FakeGCS()
    gcs.may_create = False
    with pytest.raises(StateBucketError, match="does not exist.*storage.buckets.create"):
        ManifestStore(gcs, "state").ensure_bucket("US")  # type: ignore[arg-type]  # a fake storage client
