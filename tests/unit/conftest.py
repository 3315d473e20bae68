"""Unit tests start with a fresh pacer (envsync.core.limits) on a virtual clock: a write held up by a
rate limiter advances that clock instead of sleeping, and one test's windows do not hold up the next.
tests/unit/test_limits.py tests the pacing itself with pacers of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jobkit import VirtualClock

from envsync.core import limits


@pytest.fixture(autouse=True)
def fresh_pacer(monkeypatch: pytest.MonkeyPatch) -> Iterator[limits.Pacer]:
    clock = VirtualClock()
    pacer = limits.Pacer(limits.pacer().rates, clock=clock, sleep=clock.sleep)
    monkeypatch.setattr(limits, "_pacer", pacer)
    yield pacer
