"""Helpers of the fidelity-layer tests."""

from __future__ import annotations

from typing import Any

def run(bq: Any, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Run one query job to completion (no job retry) and return its rows as dicts."""
    from envsync.guard import to_query_parameters
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=to_query_parameters(params))
    job = bq.query(sql, job_config=config, job_retry=None)
    return [dict(row) for row in job.result()]
