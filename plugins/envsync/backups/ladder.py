"""The exponential backup ladder: which backups to take and which to keep (pure; no I/O).

The hourly `backup_ladder` DAG snapshots every configured table into `backup_<ds>`. This module
decides, per table, whether a run takes a snapshot and which snapshots thinning deletes; the operator
does the BigQuery work. All instants are UTC-aware; all slots are UTC.

Rungs. A ladder is a set of rungs (default 1m, 2m, 5m, 10m, 60m, 3h, 6h, 1d) plus one backup per day
for `daily_days` days (default 7). Rungs under an hour are served by BigQuery time travel: they are
restore points (`now - r`), no snapshot is taken for them. Rungs of an hour or more are served by
snapshots.

Slots. For a width w, the w-slots are the half-open intervals [k*w, (k+1)*w) counted from the Unix
epoch 1970-01-01T00:00Z, so 1h, 3h and 6h slots start on UTC hours 00/01/..., 00/03/..., 00/06/...
and 1d slots are UTC days. The *current* w-slot contains `now`; the *previous* one ends where it
starts. "Oldest" and "newest" order backups by (taken_at, name).

Thinning rule, `keep(ladder, backups, now)`, for the backups of one table:
  1. every pinned backup is kept (manual backups; they have their own expiry), and so is every
     backup taken after `now` (clock skew: never delete what the plan cannot place);
  The other backups - unpinned, taken at or before `now` - are the ladder's candidates:
  2. the newest candidate is kept;
  3. for each snapshot rung r (>= 1h): the oldest candidate of the current r-slot and the oldest
     candidate of the previous r-slot are kept;
  4. for each of the last `daily_days` UTC days (today and the `daily_days - 1` days before it):
     the oldest candidate of that day is kept.
  Every other backup is thinned (`thin` returns exactly those; it never returns a pinned backup).

Why this rule:
  * The oldest snapshot of a slot is the state at the slot's start. On the hourly cadence the one
    of the previous r-slot is at least r and less than 2r old: every rung keeps a restore point from
    before `now - r` that is no older than needed by more than one rung width ("the state r ago").
  * It is history-independent (for a fixed ladder): a snapshot the rule keeps at some time was kept
    continuously since it was taken (it was the oldest of its current slot, then of the previous
    one), so thinning at any times keeps exactly what one pass over the full, never-thinned history
    would keep. Rules of the form "newest snapshot at or before now - r" lack this: the intermediate
    snapshots they need an hour later are thinned now, and the rungs collapse onto the daily ones.
  * Size: at most 1 + 2 * len(snapshot_rungs) + daily_days unpinned snapshots (`Ladder.max_kept`).
    With the default ladder and at most one ladder snapshot per UTC hour (what `plan_snapshot`
    allows) it is at most 1 + len(snapshot_rungs) + daily_days = 12: the newest is the current
    hour's oldest, the 3h pair shares one with the 6h pair (a 3h slot is half of a 6h slot), and the
    1d rung's two are daily ones.

Quota. BigQuery allows 50 snapshot jobs per table per day. `plan_snapshot` refuses a job once the
table has used the limit today (UTC day), manual or scheduled, and says so in its reason and log.
The hourly schedule takes at most one snapshot per smallest-rung slot, so at most
`daily_snapshot_budget(ladder)` (24 for the default) per UTC day, leaving the rest for manual pins.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from envsync.core.identifiers import validate_identifier
from envsync.core.rungs import ONE_DAY, Ladder, format_duration
from envsync.core.window import plain_utc

log = logging.getLogger(__name__)

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
SNAPSHOT_JOBS_PER_TABLE_PER_DAY = 50

_NAME_RE = re.compile(r"(?P<table>.+)__(?P<stamp>\d{8}T\d{4}(?:\d{2})?Z)")


def _utc(value: dt.datetime, what: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a time-zone-aware datetime, got {value!r}")
    return plain_utc(value)


def _slot(instant: dt.datetime, width: dt.timedelta) -> int:
    """Index k of the epoch-aligned slot [k*width, (k+1)*width) that holds `instant`."""
    return (instant - EPOCH) // width


# ------------------------------------------------------------------------------- backups


@dataclass(frozen=True)
class Backup:
    """One snapshot of one table: when its data is from, its table name, and whether it is pinned."""

    taken_at: dt.datetime
    name: str
    pinned: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "taken_at", _utc(self.taken_at, f"taken_at of backup {self.name!r}"))


def _order(backup: Backup) -> tuple[dt.datetime, str]:
    return backup.taken_at, backup.name


def _unique(backups: Iterable[Backup]) -> list[Backup]:
    items = list(backups)
    names: set[str] = set()
    for backup in items:
        if backup.name in names:
            raise ValueError(f"backup name {backup.name!r} appears twice; names identify backups")
        names.add(backup.name)
    return items


def _wanted_slots(ladder: Ladder, now: dt.datetime) -> dict[tuple[dt.timedelta, int], list[str]]:
    """(width, slot index) pairs whose oldest candidate the rule keeps (rules 3 and 4), each with the
    names of the rungs it serves ("1h", "6h", "1d", and "daily" for the daily slots)."""
    wanted: dict[tuple[dt.timedelta, int], list[str]] = {}
    for rung in ladder.snapshot_rungs:
        current = _slot(now, rung)
        for index in (current, current - 1):
            wanted.setdefault((rung, index), []).append(format_duration(rung))
    today = _slot(now, ONE_DAY)
    for back in range(ladder.daily_days):
        wanted.setdefault((ONE_DAY, today - back), []).append("daily")
    return wanted


def _candidates(backups: list[Backup], now: dt.datetime) -> list[Backup]:
    """The ladder's candidates: unpinned backups taken at or before `now`, oldest first."""
    return sorted((b for b in backups if not b.pinned and b.taken_at <= now), key=_order)


