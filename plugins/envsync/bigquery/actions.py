"""One object's action in a copy plan: what to do with one table or view, why, and what it costs.

The dev sync's planner (envsync.sync.plan) makes them; the QA -> staging cut and the reseed make their
own; the verification (envsync.bigquery.verify) and the run report read them. So the record lives
here, below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Action:
    dataset: str  # prod dataset
    table: str
    target_dataset: str  # the environment's dataset (in the environment's project)
    action: str  # clone_window | ctas_window | full_clone | view | skip | drop
    reason: str
    date_column: str | None = None
    column_type: str | None = None  # DATE | DATETIME | TIMESTAMP of date_column
    granularity: str = "DAY"  # partition granularity used to count rows per partition
    view_sql: str | None = None
    est_bytes_billed: int = 0
    est_jobs: int = 0
    billing_note: str = ""  # why the estimate bills more than it seems (partial partitions)
    source_rows: int = 0
    depends_on: list[str] = field(default_factory=list)
    row_access_policies: list[str] = field(default_factory=list)  # of the prod table
    # clone_window: prod's partitions outside the window when planned (None: not known, list the clone's)
    trim_partitions: int | None = None
    # masked_ctas: the masked columns (envsync.privacy.masking.ColumnMask as dicts) and the columns that match
    # copy and prod rows in the verification (empty: a hash of the unmasked columns)
    masks: list[dict[str, Any]] = field(default_factory=list)
    match_key: list[str] = field(default_factory=list)
    # policy-tagged columns (and nested fields) copied unmasked: column path -> tags
    unmasked_tagged: dict[str, list[str]] = field(default_factory=dict)
    # view: `project.dataset` a view reads in a project that is neither prod's nor its environment's
    other_projects: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.dataset}.{self.table}"
