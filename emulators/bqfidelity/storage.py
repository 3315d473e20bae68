"""Load jobs read every object a wildcard source URI matches, also from the GCS emulator.

What BigQuery does: a load job's source URI may contain one ``*`` wildcard in the object name and
loads every object that matches it ("Load data using wildcards",
https://cloud.google.com/bigquery/docs/batch-loading-data#load-wildcards); a job takes at most
10,000 source URIs (https://cloud.google.com/bigquery/quotas#load_jobs), so large exports are loaded
by one wildcard URI.

What local-bigquery 0.4.0 does: with a GCS emulator (STORAGE_EMULATOR_HOST) it hands the wildcard
URI to DuckDB's httpfs, whose glob lists objects through an API the GCS emulator does not implement
(``HTTP GET error reading 'gs://.../part-' (HTTP 501 Not Implemented)``). This module lists the
matching objects through the emulator's JSON API (objects.list with the prefix before the ``*``)
and loads them one by one, as explicit URIs already are.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import urllib.parse
import urllib.request
from collections.abc import Callable

log = logging.getLogger("bqfidelity.storage")


def _matching(endpoint: str, uri: str) -> list[str]:
    bucket, _, pattern = uri.removeprefix("gs://").partition("/")
    prefix = pattern.split("*", 1)[0]
    regex = re.compile(".*".join(map(re.escape, pattern.split("*"))))
    found: list[str] = []
    token = None
    while True:
        query = {"prefix": prefix, **({"pageToken": token} if token else {})}
        url = f"{endpoint.rstrip('/')}/storage/v1/b/{urllib.parse.quote(bucket)}/o?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url) as response:
            page = json.loads(response.read() or b"{}")
        found += [item["name"] for item in page.get("items", []) if regex.fullmatch(item["name"])]
        token = page.get("nextPageToken")
        if not token:
            break
    return [f"gs://{bucket}/{name}" for name in sorted(found)]


def _expanding(original: Callable) -> Callable:
    from local_bigquery.errors import BigQueryError
    from local_bigquery.jobs import storage

    @functools.wraps(original)
    def paths(cur, uri: str) -> list[str]:
        endpoint = storage._emulator(uri)
        if endpoint is None or "*" not in uri:
            return original(cur, uri)
        matched = _matching(endpoint, uri)
        if not matched:
            raise BigQueryError("notFound", f"Not found: Uris {uri}")
        return [path for one in matched for path in original(cur, one)]

    return paths


def install() -> None:
    """Patch local-bigquery in this process (idempotent through bqfidelity.install)."""
    from local_bigquery.jobs import load, storage

    storage.paths = _expanding(storage.paths)
    load.paths = storage.paths
    log.info("storage: wildcard load URIs on the GCS emulator")