def rungs_served(ladder: Ladder, backups: Iterable[Backup], now: dt.datetime) -> dict[str, list[str]]:
    """The backups (of one table) that rules 3 and 4 keep at `now`, by name, with the rungs each one
    serves (e.g. {"t__20261121T0000Z": ["1d", "daily"]}); see the module doc."""
    now = _utc(now, "now")
    candidates = _candidates(_unique(backups), now)
    wanted = _wanted_slots(ladder, now)
    served: dict[str, list[str]] = {}
    if not candidates:
        return served
    widths = sorted({width for width, _ in wanted})
    earliest = min(EPOCH + index * width for width, index in wanted)
    for backup in candidates:  # oldest first: the first candidate seen in a wanted slot is its oldest
        if not wanted:
            break
        if backup.taken_at < earliest:
            continue
        for width in widths:
            labels = wanted.pop((width, _slot(backup.taken_at, width)), None)
            if labels:
                served.setdefault(backup.name, []).extend(labels)
    return served


def keep(ladder: Ladder, backups: Iterable[Backup], now: dt.datetime) -> set[str]:
    """Names of the backups (of one table) that the thinning rule keeps at `now`; see the module doc."""
    now = _utc(now, "now")
    items = _unique(backups)
    kept = {backup.name for backup in items if backup.pinned or backup.taken_at > now}
    candidates = _candidates(items, now)
    if not candidates:
        return kept
    kept.add(candidates[-1].name)
    kept.update(rungs_served(ladder, items, now))
    return kept


def thin(ladder: Ladder, backups: Iterable[Backup], now: dt.datetime) -> list[Backup]:
    """The backups (of one table) to delete at `now`, oldest first; never a pinned one."""
    items = _unique(backups)
    kept = keep(ladder, items, now)
    doomed = sorted((b for b in items if b.name not in kept), key=_order)
    log.info(
        "ladder thinning at %s: %d backups, keeping %d (%d pinned), deleting %d",
        now,
        len(items),
        len(kept),
        sum(b.pinned for b in items),
        len(doomed),
    )
    return doomed


def snapshot_expiry(ladder: Ladder, taken_at: dt.datetime) -> dt.datetime:
    """The instant after which only rule 2 (newest) could still keep an unpinned snapshot.

    Set it as the snapshot's BigQuery expiration: a backstop that bounds storage even if thinning
    stops, and that never removes a snapshot a rung or a daily slot still wants.
    """
    taken_at = _utc(taken_at, "taken_at")
    ends = [EPOCH + (_slot(taken_at, rung) + 2) * rung for rung in ladder.snapshot_rungs]
    ends.append(EPOCH + (_slot(taken_at, ONE_DAY) + ladder.daily_days) * ONE_DAY)
    return max(ends)


def restore_points(ladder: Ladder, now: dt.datetime) -> list[dt.datetime]:
    """The time-travel rungs as instants `now - r` (newest first): recorded, no snapshot taken."""
    now = _utc(now, "now")
    return [now - rung for rung in ladder.time_travel_rungs]


# ------------------------------------------------------------------------------- taking snapshots


@dataclass(frozen=True)
class SnapshotDecision:
    """Whether a run takes a snapshot of a table now, and why (the reason is logged and shown)."""

    take: bool
    reason: str
    table: str
    jobs_today: int
    limit: int


def daily_snapshot_budget(ladder: Ladder) -> int:
    """Most scheduled snapshots a table can get in one UTC day: one per cadence slot the day touches.

    24 for a 1h cadence; the rest of BigQuery's 50 per table per day is left for manual pins.
    """
    unit = dt.timedelta(microseconds=1)
    cadence, day = ladder.cadence // unit, ONE_DAY // unit
    phase = math.gcd(cadence, day)  # a day can start this far, or a multiple of it, into a slot
    return 1 + math.ceil((day - phase) / cadence)


