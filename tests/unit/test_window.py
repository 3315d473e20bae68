"""Quarter windows, typed bounds and the run anchor (envsync.core.window): pure, no I/O."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from envsync.core.window import Window, anchor_from_context, quarter_window

UTC = dt.UTC
A = dt.datetime(2026, 11, 21, 2, 0, tzinfo=UTC)  # the ARCHITECTURE.md example: a Saturday 02:00 UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------------- quarter_window


@pytest.mark.parametrize(
    ("quarters", "start"),
    [
        (1, utc(2026, 10, 1)),
        (2, utc(2026, 7, 1)),
        (3, utc(2026, 4, 1)),
        (4, utc(2026, 1, 1)),
        (5, utc(2025, 10, 1)),
        (8, utc(2025, 1, 1)),
    ],
)
def test_window_starts_on_the_first_day_of_the_quarter_n_minus_1_before_and_ends_at_a(
    quarters: int, start: dt.datetime
) -> None:
    window = quarter_window(A, quarters)
    assert (window.start, window.end, window.quarters) == (start, A, quarters)


def test_architecture_example_two_quarters() -> None:
    window = quarter_window(A, 2)
    assert window.start == utc(2026, 7, 1, 0, 0)
    assert window.end == utc(2026, 11, 21, 2, 0)
    assert window.start.tzinfo is not None and window.start.utcoffset() == dt.timedelta(0)


def test_anchor_exactly_on_a_quarter_boundary_starts_that_quarter() -> None:
    anchor = utc(2026, 7, 1, 0, 0)
    window = quarter_window(anchor, 1)
    assert window.start == utc(2026, 7, 1)
    assert window.end == anchor
    # one microsecond earlier belongs to the previous quarter
    assert quarter_window(anchor - dt.timedelta(microseconds=1), 1).start == utc(2026, 4, 1)


def test_window_crosses_a_year_boundary() -> None:
    window = quarter_window(utc(2026, 1, 15), 2)
    assert window.start == utc(2025, 10, 1)
    assert window.end == utc(2026, 1, 15)


def test_backfill_for_an_earlier_date_shifts_the_window() -> None:
    assert quarter_window(utc(2026, 5, 2, 2), 2).start == utc(2026, 1, 1)
    assert quarter_window(utc(2026, 5, 2, 2), 2).end == utc(2026, 5, 2, 2)


def test_anchor_in_another_time_zone_is_converted_to_utc_first() -> None:
    # 2026-09-30 22:00 at UTC-5 is 2026-10-01 03:00 UTC: already in Q4
    anchor = dt.datetime(2026, 9, 30, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    window = quarter_window(anchor, 1)
    assert window.start == utc(2026, 10, 1)
    assert window.end == utc(2026, 10, 1, 3, 0)
    assert window.end.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("bad", [0, 9, -1, True, False, "2", 2.0, None])
def test_invalid_number_of_quarters_is_rejected_naming_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match="window_quarters") as info:
        quarter_window(A, bad)  # type: ignore[arg-type]  # the wrong type on purpose
    assert repr(bad) in str(info.value)


def test_naive_anchor_is_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        quarter_window(dt.datetime(2026, 11, 21, 2, 0), 2)


# ------------------------------------------------------------------------- Window.bounds


def test_date_bounds_include_the_day_of_a_when_a_is_not_midnight() -> None:
    lo, hi = quarter_window(A, 2).bounds("DATE")
    assert (lo, hi) == (dt.date(2026, 7, 1), dt.date(2026, 11, 22))
    assert type(lo) is dt.date and type(hi) is dt.date


def test_date_bounds_exclude_the_day_of_a_when_a_is_exactly_midnight() -> None:
    lo, hi = quarter_window(utc(2026, 11, 21), 2).bounds("DATE")
    assert (lo, hi) == (dt.date(2026, 7, 1), dt.date(2026, 11, 21))


def test_date_bounds_one_microsecond_after_midnight_include_the_day() -> None:
    _, hi = quarter_window(utc(2026, 11, 21, 0, 0, 0, 1), 2).bounds("DATE")
    assert hi == dt.date(2026, 11, 22)


def test_timestamp_bounds_are_utc_aware_instants() -> None:
    lo, hi = quarter_window(A, 2).bounds("TIMESTAMP")
    assert (lo, hi) == (utc(2026, 7, 1), A)
    assert lo.utcoffset() == dt.timedelta(0) and hi.utcoffset() == dt.timedelta(0)


def test_datetime_bounds_are_naive_utc_wall_times() -> None:
    lo, hi = quarter_window(A, 2).bounds("DATETIME")
    assert (lo, hi) == (dt.datetime(2026, 7, 1), dt.datetime(2026, 11, 21, 2, 0))
    assert lo.tzinfo is None and hi.tzinfo is None


def test_bounds_accept_lowercase_types_and_reject_non_date_types() -> None:
    window = quarter_window(A, 1)
    assert window.bounds("date") == window.bounds("DATE")
    with pytest.raises(ValueError, match="'STRING'"):
        window.bounds("STRING")


def test_window_as_dict_round_trips_through_isoformat() -> None:
    window = quarter_window(A, 2)
    data = window.as_dict()
    again = Window(dt.datetime.fromisoformat(data["start"]), dt.datetime.fromisoformat(data["end"]), data["quarters"])
    assert again == window


# ------------------------------------------------------------------------- anchor_from_context


def test_anchor_is_the_logical_date_when_there_is_one() -> None:
    run = SimpleNamespace(run_after=utc(2026, 11, 21, 9, 30))
    assert anchor_from_context({"logical_date": A, "dag_run": run}) == A


def test_anchor_falls_back_to_run_after_when_logical_date_is_none() -> None:
    run = SimpleNamespace(run_after=utc(2026, 11, 21, 9, 30))
    assert anchor_from_context({"logical_date": None, "dag_run": run}) == utc(2026, 11, 21, 9, 30)


def test_anchor_falls_back_to_run_after_when_logical_date_is_missing() -> None:
    run = SimpleNamespace(run_after=utc(2026, 12, 31, 23, 59))
    anchor = anchor_from_context({"dag_run": run})
    assert anchor == utc(2026, 12, 31, 23, 59)
    assert quarter_window(anchor, 1).start == utc(2026, 10, 1)


def test_anchor_is_normalised_to_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    anchor = anchor_from_context({"logical_date": dt.datetime(2026, 11, 21, 3, 0, tzinfo=paris)})
    assert anchor == A and anchor.utcoffset() == dt.timedelta(0)


def test_naive_anchor_from_context_is_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        anchor_from_context({"logical_date": None, "dag_run": SimpleNamespace(run_after=dt.datetime(2026, 1, 1))})
