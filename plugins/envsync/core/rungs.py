"""The backup ladder's shape: its rungs, the durations they are written in, and their defaults (pure).

A leaf of envsync.core: the config validates `backups.ladder` with `Ladder.from_strings` when it loads,
and envsync.backups.ladder plans snapshots and thinning with the same value, so the config does not
import the backups capability. envsync.backups.ladder explains what the rungs mean.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

ONE_HOUR = dt.timedelta(hours=1)
ONE_DAY = dt.timedelta(days=1)
DEFAULT_RUNGS = ("1m", "2m", "5m", "10m", "60m", "3h", "6h", "1d")
DEFAULT_DAILY_DAYS = 7

_UNITS = {"s": dt.timedelta(seconds=1), "m": dt.timedelta(minutes=1), "h": ONE_HOUR, "d": ONE_DAY}
_DURATION_RE = re.compile(r"(\d+)([smhd])")


def parse_duration(text: str) -> dt.timedelta:
    """Parse "90s", "1m", "2h", "1d" (a whole number and one unit of s/m/h/d) into a timedelta."""
    match = _DURATION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"bad duration {text!r}: expected a whole number and one unit of s, m, h, d (like '90s', '1m', '2h', '7d')"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(value: dt.timedelta) -> str:
    """The shortest exact "<n><unit>" text for a duration, for messages ("1h", "90s", "1d")."""
    if not value:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if value % size == dt.timedelta(0):
            return f"{value // size}{unit}"
    return str(value)


@dataclass(frozen=True)
class Ladder:
    """The rungs (strictly increasing, > 0) and how many UTC days keep one snapshot each.

    Rungs under an hour are time-travel restore points; rungs of an hour or more are snapshots.
    At least one snapshot rung is required: the smallest one sets the hourly run's cadence.
    """

    rungs: tuple[dt.timedelta, ...]
    daily_days: int = DEFAULT_DAILY_DAYS

    def __post_init__(self) -> None:
        rungs = tuple(self.rungs)
        object.__setattr__(self, "rungs", rungs)
        previous: dt.timedelta | None = None
        for rung in rungs:
            if not isinstance(rung, dt.timedelta):
                raise ValueError(f"ladder rung {rung!r} is not a duration")
            if rung <= dt.timedelta(0):
                raise ValueError(f"ladder rung {format_duration(rung)!r} must be longer than 0")
            if previous is not None and rung <= previous:
                raise ValueError(
                    f"ladder rung {format_duration(rung)!r} must come after a shorter rung, not after "
                    f"{format_duration(previous)!r}: rungs are sorted and unique"
                )
            previous = rung
        if not any(rung >= ONE_HOUR for rung in rungs):
            listed = ", ".join(format_duration(rung) for rung in rungs) or "none"
            raise ValueError(f"ladder needs at least one snapshot rung of 1h or more; rungs are: {listed}")
        if not isinstance(self.daily_days, int) or isinstance(self.daily_days, bool) or self.daily_days < 0:
            raise ValueError(f"daily_days must be a whole number of days >= 0, got {self.daily_days!r}")

    @classmethod
    def default(cls) -> Ladder:
        """1m, 2m, 5m, 10m (time travel), 60m, 3h, 6h, 1d (snapshots), then one per day for 7 days."""
        return cls.from_strings(DEFAULT_RUNGS, daily_days=DEFAULT_DAILY_DAYS)

    @classmethod
    def from_strings(cls, rungs: Iterable[str], daily_days: int = DEFAULT_DAILY_DAYS) -> Ladder:
        """A ladder from config text like ["1m", "1h", "1d"], in any order; duplicates are errors."""
        if isinstance(rungs, str):
            raise ValueError(f"ladder rungs must be a list of durations, got the single string {rungs!r}")
        seen: dict[dt.timedelta, str] = {}
        for text in rungs:
            rung = parse_duration(text)
            if rung <= dt.timedelta(0):
                raise ValueError(f"ladder rung {text!r} must be longer than 0")
            if rung in seen:
                raise ValueError(f"ladder rung {text!r} duplicates {seen[rung]!r}")
            seen[rung] = text
        return cls(rungs=tuple(sorted(seen)), daily_days=daily_days)

    @property
    def time_travel_rungs(self) -> tuple[dt.timedelta, ...]:
        """Rungs under an hour: served by BigQuery time travel, no snapshot."""
        return tuple(rung for rung in self.rungs if rung < ONE_HOUR)

    @property
    def snapshot_rungs(self) -> tuple[dt.timedelta, ...]:
        """Rungs of an hour or more: served by snapshots."""
        return tuple(rung for rung in self.rungs if rung >= ONE_HOUR)

    @property
    def cadence(self) -> dt.timedelta:
        """The smallest snapshot rung: a scheduled run takes at most one snapshot per slot of it."""
        return self.snapshot_rungs[0]

    @property
    def max_kept(self) -> int:
        """Upper bound on the unpinned snapshots `keep` keeps for one table, for any history."""
        return 1 + 2 * len(self.snapshot_rungs) + self.daily_days
