"""Run manifests: small JSON documents in the state bucket, one folder per DAG run.

    gs://<state.bucket>/manifests/<dag_id>/<run_id>/plan.json        T (and A, window), units, per-object plan
    gs://<state.bucket>/manifests/<dag_id>/<run_id>/results/<unit>.json  per-object results of one unit
    gs://<state.bucket>/manifests/<dag_id>/<run_id>/report.json      the whole run: plan + results

A retried or re-run task reads plan.json back, so every try of a run uses the same cut T.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import google.cloud.storage as storage  # the form mypy resolves in the google.cloud namespace

log = logging.getLogger(__name__)
MARKER = "envsync-bucket.json"  # names the project whose envsync uses the bucket
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+:=-]")


class StateBucketError(ValueError):
    """The configured state (or export) bucket is not usable by this project's envsync (a config error:
    a retry fails the same way)."""


class ManifestStore:
    def __init__(self, client: storage.Client, bucket: str):
        self.client = client
        self.bucket_name = bucket

    def ensure_bucket(self, location: str) -> None:
        """Make sure the bucket exists and is this project's, using object-level calls only.

        Object-level roles (roles/storage.objectAdmin on the bucket) suffice: no `storage.buckets.get`.
          * list one object: 404 -> the bucket exists nowhere (bucket names are global) and is created
            here, which needs `storage.buckets.create` on the project; 403 -> it exists but envsync may
            not use it (most likely another project's bucket): StateBucketError naming it.
          * the marker object `envsync-bucket.json` records the project that uses the bucket; a marker
            of another project is a StateBucketError, a missing one is written (first use).
          * when the bucket's metadata happens to be readable, its project number must match the one
            recorded in the marker when envsync created it.
        """
        from google.api_core.exceptions import Conflict, Forbidden, NotFound

        if not self._probe():
            try:
                created = self.client.create_bucket(self.bucket_name, location=location)
                log.info("created bucket gs://%s in %s: it did not exist", self.bucket_name, location)
                self._claim(getattr(created, "project_number", None))
                return
            except Conflict:  # created meanwhile (a parallel task) or by someone else: probe again
                if not self._probe():
                    raise StateBucketError(
                        self._foreign("bucket creation answered 409 Conflict but the bucket is still not visible")
                    ) from None
            except Forbidden as error:
                raise StateBucketError(
                    f"bucket gs://{self.bucket_name} does not exist and envsync may not create it ({error}); "
                    f"create it in project {self.client.project} and grant envsync roles/storage.objectAdmin "
                    "on it (creating buckets needs storage.buckets.create on the project)"
                ) from None
        marker = self.read(MARKER)
        if marker is None:
            self._claim(None)
            marker = self.read(MARKER) or {}
        if marker.get("project") != self.client.project:
            raise StateBucketError(
                self._foreign(
                    f"its marker gs://{self.bucket_name}/{MARKER} says it belongs to project {marker.get('project')!r}"
                )
            )
        recorded_number = marker.get("project_number")
        if recorded_number:
            bucket = self.client.bucket(self.bucket_name)
            try:
                bucket.reload()  # optional: storage.buckets.get is not needed otherwise
            except (Forbidden, NotFound):
                return
            if bucket.project_number is not None and str(bucket.project_number) != str(recorded_number):
                raise StateBucketError(
                    self._foreign(f"it belongs to project number {bucket.project_number}, not {recorded_number}")
                )

    def _probe(self) -> bool:
        """True when the bucket exists and envsync may list its objects; False when it does not exist."""
        from google.api_core.exceptions import Forbidden, NotFound

        try:
            next(iter(self.client.list_blobs(self.bucket_name, max_results=1)), None)
        except NotFound:
            return False
        except Forbidden as error:
            raise StateBucketError(self._foreign(f"envsync may not list its objects ({error})")) from None
        return True

    def _claim(self, project_number: int | str | None) -> None:
        """Write the marker unless one exists (generation match 0: never overwrite another's marker)."""
        from google.api_core.exceptions import PreconditionFailed

        data = {
            "project": self.client.project,
            "project_number": project_number,
            "purpose": "envsync state: run manifests and backup exports",
        }
        blob = self.client.bucket(self.bucket_name).blob(MARKER)
        try:
            blob.upload_from_string(
                json.dumps(data, sort_keys=True), content_type="application/json", if_generation_match=0
            )
            log.info("bucket gs://%s is now used by envsync of project %s", self.bucket_name, self.client.project)
        except PreconditionFailed:
            pass  # written meanwhile; the caller reads it

    def _foreign(self, why: str) -> str:
        return (
            f"bucket gs://{self.bucket_name} cannot hold envsync's manifests for project {self.client.project}: "
            f"{why}. Bucket names are global: if the bucket belongs to another project, choose another name "
            "(state.bucket or backups.export.bucket in the config); if it is yours, grant envsync's service "
            f"account roles/storage.objectAdmin on it (and delete gs://{self.bucket_name}/{MARKER} if it names "
            "a project that no longer uses it)"
        )

    @staticmethod
    def run_prefix(dag_id: str, run_id: str) -> str:
        return f"manifests/{_UNSAFE.sub('_', dag_id)}/{_UNSAFE.sub('_', run_id)}"

    def uri(self, path: str) -> str:
        return f"gs://{self.bucket_name}/{path}"

    def write(self, path: str, data: dict[str, Any]) -> str:
        blob = self.client.bucket(self.bucket_name).blob(path)
        blob.upload_from_string(
            json.dumps(data, indent=2, sort_keys=True, default=str), content_type="application/json"
        )
        return self.uri(path)

    def read(self, path: str) -> dict[str, Any] | None:
        from google.api_core.exceptions import NotFound

        try:
            text = self.client.bucket(self.bucket_name).blob(path).download_as_text()
        except NotFound:
            return None
        return json.loads(text)

    def update(self, path: str, change: Any, attempts: int = 10) -> dict[str, Any]:
        """Read-modify-write a JSON document safely against concurrent writers (generation match)."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.client.bucket(self.bucket_name).blob(path)
        for _ in range(attempts):
            try:
                blob.reload()
                generation = blob.generation
                data = json.loads(blob.download_as_text(if_generation_match=generation))
            except NotFound:
                generation, data = 0, {}
            data = change(data)
            try:
                blob.upload_from_string(
                    json.dumps(data, indent=2, sort_keys=True, default=str),
                    content_type="application/json",
                    if_generation_match=generation,
                )
                return data
            except PreconditionFailed:
                log.info("gs://%s/%s changed while updating it; retrying", self.bucket_name, path)
        raise RuntimeError(f"could not update gs://{self.bucket_name}/{path}: {attempts} concurrent changes")

    def delete(self, path: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self.client.bucket(self.bucket_name).blob(path).delete()
        except NotFound:
            pass

    def list(self, prefix: str) -> list[str]:
        return sorted(b.name for b in self.client.list_blobs(self.bucket_name, prefix=prefix))

    def latest_report(self, dag_id: str) -> dict[str, Any] | None:
        """The newest report.json of a DAG (by upload time)."""
        blobs = [
            b
            for b in self.client.list_blobs(self.bucket_name, prefix=f"manifests/{dag_id}/")
            if b.name.endswith("/report.json")
        ]
        if not blobs:
            return None
        newest = max(blobs, key=lambda b: b.updated)
        return json.loads(newest.download_as_text())
