"""The envsync page's pure parts: states, coverage gaps, rungs, the SVG plots, the cache and the app."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from envsync.backups.ladder import Backup, keep, rungs_served, snapshot_name
from envsync.core.rungs import Ladder
from envsync.ui import data
from envsync.ui.data import (
    Dashboard,
    DashboardCache,
    DashboardReader,
    DashboardReadOnlyError,
    OptionalSection,
    assess,
    human_age,
    largest_gap,
    table_coverage,
)
from envsync.ui.page import render_page, run_href
from envsync.ui.svg import Mark, Point, line_chart, timeline

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def _assess(env: str, **kw: Any) -> tuple[str, list[str]]:
    args = {"last_status": "success", "last_error": None, "last_at": NOW, "ok_at": NOW, "drift_findings": 0, "now": NOW}
    args.update(kw)
    return assess(env, **args)


@pytest.mark.parametrize(
    ("env", "ok_age", "state", "reason"),
    [
        ("dev", dt.timedelta(days=2), "green", "fresh: last success 2 d ago"),
        ("dev", dt.timedelta(days=8, hours=1), "amber", "stale: last success 8 d 1 h ago, expected every 7 d"),
        ("dev", dt.timedelta(days=16), "red", "stale: last success 16 d ago, expected every 7 d"),
        ("backup", dt.timedelta(hours=2, minutes=5), "amber", "stale: last success 2 h ago, expected every 60 min"),
        ("backup", dt.timedelta(hours=4), "red", "stale: last success 4 h ago, expected every 60 min"),
        ("prodcopy", dt.timedelta(days=60), "green", "fresh: last success 60 d ago"),
        ("test_alice", dt.timedelta(days=60), "green", "fresh: last success 60 d ago"),
    ],
)
def test_staleness_follows_each_environments_schedule(env: str, ok_age: dt.timedelta, state: str, reason: str) -> None:
    assert _assess(env, ok_at=NOW - ok_age, last_at=NOW - ok_age) == (state, [reason])


def test_a_failed_last_run_is_red_with_its_error_and_drift_is_amber() -> None:
    state, reasons = _assess(
        "qa",
        last_status="failed",
        last_error="BadRequest: no\nmore",
        drift_findings=3,
        last_at=NOW - dt.timedelta(hours=1),
        ok_at=NOW - dt.timedelta(days=1),
    )
    assert state == "red"
    assert reasons == [
        "failed: the last run (60 min ago) ended failed: BadRequest: no",
        "drifted: 3 parity findings not explained by a migration",
    ]
    assert _assess("qa", drift_findings=1) == ("amber", ["drifted: 1 parity finding not explained by a migration"])
    assert _assess("dev", ok_at=None, last_status="failed")[1][-1] == "no successful run in the last 90 days"
    assert _assess("dev", last_at=None, ok_at=None) == ("grey", ["no run recorded in the last 90 days"])


def test_human_age() -> None:
    assert [human_age(s) for s in (5, 600, 7200, 86400 * 3, 86400 * 3 + 7200)] == [
        "5 s",
        "10 min",
        "2 h",
        "3 d",
        "3 d 2 h",
    ]


def test_largest_gap_counts_time_travel_as_covered() -> None:
    start = NOW - dt.timedelta(days=7)
    points = [NOW - dt.timedelta(days=6), NOW - dt.timedelta(days=2)]
    # without time travel: the 4 days between the two snapshots, then 2 days to now
    assert largest_gap(points, start, NOW, NOW) == (points[0], points[1])
    # time travel over the last 3 days: the gap 6 d -> 3 d ago remains the largest... but 4 d > 3 d
    assert largest_gap(points, start, NOW - dt.timedelta(days=3), NOW) == (points[0], NOW - dt.timedelta(days=3))
    # a 7-day time-travel window covers everything
    gap = largest_gap(points, start, start, NOW)
    assert gap[1] - gap[0] == dt.timedelta(0)


def test_rungs_served_name_the_rungs_keep_keeps() -> None:
    ladder = Ladder.default()
    hour = NOW.replace(minute=0)
    backups = [Backup(hour - dt.timedelta(hours=h), f"t{h:03d}") for h in range(0, 24 * 8, 1)]
    served = rungs_served(ladder, backups, NOW)
    newest = max(backups, key=lambda b: b.taken_at).name
    assert set(served) | {newest} == keep(ladder, backups, NOW)
    assert "daily" in served[f"t{NOW.hour:03d}"]  # today's midnight snapshot: today's daily slot
    assert all(label in ("1h", "3h", "6h", "1d", "daily") for labels in served.values() for label in labels)


def test_table_coverage_labels_rungs_pins_and_exports() -> None:
    hour = NOW.replace(minute=0)
    snaps = [
        Backup(hour - dt.timedelta(days=2), snapshot_name("orders", hour - dt.timedelta(days=2)), pinned=True),
        Backup(hour, snapshot_name("orders", hour)),
    ]
    cov = table_coverage(
        "sales.orders",
        snaps,
        [NOW.date() - dt.timedelta(days=1)],
        ladder=Ladder.default(),
        time_travel_hours=0,
        jobs_today=3,
        now=NOW,
        start=NOW - dt.timedelta(days=7),
    )
    assert [p.kind for p in cov.points] == ["pinned", "export", "snapshot"]
    assert cov.points[0].label.endswith("(pinned)") and "1h" in cov.points[2].label
    assert cov.gap and cov.gap_from == NOW - dt.timedelta(days=7)


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_timeline_draws_every_restore_point_in_the_window_with_a_tooltip() -> None:
    start = NOW - dt.timedelta(days=7)
    marks = [
        Mark(NOW - dt.timedelta(days=1), "snapshot", "s1"),
        Mark(NOW - dt.timedelta(days=2), "pinned", "p <1>"),
        Mark(NOW - dt.timedelta(days=3), "export", "e1"),
        Mark(NOW - dt.timedelta(days=9), "snapshot", "old"),
    ]
    root = _parse(
        timeline(
            marks,
            start,
            NOW,
            NOW - dt.timedelta(hours=48),
            gap=(NOW - dt.timedelta(days=7), NOW - dt.timedelta(days=3)),
        )
    )
    kinds = [el.get("class") for el in root.iter() if el.get("class")]
    assert kinds.count("snapshot") == 1 and kinds.count("pinned") == 1 and kinds.count("export") == 1
    assert "time-travel" in kinds and "gap" in kinds
    assert "p <1>" in [t.text for t in root.iter(f"{SVG}title")]


def test_line_chart_marks_failed_points_and_links_each_run() -> None:
    points = [
        Point(NOW - dt.timedelta(days=d), v, failed, f"run {d}", f"/dags/recovery_drill/runs/r{d}")
        for d, v, failed in [(3, 10.0, False), (2, 40.0, True), (1, None, True), (0, 5.0, False)]
    ]
    root = _parse(line_chart(points, label="RTO", unit="seconds"))
    links = [a.get("href") for a in root.iter(f"{SVG}a")]
    assert links == [f"/dags/recovery_drill/runs/r{d}" for d in (3, 2, 1, 0)]
    assert len([el for el in root.iter() if el.get("class") == "failed"]) == 2
    assert len(list(root.iter(f"{SVG}circle"))) == 2
    [line] = root.iter(f"{SVG}polyline")
    assert len(line.get("points").split()) == 3  # the unmeasured point is not on the line
    assert "no drill recorded yet" in line_chart([], label="RTO", unit="s")


def _board(**changes: Any) -> Dashboard:
    env = data.EnvironmentStatus(
        "dev", "green", ["fresh"], ok_run=data.RunLink("prod_to_dev_sync", "manual__a b/c"), ok_at=NOW, rows=1234
    )
    values = dict(
        project="p",
        audit_dataset="envsync_audit",
        generated_at=NOW,
        seconds=0.1,
        environments=[env],
        coverage=[],
        coverage_from=NOW - dt.timedelta(days=7),
        snapshot_job_limit=50,
        drills=[],
        parity=OptionalSection("envsync_audit.parity"),
        parity_findings=[],
        migrations=OptionalSection("envsync_audit.migrations", missing_columns=["version"]),
        migration_status=[],
        notes=[],
    )
    values.update(changes)
    return Dashboard(**values)


def test_page_links_runs_in_the_top_window_and_says_what_is_absent() -> None:
    html = render_page(_board(), ui_root="/airflow")
    assert (
        run_href("/airflow", data.RunLink("prod_to_dev_sync", "manual__a b/c"))
        == "/airflow/dags/prod_to_dev_sync/runs/manual__a%20b%2Fc"
    )
    assert 'href="/airflow/dags/prod_to_dev_sync/runs/manual__a%20b%2Fc" target="_top"' in html
    assert "shown once envsync_audit.parity exists" in html
    assert "envsync_audit.migrations exists but lacks the columns version" in html
    # nothing is fetched at view time: no script file, stylesheet, image or frame; one inline script
    assert not any(tag in html for tag in ("<link", "<img", "<iframe", "src=", "url(", "import", "fetch("))
    assert html.count("<script>") == 1


def test_cache_reads_once_a_minute_and_serves_stale_figures_while_reading_again() -> None:
    clock = [0.0]
    calls: list[int] = []
    pending: list[Any] = []
    cache = DashboardCache(60, 600, clock=lambda: clock[0], background=pending.append)
    load = lambda: calls.append(1) or _board()  # noqa: E731 (a one-line fake loader)
    first = cache.get("k", load)
    clock[0] = 59.0
    assert cache.get("k", load) is first and len(calls) == 1
    clock[0] = 61.0  # stale: served at once, one background read started
    assert cache.get("k", load) is first and cache.get("k", load) is first
    assert len(pending) == 1 and len(calls) == 1
    pending.pop()()
    second = cache.get("k", load)
    assert second is not first and len(calls) == 2
    clock[0] = 61.0 + 601  # too old to serve: the request waits for a read
    assert cache.get("k", load) is not second and len(calls) == 3


def test_a_failed_background_read_keeps_the_stale_figures() -> None:
    clock = [0.0]
    pending: list[Any] = []
    cache = DashboardCache(60, 600, clock=lambda: clock[0], background=pending.append)
    first = cache.get("k", _board)
    clock[0] = 100.0

    def broken() -> Dashboard:
        raise RuntimeError("BigQuery unreachable")

    assert cache.get("k", broken) is first
    pending.pop()()
    assert cache.get("k", broken) is first and len(pending) == 1


def test_a_statement_that_writes_is_refused_before_it_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoClient:
        def query(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("sent")

    config = type("C", (), {"project": "p", "audit_project": "p", "location": "US"})()
    reader = DashboardReader.__new__(DashboardReader)
    reader.config, reader.client = config, NoClient()
    monkeypatch.setattr(data, "render", lambda name, **ids: "delete from `p.envsync_audit.runs` where true")
    with pytest.raises(DashboardReadOnlyError, match="would write"):
        reader.query("environments")


def test_app_serves_the_page_and_json_behind_the_access_check() -> None:
    from fastapi import HTTPException
    from fastapi.testclient import TestClient

    from envsync.ui.app import create_app

    allowed = {"yes": True}

    def access() -> None:
        if not allowed["yes"]:
            raise HTTPException(status_code=401, detail="Not authenticated")

    loads = []
    app = create_app(lambda: loads.append(1) or _board(), auth=access)
    client = TestClient(app, root_path="/envsync")
    page = client.get("/")
    assert page.status_code == 200 and "<h1>envsync" in page.text
    assert 'href="/dags/prod_to_dev_sync/runs/' in page.text
    assert client.get("/data.json").json()["environments"][0]["rows"] == 1234
    assert len(loads) == 1  # cached
    allowed["yes"] = False
    assert client.get("/").status_code == 401


def test_the_plugins_folder_holds_one_plugin_the_envsync_page() -> None:
    """Airflow imports every .py file of the plugins folder not excluded by .airflowignore: only
    envsync_ui.py, whose plugin mounts the app under /envsync and links it from the navigation."""
    from pathlib import Path

    from airflow._shared.module_loading.file_discovery import find_path_from_directory
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory

    folder = Path(__file__).resolve().parents[2] / "plugins"
    files = [Path(p).name for p in find_path_from_directory(str(folder), ".airflowignore", "glob") if p.endswith(".py")]
    assert files == ["envsync_ui.py"]
    plugins, errors = _load_plugins_from_plugin_directory(str(folder))
    assert errors == {}
    [plugin] = plugins
    assert plugin.name == "envsync"
    [app] = plugin.fastapi_apps
    assert app["url_prefix"] == "/envsync" and {r.path for r in app["app"].routes} >= {"/", "/data.json"}
    [view] = plugin.external_views
    assert (view["href"], view["url_route"], view["destination"]) == ("envsync/", "envsync", "nav")


def test_the_coverage_section_draws_the_tables_with_the_largest_gaps_first() -> None:
    start = NOW - dt.timedelta(days=7)
    coverage = sorted(
        (
            table_coverage(
                f"sales.t{i}",
                [],
                [],
                ladder=Ladder.default(),
                time_travel_hours=24 * i,
                jobs_today=0,
                now=NOW,
                start=start,
            )
            for i in range(1, 6)
        ),
        key=lambda c: (-c.largest_gap_seconds, c.table),
    )
    board = _board(coverage=coverage)
    html = render_page(board, coverage_limit=2)
    assert html.count('class="cov"') == 2 and 'data-table="sales.t1"' in html and 'data-table="sales.t5"' not in html
    assert "showing the 2 tables with the largest gaps of 5" in html and 'href="?tables=all"' in html
    assert render_page(board, coverage_limit=None).count('class="cov"') == 5


def test_line_chart_title_stays_above_the_highest_tick_label() -> None:
    """The chart's title (top left) and the label of its highest tick (left axis) do not overlap."""
    points = [Point(dt.datetime(2026, 11, d, tzinfo=dt.UTC), float(d), False, f"run {d}", None) for d in (1, 2, 3)]
    root = _parse(line_chart(points, label="RPO: T minus the backup's time", unit="hours"))
    texts = [t for t in root.iter() if t.tag.endswith("text")]
    title_baseline = float(texts[0].get("y"))
    tick_baselines = [
        float(t.get("y"))
        for t in texts[1:]
        if t.get("text-anchor") == "end" and t.text and t.text.replace(".", "").isdigit()
    ]
    # a tick label (font size 10) reaches about 10 px above its baseline: that must be below the title's baseline
    assert min(tick_baselines) - 10 >= title_baseline, (title_baseline, sorted(tick_baselines)[:2])


def test_page_shows_who_holds_each_environments_lease() -> None:
    idle = render_page(_board())
    assert 'id="leases"' in idle and "nothing is being written" in idle
    lease = data.LeaseRow(
        "staging", data.RunLink("reseed_environments", "scheduled__2026-12-06"), "reseed", "airflow-x", NOW, NOW
    )
    html = render_page(_board(leases=[lease]), ui_root="/airflow")
    root = html[html.index('<table id="leases"') :]
    row = root[: root.index("</table>")]
    assert 'data-env="staging"' in row and "reseed_environments / scheduled__2026-12-06" in row
    assert 'href="/airflow/dags/reseed_environments/runs/scheduled__2026-12-06"' in row and "airflow-x" in row
