"""Prod-copy: a full copy of prod as of a chosen instant T, and the rule for which T is allowed.

T must lie inside BigQuery's time-travel window of the prod datasets (`prod.time_travel_hours`, 2 to 7
days) and not in the future: older data cannot be cloned. A copy records its T in the state bucket
(`prod_copy/current.json`); `mode: reset` re-creates prod-copy from that same T, which undoes
everything done in prod-copy since.
"""

from __future__ import annotations

import datetime as dt

CURRENT = "prod_copy/current.json"
# a copy is planned a little after T is checked; keep a margin so T is still readable when the jobs run
SAFETY_MARGIN = dt.timedelta(minutes=30)


class AsOfError(ValueError):
    """The requested instant cannot be copied (outside the time-travel window, or malformed)."""


def parse_as_of(text: str | None, now: dt.datetime) -> dt.datetime:
    """'' or None means now; otherwise an ISO-8601 instant with a time zone."""
    if text in (None, ""):
        return now
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise AsOfError(f"as_of {text!r} is not an ISO-8601 instant such as 2026-11-20T08:00:00+00:00") from None
    if value.tzinfo is None:
        raise AsOfError(f"as_of {text!r} has no time zone; write it like 2026-11-20T08:00:00+00:00")
    return value.astimezone(dt.timezone.utc)


def check_as_of(as_of: dt.datetime, now: dt.datetime, time_travel_hours: int) -> None:
    oldest = now - dt.timedelta(hours=time_travel_hours) + SAFETY_MARGIN
    if as_of > now:
        raise AsOfError(f"as_of {as_of.isoformat()} is in the future (now {now.isoformat()})")
    if as_of < oldest:
        raise AsOfError(
            f"as_of {as_of.isoformat()} is outside BigQuery's time-travel window of {time_travel_hours} h "
            f"(prod.time_travel_hours): the oldest instant that can be copied now is {oldest.isoformat()}; "
            "restore an older state from a backup instead"
        )
