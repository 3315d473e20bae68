"""Pure restore logic: which source serves T, point-in-time parsing, the prod-restore confirmation, config."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from envsync.backups.restore import CreatedAfterT, ExportCandidate, RestoreError, choose_source, parse_point_in_time
from envsync.backups.snapshots import Snapshot
from envsync.core.config import ConfigError, parse_config
from envsync.core.guard import ProdWriteRefused, WriteGuard, WriteTarget, confirmation_phrase

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def snap(hours_ago: float, pinned: bool = False) -> Snapshot:
    taken = NOW - dt.timedelta(hours=hours_ago)
    return Snapshot("sales", "orders", "backup_sales", f"orders__{taken:%Y%m%dT%H%M%SZ}", taken, pinned)


def choose(point: dt.datetime, **kw):
    args = {"time_travel_hours": 168, "in_prod": True, "snapshots": [], "exports": [], "dataset": "sales"}
    args.update(kw)
    return choose_source("orders", point, NOW, **args)


def test_time_travel_inside_the_window() -> None:
    point = NOW - dt.timedelta(days=3)
    source = choose(point, snapshots=[snap(100)])
    assert (source.kind, source.taken_at, source.ref) == ("time_travel", point, "sales.orders")
    assert source.rpo_seconds(point) == 0
    assert "inside the 168 h time-travel window" in source.reason


@pytest.mark.parametrize(
    "kw, why",
    [
        ({"time_travel_hours": 0}, "time travel is off"),
        ({"time_travel_hours": 48}, "outside the 48 h time-travel window"),
        ({"in_prod": False}, "no longer exists in prod"),
        ({"allowed": ("snapshot", "export")}, "backups only"),
    ],
)
def test_newest_snapshot_at_or_before_t_otherwise(kw: dict, why: str) -> None:
    point = NOW - dt.timedelta(hours=60)
    snapshots = [snap(80), snap(62), snap(61, pinned=True), snap(59), snap(1)]
    source = choose(point, snapshots=snapshots, **kw)
    assert source.kind == "snapshot"
    assert source.ref == str(snapshots[2]) and source.taken_at == NOW - dt.timedelta(hours=61)  # pinned count too
    assert source.rpo_seconds(point) == 3600
    assert why in source.reason and "newest snapshot at or before T" in source.reason


def test_export_when_no_snapshot_is_old_enough() -> None:
    point = NOW - dt.timedelta(days=20)
    exports = [
        ExportCandidate(NOW - dt.timedelta(days=19), "gs://b/backups/sales/orders/2026-11-03/"),
        ExportCandidate(NOW - dt.timedelta(days=21), "gs://b/backups/sales/orders/2026-11-01/"),
    ]
    source = choose(point, snapshots=[snap(24)], exports=exports)
    assert source.kind == "export" and source.ref.endswith("2026-11-01/")
    assert "no snapshot at or before T (oldest kept: " in source.reason


def test_no_source_names_table_and_every_reason() -> None:
    with pytest.raises(RestoreError) as error:
        choose(NOW - dt.timedelta(days=30), snapshots=[snap(24)])
    text = str(error.value)
    assert "cannot restore sales.orders to 2026-10-23T12:00:00+00:00" in text
    assert "outside the 168 h time-travel window" in text and "no snapshot at or before T" in text
    assert "no GCS export at or before T" in text


def test_parse_point_in_time() -> None:
    assert parse_point_in_time("", NOW) == NOW
    assert parse_point_in_time("2026-11-20T08:00:00+01:00", NOW) == dt.datetime(2026, 11, 20, 7, tzinfo=UTC)
    assert parse_point_in_time("2026-11-20T08:00:00Z", NOW) == dt.datetime(2026, 11, 20, 8, tzinfo=UTC)
    for bad, message in (
        ("yesterday", "not an ISO-8601 instant"),
        ("2026-11-20T08:00:00", "no time zone"),
        ("2026-12-20T08:00:00+00:00", "in the future"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_point_in_time(bad, NOW)


def guard() -> WriteGuard:
    return WriteGuard(
        "acme-data", ["sales", "marketing"], ["dev_", "backup_", "drill_"], allowed_datasets=["envsync_audit"]
    )


def test_prod_restore_needs_the_exact_phrase_and_opens_only_that_datasets_tables() -> None:
    point = dt.datetime(2026, 11, 20, 8, tzinfo=UTC)
    phrase = confirmation_phrase("sales", point)
    assert phrase == "restore prod dataset sales to 2026-11-20T08:00:00+00:00"
    base = guard()
    with pytest.raises(ProdWriteRefused):
        base.check(WriteTarget("acme-data", "sales", "orders"), "write")
    for wrong in (
        None,
        "",
        "yes",
        phrase.upper(),
        phrase + " ",
        confirmation_phrase("sales", point + dt.timedelta(seconds=1)),
    ):
        with pytest.raises(ProdWriteRefused, match=re.escape("set the confirm param to exactly: " + phrase)):
            base.for_prod_restore("sales", point, wrong)
    opened = base.for_prod_restore("sales", point, phrase)
    opened.check(WriteTarget("acme-data", "sales", "orders"), "write")
    opened.check_statement("create or replace table `acme-data.sales.orders__restore` clone `acme-data.backup_sales.s`")
    for target, action in (
        (WriteTarget("acme-data", "sales"), "delete dataset"),
        (WriteTarget("acme-data", "marketing", "t"), "write"),
        (WriteTarget("other-proj", "sales", "t"), "write"),
    ):
        with pytest.raises(ProdWriteRefused):
            opened.check(target, action)
    with pytest.raises(ProdWriteRefused, match="not a prod dataset"):
        base.for_prod_restore("dev_sales", point, phrase)


def test_audit_dataset_is_writable_but_nothing_else_without_prefix() -> None:
    g = guard()
    g.check(WriteTarget("acme-data", "envsync_audit", "recovery_drills"), "write")
    g.check_statement("insert into `acme-data.envsync_audit.recovery_drills` (a) values (@a)")
    with pytest.raises(ProdWriteRefused, match="no environment prefix"):
        g.check(WriteTarget("acme-data", "envsync_other", "t"), "write")


BASE = {"project": "acme-data", "prod": {"datasets": ["sales"]}, "state": {"bucket": "acme-state"}}


def test_backup_config_defaults_and_errors() -> None:
    config = parse_config(BASE)
    assert config.backups.ladder().max_kept == 16
    assert config.restore_time_travel_hours() == 168 and config.export_bucket == "acme-state"
    assert (
        config.env_dataset("backup", "sales") == "backup_sales"
        and config.env_dataset("drill", "sales") == "drill_sales"
    )
    for backups, message in (
        ({"rungs": ["1m", "2x"]}, "backups: bad duration '2x'"),
        ({"rungs": ["5m", "10m"]}, "at least one snapshot rung of 1h or more"),
        ({"rungs": ["1h", "60m"]}, "duplicates"),
        ({"restore_time_travel_hours": 169}, "restore_time_travel_hours"),
        ({"export": {"format": "CSV"}}, "backups.export.format"),
        ({"export": {"bucket": "Bad_Bucket"}}, "not a valid GCS bucket name"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config({**BASE, "backups": backups})
    with pytest.raises(ConfigError, match="more than prod.time_travel_hours 48"):
        parse_config(
            {
                **BASE,
                "prod": {"datasets": ["sales"], "time_travel_hours": 48},
                "backups": {"restore_time_travel_hours": 72},
            }
        )
    with pytest.raises(ConfigError, match="audit.dataset 'sales' must be neither"):
        parse_config({**BASE, "audit": {"dataset": "sales"}})
    with pytest.raises(ConfigError, match="prefixes must not overlap"):
        parse_config({**BASE, "environments": {"drill": {"prefix": "dev_"}}})


# ------------------------------------------------------------------ creation time (issue 10)
# BigQuery cannot read a table FOR SYSTEM_TIME AS OF an instant before the table was created
# (https://cloud.google.com/bigquery/docs/time-travel): a table created after T never gets time travel.


def test_table_created_after_t_never_uses_time_travel_but_the_snapshot_before_t() -> None:
    point = NOW - dt.timedelta(hours=5)
    # dropped and created again 2 hours ago: the snapshot of its earlier version 6 hours ago is the state at T
    source = choose(point, created=NOW - dt.timedelta(hours=2), snapshots=[snap(6), snap(1)])
    assert (source.kind, source.ref) == ("snapshot", str(snap(6)))
    assert "was created at 2026-11-22T10:00:00+00:00, after T" in source.reason
    # created before T: time travel as before
    assert choose(point, created=NOW - dt.timedelta(hours=6)).kind == "time_travel"
    assert choose(point, created=point).kind == "time_travel"


def test_table_created_after_t_uses_an_export_before_t() -> None:
    point = NOW - dt.timedelta(days=2)
    exports = [ExportCandidate(NOW - dt.timedelta(days=3), "gs://b/backups/sales/orders/2026-11-19/")]
    source = choose(point, created=NOW - dt.timedelta(days=1), exports=exports)
    assert source.kind == "export" and "after T" in source.reason


def test_table_created_after_t_without_a_backup_is_skipped_with_the_reason() -> None:
    point = NOW - dt.timedelta(hours=5)
    with pytest.raises(CreatedAfterT) as error:
        choose(point, created=NOW - dt.timedelta(hours=2), snapshots=[snap(1)])
    text = str(error.value)
    assert "sales.orders was created at 2026-11-22T10:00:00+00:00, after T" in text
    assert "no snapshot at or before T" in text
    # a table no longer in prod: its creation time says nothing about T
    with pytest.raises(RestoreError) as gone:
        choose(point, in_prod=False, created=None)
    assert not isinstance(gone.value, CreatedAfterT)


class FakeCatalog:
    def __init__(self, snapshots: dict, exports: dict | None = None) -> None:
        self._snapshots, self._exports = snapshots, exports or {}

    def snapshots(self, dataset: str) -> dict:
        return self._snapshots

    def exports(self, dataset: str) -> dict:
        return self._exports


def test_plan_skips_new_tables_and_restores_recreated_ones_from_their_snapshot() -> None:
    from unittest import mock

    from envsync.backups.restore import RestoreEngine

    point = NOW - dt.timedelta(hours=5)
    config = parse_config(BASE)
    bq = mock.Mock()
    bq.client.get_dataset.return_value.max_time_travel_hours = 168  # the dataset's own window (the default)
    engine = RestoreEngine(config, bq, mock.Mock(), FakeCatalog({"orders": [snap(6)]}))  # type: ignore[arg-type]  # fakes for the clients
    created = {
        "orders": NOW - dt.timedelta(hours=2),  # dropped and created again after T
        "events": NOW - dt.timedelta(hours=1),  # new since T
        "customers": NOW - dt.timedelta(days=30),
    }  # older than T
    with mock.patch.object(RestoreEngine, "prod_tables", return_value=created):
        chosen, skipped = engine.plan("sales", None, point, NOW, ("time_travel", "snapshot", "export"))
    assert chosen["orders"].kind == "snapshot"  # type: ignore[union-attr]  # chosen: the test asserts it
    assert chosen["customers"].kind == "time_travel"  # type: ignore[union-attr]  # chosen: the test asserts it
    assert set(skipped) == {"events"} and "events" not in chosen
    assert skipped["events"].startswith("created after T: cannot restore sales.events")


# ------------------------------------------------------------------ publishing a verified stage


def table(kind: str = "TABLE", field: str | None = "d") -> Any:
    from google.cloud import bigquery

    t = bigquery.Table("acme-data.sales.orders")
    t._properties["type"] = kind
    if field:
        t.time_partitioning = bigquery.TimePartitioning(field=field)
    return t


def test_publish_truncates_an_existing_table_and_creates_a_missing_one() -> None:
    from envsync.backups.restore import publish_disposition

    assert publish_disposition("sales.orders", table(), table()) == "WRITE_TRUNCATE"
    assert publish_disposition("sales.orders", None, table()) == "WRITE_EMPTY"
    with pytest.raises(RestoreError, match="it is a VIEW, and a restore only overwrites tables"):
        publish_disposition("sales.orders", table("VIEW", None), table())
    with pytest.raises(RestoreError, match="its partitioning is DAY on d, the state restored has DAY on other"):
        publish_disposition("sales.orders", table(), table(field="other"))
    with pytest.raises(RestoreError, match="its partitioning is unpartitioned, the state restored has DAY on d"):
        publish_disposition("sales.orders", table(field=None), table())
