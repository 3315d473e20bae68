"""Time travel on prod: each dataset's own window and the config's narrowing, the schema as of T,
and the decisions for tables created after T (prod-copy plan, backup ladder).

https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window: a dataset's
max_time_travel_hours is a multiple of 24 from 48 to 168, and 168 when unset.
https://cloud.google.com/bigquery/docs/access-historical-data: FOR SYSTEM_TIME AS OF before the window
or before the table was created fails.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from envsync.backups.ladder import plan_snapshot
from envsync.bigquery.timetravel import (
    DEFAULT_HOURS,
    created_after,
    effective_window,
    merge_schema,
    restore_window_hours,
    schema_changes,
)
from envsync.bigquery.verify import compare_schema
from envsync.core.config import ConfigError, parse_config
from envsync.core.rungs import Ladder
from envsync.sync.prodcopy import AsOfError, check_as_of

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BASE = {"project": "acme-data", "prod": {"datasets": ["sales"]}, "state": {"bucket": "acme-state"}}


def config(**prod: Any) -> Any:
    return parse_config({**BASE, "prod": {"datasets": ["sales"], **prod}})


# ---------------------------------------------------------------------------------- the window


def test_the_window_is_the_datasets_own_and_the_config_only_narrows_it() -> None:
    own = effective_window("sales", 48, None)
    assert (own.hours, own.source) == (48, "its max_time_travel_hours in BigQuery")
    unset = effective_window("sales", None, None)
    assert unset.hours == DEFAULT_HOURS == 168 and "default 168 h" in unset.source
    narrowed = effective_window("sales", 168, 72)
    assert narrowed.hours == 72 and narrowed.source.startswith("prod.time_travel_hours in the config")
    assert "dataset's own 168 h" in narrowed.source
    # the config can never widen what BigQuery keeps
    assert effective_window("sales", 48, 168).hours == 48
    assert effective_window("sales", None, 96).hours == 96


def test_time_travel_hours_in_the_config_is_optional_and_a_multiple_of_24_from_48_to_168() -> None:
    assert config().prod.time_travel_hours is None
    assert config(time_travel_hours=72).prod.time_travel_hours == 72
    for bad in (50, 24, 192, 0):
        with pytest.raises(ConfigError) as caught:
            config(time_travel_hours=bad)
        message = str(caught.value)
        assert "prod.time_travel_hours" in message and f"{bad} is not a time-travel window" in message
        assert "multiple of 24 from 48 to 168 (48, 72, 96, 120, 144, 168)" in message and "or null" in message
    # restores: the config alone allows at most 168 h; the dataset narrows it (restore_window_hours)
    assert config().restore_time_travel_hours() == 168
    assert config(time_travel_hours=96).restore_time_travel_hours() == 96


def test_as_of_outside_the_datasets_own_window_names_the_dataset_and_where_the_number_came_from() -> None:
    window = effective_window("sales", 48, None)
    three_days_ago = NOW - dt.timedelta(days=3)
    with pytest.raises(AsOfError) as caught:
        check_as_of(three_days_ago, NOW, window)
    message = str(caught.value)
    assert "time-travel window of 48 h of prod dataset 'sales' (its max_time_travel_hours in BigQuery)" in message
    assert (
        f"oldest instant that can be read now is {(NOW - dt.timedelta(hours=48, minutes=-30)).isoformat()}" in message
    )
    check_as_of(NOW - dt.timedelta(hours=47), NOW, window)  # inside: accepted
    with pytest.raises(AsOfError, match="prod.time_travel_hours in the config"):
        check_as_of(three_days_ago, NOW, effective_window("sales", 168, 48))


class _Client:
    """Answers datasets.get with a stored max_time_travel_hours (as the API client: a string or None)."""

    def __init__(self, hours: str | None) -> None:
        self.hours = hours

    def get_dataset(self, ref: str) -> Any:
        assert ref == "acme-data.sales"
        return SimpleNamespace(max_time_travel_hours=self.hours)


@pytest.mark.parametrize(
    ("dataset_hours", "prod_hours", "restore_hours", "expected"),
    [
        ("48", None, None, 48),  # the dataset's own window, not the config's 168
        (None, None, None, 168),  # unset: BigQuery's default
        ("168", 96, None, 96),  # prod.time_travel_hours narrows
        ("72", None, 120, 72),  # restore_time_travel_hours cannot widen the dataset's window
        ("168", None, 24, 24),  # ... but narrows it
        ("48", None, 0, 0),  # 0: never time travel
    ],
)
def test_restores_use_the_datasets_window_narrowed_by_the_config(
    dataset_hours: str | None, prod_hours: int | None, restore_hours: int | None, expected: int
) -> None:
    data: dict[str, Any] = {
        **BASE,
        "prod": {"datasets": ["sales"], "time_travel_hours": prod_hours},
        "backups": {"restore_time_travel_hours": restore_hours},
    }
    assert restore_window_hours(parse_config(data), _Client(dataset_hours), "sales") == expected  # type: ignore[arg-type]  # a fake BigQuery client


# ---------------------------------------------------------------------------------- schema as of T

ID = {"name": "id", "type": "INTEGER", "mode": "REQUIRED"}
NAME = {"name": "name", "type": "STRING", "mode": "NULLABLE"}
EXTRA = {"name": "extra", "type": "STRING", "mode": "NULLABLE"}
ADDR = {
    "name": "addr",
    "type": "RECORD",
    "mode": "NULLABLE",
    "fields": [
        {"name": "city", "type": "STRING", "mode": "REQUIRED"},
        {"name": "zip", "type": "STRING", "mode": "NULLABLE"},
    ],
}


def nullable(field: dict[str, Any]) -> dict[str, Any]:
    """A column as a query's result schema (the dry run) may describe it: every mode NULLABLE."""
    out = {**field, "mode": "NULLABLE"}
    if "fields" in field:
        out["fields"] = [nullable(f) for f in field["fields"]]
    return out


