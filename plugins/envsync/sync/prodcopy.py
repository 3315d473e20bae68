"""Prod-copy: a full copy of prod as of a chosen instant T, and the rule for which T is allowed.

T must lie inside the time-travel window of every prod dataset copied (each dataset's own
`max_time_travel_hours` read from BigQuery, narrowed by `prod.time_travel_hours` when the config sets
it; see envsync.bigquery.timetravel) and not in the future: older data cannot be cloned. The plan describes
prod as of T: a table created after T did not exist then and is skipped with that reason (reading it
as of T would fail), and every other table carries its schema as of T, which the verification
compares the copy with (a column added to prod after T is not expected in the copy; one dropped after
T is). A copy records its T in the state bucket (`prod_copy/current.json`); `mode: reset` re-creates
prod-copy from that same T, which undoes everything done in prod-copy since.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from envsync.bigquery.timetravel import TimeTravelWindow

if TYPE_CHECKING:
    from google.cloud import bigquery

    from envsync.core.config import EnvsyncConfig
    from envsync.sync.plan import DatasetPlan

log = logging.getLogger(__name__)

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
    return value.astimezone(dt.UTC)


def check_as_of(as_of: dt.datetime, now: dt.datetime, window: int | TimeTravelWindow) -> None:
    """Refuse an instant in the future or outside the time-travel window (less a safety margin)."""
    hours = window if isinstance(window, int) else window.hours
    oldest = now - dt.timedelta(hours=hours) + SAFETY_MARGIN
    if as_of > now:
        raise AsOfError(f"as_of {as_of.isoformat()} is in the future (now {now.isoformat()})")
    if as_of < oldest:
        which = (
            f"{hours} h"
            if isinstance(window, int)
            else f"{hours} h of prod dataset {window.dataset!r} ({window.source})"
        )
        raise AsOfError(
            f"as_of {as_of.isoformat()} is outside BigQuery's time-travel window of {which}: the oldest "
            f"instant that can be read now is {oldest.isoformat()}; restore an older state from a backup "
            "instead"
        )


def pin_plans_to_cut(
    config: EnvsyncConfig, client: bigquery.Client, plans: list[DatasetPlan], cut: dt.datetime
) -> None:
    """Make prod-copy plans describe prod as of T (in place): skip the tables created after T, with
    the reason, and give every other table its schema as of T (read by dry runs of `client`, in its
    own project, of prod's tables in prod's project)."""
    from envsync.bigquery.timetravel import created_after, creation_times, merge_schema, schema_changes, schemas_as_of
    from envsync.bigquery.verify import partition_filter
    from envsync.core.guard import TableRef

    for plan in plans:
        created = creation_times(client, config.prod_project, plan.dataset)
        copied = []
        for action in plan.by_action("full_clone", "masked_ctas"):
            when = created.get(action.table)
            if when is not None and created_after(when, cut):
                action.action = "skip"
                action.reason = (
                    f"created at {when.isoformat()}, after T = {cut.isoformat()}: it did not exist "
                    "as of T (time travel cannot read a table before its creation)"
                )
                action.est_bytes_billed = action.est_jobs = 0
                log.info("prod-copy skips %s: %s", action.key, action.reason)
            else:
                copied.append(action)
        refs = {a.table: TableRef(config.prod_project, plan.dataset, a.table) for a in copied}
        found = schemas_as_of(
            client,
            list(refs.values()),
            cut,
            location=plan.location or config.location,
            keep_all={ref: partition_filter(plan.tables[name]) for name, ref in refs.items()},
        )
        for action in copied:
            info = plan.tables[action.table]
            then = merge_schema(found[refs[action.table]], info.schema)
            changes = schema_changes(then, info.schema)
            if changes:
                action.reason += f" (schema as of T; {changes})"
                log.info(
                    "%s: prod's schema changed after T (%s): the copy is verified against the schema as of T",
                    action.key,
                    changes,
                )
            info.schema = then
