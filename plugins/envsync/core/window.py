"""The two instants of a run and the quarter window (pure; no I/O).

* anchor A: the run's logical date (scheduled and backfill runs) or, for a manual run whose logical
  date is null, the time it was triggered (`run_after`);
* cut T: the instant the run's plan is made; every table of the run is read FOR SYSTEM_TIME AS OF T;
* window of N quarters: [first day of the quarter N-1 quarters before the quarter of A, A).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

UTC = dt.UTC


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone; envsync works in UTC-aware instants")
    return plain_utc(value)


def plain_utc(value: dt.datetime) -> dt.datetime:
    """An aware instant as a plain datetime in UTC (Airflow hands out pendulum DateTimes, whose
    arithmetic with timedeltas differs)."""
    value = value.astimezone(UTC)
    return dt.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tzinfo=UTC
    )


def quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def add_quarters(day: dt.date, quarters: int) -> dt.date:
    """First day of the quarter `quarters` quarters after (negative: before) the quarter of `day`."""
    start = quarter_start(day)
    index = start.year * 4 + (start.month - 1) // 3 + quarters
    return dt.date(index // 4, 3 * (index % 4) + 1, 1)


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC. `end` is the anchor A; `start` is midnight of a quarter's first day."""

    start: dt.datetime
    end: dt.datetime
    quarters: int

    def bounds(self, column_type: str) -> tuple[Any, Any]:
        """Typed [lo, hi) bounds for a column of BigQuery type DATE, DATETIME or TIMESTAMP.

        A DATE d is in the window when its midnight is: d >= start and midnight(d) < A, i.e. the day
        of A is included unless A is exactly midnight.
        """
        kind = column_type.upper()
        if kind == "DATE":
            end_day = self.end.date()
            if self.end.timetz().replace(tzinfo=None) != dt.time(0):
                end_day += dt.timedelta(days=1)
            return self.start.date(), end_day
        if kind == "DATETIME":
            return self.start.replace(tzinfo=None), self.end.replace(tzinfo=None)
        if kind == "TIMESTAMP":
            return self.start, self.end
        raise ValueError(f"column type {column_type!r} cannot bound a window (DATE, DATETIME, TIMESTAMP)")

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "quarters": self.quarters}


def quarter_window(anchor: dt.datetime, quarters: int) -> Window:
    if not isinstance(quarters, int) or isinstance(quarters, bool) or not 1 <= quarters <= 8:
        raise ValueError(f"window_quarters must be an integer from 1 to 8, got {quarters!r}")
    anchor = _utc(anchor)
    first = add_quarters(anchor.date(), -(quarters - 1))
    start = dt.datetime(first.year, first.month, first.day, tzinfo=UTC)
    return Window(start=start, end=anchor, quarters=quarters)


def anchor_from_context(context: Any) -> dt.datetime:
    """A = logical_date, or run_after for manual runs whose logical date is null."""
    logical = context.get("logical_date")
    if logical is None:
        logical = context["dag_run"].run_after
    return _utc(logical)


def new_cut() -> dt.datetime:
    """T: now, in UTC, at microsecond precision (BigQuery's resolution)."""
    return dt.datetime.now(UTC)
