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
    from google.cloud import storage

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+:=-]")


class ManifestStore:
    def __init__(self, client: storage.Client, bucket: str):
        self.client = client
        self.bucket_name = bucket

    def ensure_bucket(self, location: str) -> None:
        """Create envsync's own state bucket when it is missing (it never holds table data)."""
        from google.api_core.exceptions import Conflict, NotFound

        try:
            self.client.get_bucket(self.bucket_name)
        except NotFound:
            try:
                self.client.create_bucket(self.bucket_name, location=location)
                log.info("created state bucket gs://%s", self.bucket_name)
            except Conflict:
                pass

    @staticmethod
    def run_prefix(dag_id: str, run_id: str) -> str:
        return f"manifests/{_UNSAFE.sub('_', dag_id)}/{_UNSAFE.sub('_', run_id)}"

    def uri(self, path: str) -> str:
        return f"gs://{self.bucket_name}/{path}"

    def write(self, path: str, data: dict[str, Any]) -> str:
        blob = self.client.bucket(self.bucket_name).blob(path)
        blob.upload_from_string(json.dumps(data, indent=2, sort_keys=True, default=str),
                                content_type="application/json")
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
                blob.upload_from_string(json.dumps(data, indent=2, sort_keys=True, default=str),
                                        content_type="application/json", if_generation_match=generation)
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
        blobs = [b for b in self.client.list_blobs(self.bucket_name, prefix=f"manifests/{dag_id}/")
                 if b.name.endswith("/report.json")]
        if not blobs:
            return None
        newest = max(blobs, key=lambda b: b.updated)
        return json.loads(newest.download_as_text())
