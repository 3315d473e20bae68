"""The backup ladder planner (envsync.backups.ladder): take/skip decisions, thinning, names. Pure, no I/O.

The expected kept sets are recomputed here from the rule in the module docstring, in epoch seconds
and from the full, never-thinned history, not by calling `keep`: equality also proves that thinning
hour by hour never deletes a snapshot the ladder wants later.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from envsync.backups.ladder import (
    Backup,
    SnapshotDecision,
    daily_snapshot_budget,
    keep,
    parse_snapshot_name,
    plan_snapshot,
    restore_points,
    snapshot_expiry,
    snapshot_name,
    thin,
)
from envsync.core.rungs import Ladder, parse_duration

UTC = dt.UTC
H = dt.timedelta(hours=1)
MIN = dt.timedelta(minutes=1)
TABLE = "sales.orders"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
START = dt.datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # a Monday 09:00 UTC; the week crosses 7 midnights


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def epoch(instant: dt.datetime) -> int:
    return int(instant.timestamp())


def expected_kept(ladder: Ladder, history: list[Backup], pins: set[str], now: dt.datetime) -> set[str]:
    """The thinning rule, recomputed independently: newest + oldest per wanted slot + pins."""
    t_now = epoch(now)
    candidates = sorted((epoch(b.taken_at), b.name) for b in history if epoch(b.taken_at) <= t_now)
    wanted = set(pins)
    if candidates:
        wanted.add(candidates[-1][1])

    def oldest_in(lo: int, hi: int) -> None:
        for t, name in candidates:
            if lo <= t < hi:
                wanted.add(name)
                return

    for rung in ladder.snapshot_rungs:
        width = int(rung.total_seconds())
        for k in (t_now // width, t_now // width - 1):
            oldest_in(k * width, (k + 1) * width)
    day = 86_400
    for k in range(t_now // day - ladder.daily_days + 1, t_now // day + 1):
        oldest_in(k * day, (k + 1) * day)
    return wanted


@dataclass
class Table:
    """One table's simulated backup dataset and its snapshot-job bookkeeping."""

    ladder: Ladder
    store: dict[str, Backup] = field(default_factory=dict)  # what exists now
    history: list[Backup] = field(default_factory=list)  # every ladder snapshot ever taken
    pins: set[str] = field(default_factory=set)
    jobs: Counter[dt.date] = field(default_factory=Counter)  # snapshot jobs per UTC day
    scheduled: Counter[dt.date] = field(default_factory=Counter)  # of which scheduled

    def newest(self) -> dt.datetime | None:
        return max((b.taken_at for b in self.history), default=None)

    def request(self, at: dt.datetime, *, pinned: bool) -> SnapshotDecision:
        decision = plan_snapshot(
            self.ladder, self.jobs[at.date()], at, table=TABLE, newest=self.newest(), pinned=pinned
        )
        if decision.take:
            backup = Backup(at, snapshot_name("orders", at), pinned=pinned)
            assert backup.name not in self.store
            self.store[backup.name] = backup
            self.jobs[at.date()] += 1
            if pinned:
                self.pins.add(backup.name)
            else:
                self.history.append(backup)
                self.scheduled[at.date()] += 1
        return decision

    def thin(self, now: dt.datetime) -> list[Backup]:
        doomed = thin(self.ladder, list(self.store.values()), now)
        for backup in doomed:
            del self.store[backup.name]
        return doomed


# ------------------------------------------------------------------------- a week of hourly runs