def plan_snapshot(
    ladder: Ladder,
    backups_today_for_table: int,
    now: dt.datetime,
    *,
    table: str,
    newest: dt.datetime | None = None,
    pinned: bool = False,
    limit: int = SNAPSHOT_JOBS_PER_TABLE_PER_DAY,
    created: dt.datetime | None = None,
) -> SnapshotDecision:
    """Decide whether to start a snapshot job for `table` (its "<dataset>.<table>", for messages).

    `backups_today_for_table` counts the snapshot jobs started for the table in the UTC day of `now`
    (scheduled and manual); at `limit` every job is refused. A scheduled run (`pinned=False`) also
    needs the cadence slot of `now` (the UTC hour, by default) to hold no ladder snapshot yet:
    `newest` is the taken_at of the table's newest unpinned snapshot. Slots rather than "an hour
    since `newest`" keep a run a few seconds early from skipping its hour. A manual pin only needs
    quota. A table `created` after its newest snapshot was re-created since (a reseed): it is a new
    base and gets a snapshot whatever the slot, so its new life is backed up from the start while the
    snapshots of its earlier life stay (a restore to before the reseed reads them).

    `now` is the run's cut T, the instant the snapshot reads (FOR SYSTEM_TIME AS OF T). A table
    `created` after T did not exist then: reading it as of T fails on BigQuery ("Invalid snapshot
    time", https://cloud.google.com/bigquery/docs/access-historical-data), so it is skipped with that
    reason and backed up by the next run whose T is after its creation.
    """
    now = _utc(now, "now")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"snapshot job limit must be a whole number >= 1, got {limit!r}")
    used = backups_today_for_table
    if not isinstance(used, int) or isinstance(used, bool) or used < 0:
        raise ValueError(f"snapshot jobs used today must be a whole number >= 0, got {used!r}")
    usage = f"{used} of {limit} snapshot jobs used today ({now.date().isoformat()} UTC) for {table}"
    kind = "manual pinned snapshot" if pinned else "scheduled snapshot"
    if created is not None and _utc(created, "created") > now:
        decision = SnapshotDecision(
            False,
            f"skipped {kind}: {table} was created at {_utc(created, 'created').isoformat()}, after T = "
            f"{now.isoformat()}: it did not exist as of T (the next run backs it up)",
            table,
            used,
            limit,
        )
        log.info("%s", decision.reason)
        return decision
    if used >= limit:
        decision = SnapshotDecision(
            False,
            f"refused {kind}: {usage}; BigQuery allows {limit} snapshot jobs per table per day",
            table,
            used,
            limit,
        )
        log.warning("%s", decision.reason)
        return decision
    if not pinned and newest is not None:
        newest = _utc(newest, "newest")
        if created is not None and _utc(created, "created") > newest:
            # re-created since its newest snapshot (a reseed of staging): the table is a new base, and
            # the snapshots of its earlier life stay restorable; take one now whatever the slot
            decision = SnapshotDecision(
                True,
                f"taking {kind} {used + 1} of a new base: {table} was created at "
                f"{_utc(created, 'created').isoformat()}, after its newest snapshot ({newest.isoformat()}); "
                f"{usage}",
                table,
                used,
                limit,
            )
            log.info("%s", decision.reason)
            return decision
        if _slot(newest, ladder.cadence) >= _slot(now, ladder.cadence):
            decision = SnapshotDecision(
                False,
                f"skipped {kind}: newest snapshot of {table} ({newest.isoformat()}) is already in this "
                f"{format_duration(ladder.cadence)} slot; {usage}",
                table,
                used,
                limit,
            )
            log.info("%s", decision.reason)
            return decision
    decision = SnapshotDecision(True, f"taking {kind} {used + 1}: {usage}", table, used, limit)
    log.info("%s", decision.reason)
    return decision


# ------------------------------------------------------------------------------- names


def snapshot_name(table: str, taken_at: dt.datetime) -> str:
    """`orders__20261122T1400Z`: the table, "__", and taken_at in UTC (seconds only when not 0).

    Sub-second precision is dropped; the name is a valid BigQuery table name.
    """
    validate_identifier("table", table)
    taken_at = _utc(taken_at, "taken_at")
    stamp = taken_at.strftime("%Y%m%dT%H%MZ" if taken_at.second == 0 else "%Y%m%dT%H%M%SZ")
    return validate_identifier("table", f"{table}__{stamp}")


def parse_snapshot_name(name: str) -> tuple[str, dt.datetime] | None:
    """(table, taken_at) from a `snapshot_name`, or None for any other table name."""
    match = _NAME_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        return None
    stamp = match.group("stamp")
    try:
        taken_at = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ" if len(stamp) == 16 else "%Y%m%dT%H%MZ")
    except ValueError:
        return None
    return match.group("table"), taken_at.replace(tzinfo=UTC)
