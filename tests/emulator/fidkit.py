"""Helpers of the fidelity-layer tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(bq: Any, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Run one query job to completion (no job retry) and return its rows as dicts."""
    from google.cloud import bigquery

    from envsync.core.guard import to_query_parameters

    config = bigquery.QueryJobConfig(query_parameters=to_query_parameters(params))
    job = bq.query(sql, job_config=config, job_retry=None)
    return [dict(row) for row in job.result()]


def in_emulator(code: str, cwd: Path, env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` in the emulator's own Python (its venv, the fidelity layer importable, the repo's DuckDB
    extensions); `env` sets variables (None: unset). Skips when those are not installed."""
    python = REPO / ".venv-emulators" / "bin" / "python"
    home = REPO / ".devstack" / "home"
    if not python.exists() or not (home / ".duckdb").is_dir():
        pytest.skip("needs .venv-emulators and the DuckDB extensions in .devstack/home")
    environ = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO / "emulators")}
    for key, value in {"VIRTUAL_ENV": None, "PYTHONHOME": None, **(env or {})}.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return subprocess.run([str(python), "-c", code], env=environ, cwd=cwd, capture_output=True, text=True, timeout=300)


def client_of(stack: Any, project: str = "envsync-demo") -> Any:
    """A BigQuery client on `stack`'s emulator (a private stack of the test, not the session's)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=project,
        location="US",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=stack.bq_url),
    )
