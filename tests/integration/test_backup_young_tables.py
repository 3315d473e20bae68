"""backup_ladder on the emulators: a table younger than the run's hour is skipped with the reason.

The snapshot reads FOR SYSTEM_TIME AS OF the cut T (the run's hour); BigQuery refuses an instant
before the table was created (https://cloud.google.com/bigquery/docs/access-historical-data), and so
does the fidelity layer.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backupkit import BUCKET, PROJECT, UTC, client, ds, fq, make_prod, query, write_config

pytestmark = pytest.mark.integration


def states(dag_run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture
def shop(emulators: Any) -> Iterator[None]:
    make_prod()
    yield
    client().delete_table(fq("shop.late"), not_found_ok=True)


def test_a_table_created_after_the_cut_is_skipped_with_the_reason(shop: None, run_dag: Any, tmp_path: Path) -> None:
    from envsync.backups.ladder import snapshot_name
    from envsync.core.clients import storage_client
    from envsync.core.manifest import ManifestStore

    time.sleep(1.1)
    now = dt.datetime.now(UTC)
    if now.minute == 59 and now.second > 30:  # the run and the table must share their hour
        time.sleep(61 - now.second)
    hour = dt.datetime.now(UTC).replace(microsecond=0)  # the run's logical date: its cut T
    time.sleep(1.1)
    query(f"create table `{PROJECT}.shop.late` as select 1 as x")  # younger than the cut
    created = client().get_table(fq("shop.late")).created

    run = run_dag("backup_ladder", hour, {}, config_path=write_config(tmp_path / "envsync.yaml"))
    assert str(run.state) == "success", states(run)
    taken = {t.table_id for t in client().list_tables(fq("backup_shop"))}
    assert taken == {snapshot_name("orders", hour), snapshot_name("customers", hour)}
    report = ManifestStore(storage_client(PROJECT), BUCKET).latest_report("backup_ladder")
    assert report is not None
    rows = {r["table"]: r for r in report["results"]}
    late = rows[f"{ds('shop')}.late"]
    assert (late["action"], late["status"]) == ("skip", "skipped")
    assert late["reason"] == (
        f"skipped scheduled snapshot: {ds('shop')}.late was created at {created.isoformat()}, "
        f"after T = {hour.isoformat()}: it did not exist as of T (the next run backs it up)"
    )
    assert report["decisions"][ds("shop")]["late"]["take"] is False
    assert {rows[f"{ds('shop')}.{t}"]["status"] for t in ("orders", "customers")} == {"ok"}