def test_a_week_of_hourly_runs_keeps_exactly_the_ladder_and_never_exceeds_50_jobs_a_day() -> None:
    ladder = Ladder.default()
    table = Table(ladder)
    burst_day, burst_at = dt.date(2026, 11, 18), utc(2026, 11, 18, 11, 30)
    pin_ticks = {5, 30, 100, 150}
    refused_pins: list[SnapshotDecision] = []
    for tick in range(168):
        now = START + tick * H
        pin_time = now - 30 * MIN  # a manual pin requested between two hourly runs
        if tick in pin_ticks:
            assert table.request(pin_time, pinned=True).take
        if pin_time == burst_at:  # someone pins 45 times in a minute
            for second in range(45):
                decision = table.request(pin_time + dt.timedelta(seconds=second), pinned=True)
                if not decision.take:
                    refused_pins.append(decision)

        decision = table.request(now, pinned=False)
        blocked = now.date() == burst_day and now > burst_at
        assert decision.take is not blocked, (now, decision.reason)
        if blocked:
            assert "50 of 50 snapshot jobs used today (2026-11-18 UTC) for sales.orders" in decision.reason

        before = set(table.store)
        doomed = table.thin(now)
        kept = set(table.store)
        assert not any(b.pinned for b in doomed)
        assert {b.name for b in doomed} == before - kept
        assert kept == expected_kept(ladder, table.history, table.pins, now), now
        assert table.pins <= kept
        unpinned = [b for b in table.store.values() if not b.pinned]
        assert len(unpinned) <= len(ladder.snapshot_rungs) + ladder.daily_days + 1
        newest = max(unpinned, key=lambda b: b.taken_at)
        assert newest.taken_at == table.newest()
        for backup in unpinned:  # the expiration set on a snapshot never cuts the ladder short
            assert backup is newest or now < snapshot_expiry(ladder, backup.taken_at)
        for rung in ladder.snapshot_rungs:  # each rung holds "the state r ago": age in [r, 2r)
            previous_start = EPOCH + ((now - EPOCH) // rung - 1) * rung
            if any(b.taken_at == previous_start for b in table.history):
                assert any(rung <= now - b.taken_at < 2 * rung for b in unpinned), (now, rung)

    # The burst: 12 hourly jobs before it, so 38 pins fit; the 51st job of the day is refused.
    assert table.jobs[burst_day] == 50
    assert len(refused_pins) == 45 - 38
    first_refusal = refused_pins[0]
    assert (first_refusal.take, first_refusal.jobs_today, first_refusal.limit) == (False, 50, 50)
    assert first_refusal.reason == (
        "refused manual pinned snapshot: 50 of 50 snapshot jobs used today (2026-11-18 UTC) for "
        "sales.orders; BigQuery allows 50 snapshot jobs per table per day"
    )
    assert max(table.jobs.values()) <= 50
    assert max(table.scheduled.values()) <= daily_snapshot_budget(ladder) == 24
    assert table.scheduled[dt.date(2026, 11, 17)] == 24
    assert len(table.pins) == 4 + 38

    # End of the week, Monday 2026-11-23 08:00: the exact ladder, plus every pin.
    unpinned_names = sorted(name for name, b in table.store.items() if not b.pinned)
    assert unpinned_names == sorted(
        [
            "orders__20261123T0800Z",  # newest, and the current 1h slot
            "orders__20261123T0700Z",  # previous 1h slot [07, 08)
            "orders__20261123T0600Z",  # current 3h slot [06, 09) and current 6h slot [06, 12)
            "orders__20261123T0300Z",  # previous 3h slot [03, 06)
            "orders__20261123T0000Z",  # previous 6h slot, today (1d rung + daily)
            "orders__20261122T0000Z",  # yesterday (1d rung + daily)
            "orders__20261121T0000Z",
            "orders__20261120T0000Z",
            "orders__20261119T0000Z",
            "orders__20261118T0000Z",
            "orders__20261117T0000Z",  # the 7th day back; 2026-11-16 is gone
        ]
    )
    assert {name for name, b in table.store.items() if b.pinned} == table.pins


def test_the_51st_snapshot_job_of_a_utc_day_is_refused_and_the_count_restarts_at_midnight() -> None:
    ladder = Ladder.default()
    table = Table(ladder)
    day = utc(2026, 11, 22)
    for minute in range(60):
        table.request(day + minute * MIN, pinned=True)
    assert table.jobs[day.date()] == 50
    refused = table.request(day + 2 * H, pinned=False)
    assert not refused.take
    assert "50 of 50 snapshot jobs used today (2026-11-22 UTC) for sales.orders" in refused.reason
    assert "BigQuery allows 50 snapshot jobs per table per day" in refused.reason
    assert table.request(day + dt.timedelta(days=1), pinned=False).take
    assert table.jobs[(day + dt.timedelta(days=1)).date()] == 1


# ------------------------------------------------------------------------- plan_snapshot


def test_plan_snapshot_takes_one_per_utc_hour_tolerates_jitter_and_pins_only_need_quota() -> None:
    ladder = Ladder.default()
    newest = utc(2026, 11, 22, 13, 0, 2)
    early = plan_snapshot(ladder, 13, utc(2026, 11, 22, 13, 59, 58), table=TABLE, newest=newest)
    assert not early.take
    assert "already in this 1h slot" in early.reason
    on_time = plan_snapshot(ladder, 13, utc(2026, 11, 22, 14, 0, 1), table=TABLE, newest=newest)
    assert on_time.take
    assert on_time.reason == (
        "taking scheduled snapshot 14: 13 of 50 snapshot jobs used today (2026-11-22 UTC) for sales.orders"
    )
    assert plan_snapshot(ladder, 0, utc(2026, 11, 22, 13, 5), table=TABLE, newest=None).take
    pin = plan_snapshot(ladder, 49, utc(2026, 11, 22, 13, 5), table=TABLE, newest=newest, pinned=True)
    assert pin.take
    assert "49 of 50 snapshot jobs used today" in pin.reason
    assert not plan_snapshot(ladder, 50, utc(2026, 11, 22, 13, 5), table=TABLE, pinned=True).take
    assert not plan_snapshot(ladder, 3, utc(2026, 11, 22, 15), table=TABLE, limit=3).take
    with pytest.raises(ValueError, match="-1"):
        plan_snapshot(ladder, -1, utc(2026, 11, 22, 15), table=TABLE)
    with pytest.raises(ValueError, match="0"):
        plan_snapshot(ladder, 1, utc(2026, 11, 22, 15), table=TABLE, limit=0)


def test_a_table_re_created_since_its_newest_snapshot_is_a_new_base() -> None:
    # a reseed of staging re-creates its tables: the next ladder run snapshots the new base even when
    # the hour already holds a snapshot of the table's earlier life; quota still applies
    ladder = Ladder.default()
    newest = utc(2026, 11, 22, 13, 0)
    reseeded = utc(2026, 11, 22, 13, 20)
    now = utc(2026, 11, 22, 13, 30)
    base = plan_snapshot(ladder, 5, now, table=TABLE, newest=newest, created=reseeded)
    assert base.take
    assert (
        "of a new base: sales.orders was created at 2026-11-22T13:20:00+00:00, after its newest snapshot" in base.reason
    )
    # not re-created since: the slot rule holds
    assert not plan_snapshot(ladder, 5, now, table=TABLE, newest=newest, created=utc(2026, 11, 1)).take
    assert not plan_snapshot(ladder, 50, now, table=TABLE, newest=newest, created=reseeded).take
    # re-created after T itself: it did not exist as of T
    assert not plan_snapshot(ladder, 5, now, table=TABLE, newest=newest, created=utc(2026, 11, 22, 13, 40)).take


@pytest.mark.parametrize(("rungs", "budget"), [(["1h", "1d"], 24), (["3h"], 8), (["7h"], 5), (["2d"], 1)])
def test_daily_snapshot_budget_bounds_what_the_schedule_takes_in_any_utc_day(rungs: list[str], budget: int) -> None:
    ladder = Ladder.from_strings(rungs)
    assert daily_snapshot_budget(ladder) == budget
    rnd = random.Random(42)
    table = Table(ladder)
    now = utc(2026, 11, 1)
    while now < utc(2026, 12, 1):
        table.request(now, pinned=False)
        now += dt.timedelta(minutes=rnd.choice([1, 10, 30, 59, 60, 61]))
    assert 0 < max(table.scheduled.values()) <= budget
    if rungs[0] == "1h":
        assert max(table.scheduled.values()) == budget


# ------------------------------------------------------------------------- durations and ladders


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("90s", dt.timedelta(seconds=90)),
        ("1m", MIN),
        ("60m", H),
        ("2h", 2 * H),
        ("1d", dt.timedelta(days=1)),
        ("7d", dt.timedelta(days=7)),
        (" 3h ", 3 * H),
    ],
)
def test_parse_duration(text: str, value: dt.timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "1", "h", "1.5h", "-1h", "1w", "1H", "1h30m", "1 h"])
def test_parse_duration_errors_name_the_value_and_the_units(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_duration(text)
    assert repr(text) in str(error.value)
    assert "s, m, h, d" in str(error.value)


def test_default_ladder_splits_time_travel_and_snapshot_rungs() -> None:
    ladder = Ladder.default()
    assert ladder.time_travel_rungs == (MIN, 2 * MIN, 5 * MIN, 10 * MIN)
    assert ladder.snapshot_rungs == (H, 3 * H, 6 * H, dt.timedelta(days=1))
    assert ladder.daily_days == 7
    assert ladder == Ladder.from_strings(["1d", "6h", "3h", "60m", "10m", "5m", "2m", "1m"])


@pytest.mark.parametrize(
    ("rungs", "daily_days", "named"),
    [
        (["1m", "1x"], 7, "'1x'"),
        (["1h", "60m"], 7, "'60m'"),
        (["0m", "1h"], 7, "'0m'"),
        (["1m", "10m"], 7, "1m, 10m"),
        (["1h"], -1, "-1"),
        (["1h"], True, "True"),
    ],
)
def test_ladder_validation_errors_name_the_bad_value(rungs: list[str], daily_days: int, named: str) -> None:
    with pytest.raises(ValueError) as error:
        Ladder.from_strings(rungs, daily_days=daily_days)
    assert named in str(error.value)


def test_ladder_rejects_unsorted_or_non_positive_rungs_given_directly() -> None:
    with pytest.raises(ValueError, match="'10m'.*'1h'"):
        Ladder(rungs=(H, 10 * MIN))
    with pytest.raises(ValueError, match="'-1h'"):
        Ladder(rungs=(-H, H))


def test_restore_points_of_the_default_ladder_are_the_time_travel_rungs() -> None:
    now = utc(2026, 11, 22, 14, 7, 30)
    assert restore_points(Ladder.default(), now) == [now - MIN, now - 2 * MIN, now - 5 * MIN, now - 10 * MIN]
    assert restore_points(Ladder.from_strings(["1h"]), now) == []


# ------------------------------------------------------------------------- names and expiry


@pytest.mark.parametrize(
    ("taken_at", "name"),
    [
        (utc(2026, 11, 22, 14, 0), "orders__20261122T1400Z"),
        (utc(2026, 11, 22, 14, 5, 9), "orders__20261122T140509Z"),
        (dt.datetime(2026, 11, 22, 15, 0, tzinfo=dt.timezone(H)), "orders__20261122T1400Z"),
    ],
)
def test_snapshot_name_round_trips(taken_at: dt.datetime, name: str) -> None:
    assert snapshot_name("orders", taken_at) == name
    assert parse_snapshot_name(name) == ("orders", taken_at)


def test_snapshot_names_keep_tables_with_double_underscores_and_reject_the_rest() -> None:
    name = snapshot_name("orders__flat", utc(2026, 1, 2, 3, 4))
    assert parse_snapshot_name(name) == ("orders__flat", utc(2026, 1, 2, 3, 4))
    foreign = ["orders", "orders__2026", "orders__20261122T1400", "orders__20261322T1400Z", "__20261122T1400Z"]
    for other in foreign:
        assert parse_snapshot_name(other) is None, other
    with pytest.raises(ValueError, match="orders; drop"):
        snapshot_name("orders; drop", utc(2026, 1, 2))
    with pytest.raises(ValueError, match="time-zone-aware"):
        snapshot_name("orders", dt.datetime(2026, 1, 2))


def test_snapshot_expiry_is_when_the_last_rung_or_daily_slot_lets_go() -> None:
    ladder = Ladder.default()
    assert snapshot_expiry(ladder, utc(2026, 11, 20, 9)) == utc(2026, 11, 27)  # day + 7 daily days
    assert snapshot_expiry(Ladder.from_strings(["1h", "6h"], daily_days=0), utc(2026, 11, 20, 9)) == utc(
        2026, 11, 20, 18
    )  # previous 6h slot [06, 12) is wanted until 18:00


def test_backups_must_be_aware_and_uniquely_named() -> None:
    with pytest.raises(ValueError, match="'a'"):
        Backup(dt.datetime(2026, 1, 1), "a")
    twice = [Backup(utc(2026, 1, 1), "a"), Backup(utc(2026, 1, 2), "a")]
    with pytest.raises(ValueError, match="'a' appears twice"):
        keep(Ladder.default(), twice, utc(2026, 1, 3))


def test_pinned_and_future_backups_are_never_thinned() -> None:
    now = utc(2026, 11, 22, 12)
    backups = [
        Backup(now - dt.timedelta(days=30), "old_pin", pinned=True),
        Backup(now - dt.timedelta(days=30), "old"),
        Backup(now + 5 * MIN, "from_a_fast_clock"),
        Backup(now - H, "last_hour"),
    ]
    assert [b.name for b in thin(Ladder.default(), backups, now)] == ["old"]
    assert keep(Ladder.default(), [], now) == set()


# ------------------------------------------------------------------------- seeded random schedules


def random_ladder(rnd: random.Random) -> Ladder:
    snapshot = rnd.sample(["1h", "2h", "3h", "4h", "5h", "6h", "7h", "12h", "1d", "2d"], rnd.randint(1, 5))
    travel = rnd.sample(["1m", "5m", "15m", "30m"], rnd.randint(0, 2))
    return Ladder.from_strings(snapshot + travel, daily_days=rnd.randint(0, 9))


def test_random_schedules_keep_the_newest_stay_bounded_and_are_history_independent() -> None:
    rnd = random.Random(42)
    ladders = [Ladder.default()] * 3 + [random_ladder(rnd) for _ in range(5)]
    for ladder in ladders:
        table = Table(ladder)
        now = utc(2026, 1, 1) + dt.timedelta(seconds=rnd.randrange(365 * 86_400))
        # The default ladder's slots nest: the brief's bound holds; any other ladder: the general one.
        default = ladder == Ladder.default()
        bound = 1 + len(ladder.snapshot_rungs) + ladder.daily_days if default else ladder.max_kept
        for _ in range(400):
            now += dt.timedelta(minutes=rnd.choice([1, 7, 20, 45, 60, 60, 60, 61, 120, 300, 780]))
            if rnd.random() < 0.08:
                table.request(now - dt.timedelta(seconds=rnd.randrange(1, 60)), pinned=True)
            table.request(now, pinned=False)
            table.thin(now)
            kept = set(table.store)
            unpinned = [b for b in table.store.values() if not b.pinned]
            assert table.newest() is None or max(b.taken_at for b in unpinned) == table.newest()
            assert len(unpinned) <= bound, (ladder, now)
            assert table.pins <= kept
            full = table.history + [b for b in table.store.values() if b.pinned]
            assert kept == keep(ladder, full, now)  # thinning hourly == one pass over everything
        assert max(table.jobs.values()) <= 50
        assert max(table.scheduled.values()) <= daily_snapshot_budget(ladder)