def test_schema_as_of_t_takes_the_columns_of_t_and_the_modes_of_the_table() -> None:
    addr_at_t = {**nullable(ADDR), "fields": [nullable(ADDR["fields"][0])]}  # zip added after T
    dropped = {"name": "legacy", "type": "INTEGER", "mode": "NULLABLE"}  # dropped after T
    as_of = [nullable(ID), nullable(NAME), addr_at_t, dropped]
    current = [ID, NAME, ADDR, EXTRA]  # extra added after T
    then = merge_schema(as_of, current)
    assert then == [ID, NAME, {**ADDR, "fields": [ADDR["fields"][0]]}, dropped]
    assert schema_changes(then, current) == "columns added since T: ['extra']; columns dropped since T: ['legacy']"
    assert schema_changes(then, then) == ""


def test_verification_against_the_schema_as_of_t() -> None:
    """A column added to prod after T is not expected in the copy; a column that existed at T is."""
    then = merge_schema([nullable(ID), nullable(NAME)], [ID, NAME, EXTRA])
    copy_as_of_t = [ID, NAME]
    assert compare_schema("prodcopy_sales.orders", then, copy_as_of_t) == []
    # against prod's current schema (what the verification used) the same good copy failed
    assert compare_schema("prodcopy_sales.orders", [ID, NAME, EXTRA], copy_as_of_t) == [
        "prodcopy_sales.orders: schema differs from prod: column extra is missing"
    ]
    # a copy missing a column that existed at T fails
    assert compare_schema("prodcopy_sales.orders", then, [ID]) == [
        "prodcopy_sales.orders: schema differs from prod: column name is missing"
    ]


# ---------------------------------------------------------------------------------- created after T


def test_a_table_created_after_t_is_recognised() -> None:
    assert created_after(NOW + dt.timedelta(seconds=1), NOW)
    assert not created_after(NOW, NOW) and not created_after(NOW - dt.timedelta(days=1), NOW)
    assert not created_after(None, NOW)


def test_the_backup_ladder_skips_a_table_created_after_the_cut_with_the_reason() -> None:
    ladder = Ladder.default()
    cut = NOW.replace(minute=0)
    young = cut + dt.timedelta(minutes=20)
    decision = plan_snapshot(ladder, 0, cut, table="sales.late", created=young)
    assert not decision.take
    assert decision.reason == (
        f"skipped scheduled snapshot: sales.late was created at {young.isoformat()}, "
        f"after T = {cut.isoformat()}: it did not exist as of T (the next run backs it up)"
    )
    pinned = plan_snapshot(ladder, 0, cut, table="sales.late", created=young, pinned=True)
    assert not pinned.take and "skipped manual pinned snapshot" in pinned.reason
    # created before T (or at T): taken as usual
    assert plan_snapshot(ladder, 0, cut, table="sales.orders", created=cut - dt.timedelta(days=3)).take
    assert plan_snapshot(ladder, 0, cut, table="sales.orders", created=cut).take
