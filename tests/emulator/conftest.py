"""Fixtures of the fidelity-layer tests: a BigQuery client on the session's emulators and fresh datasets.

Every test in this folder checks one behaviour of real BigQuery that the fidelity layer
(emulators/bqfidelity) gives the local emulator, and names the BigQuery documentation it follows.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

PROJECT = "envsync-demo"
_counter = itertools.count()


@pytest.fixture
def bq(emulators: Any) -> Any:
    """A google-cloud-bigquery client on the session's emulator (no retries: errors surface at once)."""
    from envsync.core.clients import bigquery_client

    return bigquery_client(PROJECT, "US")


@pytest.fixture
def dataset(bq: Any) -> Iterator[Callable[..., str]]:
    """Factory of fresh datasets (`fid_<n>_<hex>`); returns the dataset id. All are dropped afterwards."""
    from google.cloud import bigquery

    created: list[str] = []

    def _make(**properties: Any) -> str:
        name = f"fid_{next(_counter)}_{uuid.uuid4().hex[:6]}"
        ds = bigquery.Dataset(f"{PROJECT}.{name}")
        ds.location = "US"
        for key, value in properties.items():
            setattr(ds, key, value)
        bq.create_dataset(ds)
        created.append(name)
        return name

    yield _make
    for name in created:
        bq.delete_dataset(f"{PROJECT}.{name}", delete_contents=True, not_found_ok=True)
