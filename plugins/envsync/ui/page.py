"""The HTML of the envsync page: one self-contained document (inline CSS and SVG; nothing fetched).

Links to Airflow runs open in the top window. Inside the Airflow UI the page is shown in an iframe whose
sandbox allows scripts and same-origin access but not top navigation (Airflow 3.3 frames external
views with `allow-scripts allow-same-origin allow-forms allow-downloads`): the one inline script,
TOP_LINKS, follows such a link by clicking a copy of it in the Airflow UI's own document.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from urllib.parse import quote

from envsync.observe.report import human_bytes
from envsync.ui.data import (
    CACHE_SECONDS,
    COVERAGE_DAYS,
    GAP_LIMIT,
    HISTORY_DAYS,
    Dashboard,
    RunLink,
    human_age,
)
from envsync.ui.svg import Mark, Point, day_axis, line_chart, timeline

COVERAGE_ROWS = 200  # tables drawn by default (a browser draws 1,000 timelines in about 2 s)
STATE_LABEL = {"green": "ok", "amber": "warning", "red": "failing", "grey": "no run"}
CSS = """
body { font-family: "DejaVu Sans", system-ui, sans-serif; font-size: 13px; color: #111827; margin: 16px 20px;
       background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 26px 0 6px; }
.meta, .muted { color: #6b7280; } .note { color: #6b7280; font-style: italic; }
table { border-collapse: collapse; } th, td { padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; white-space: nowrap; } tr { border-bottom: 1px solid #e5e7eb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.state { display: inline-block; width: 12px; height: 12px; border-radius: 6px; vertical-align: -1px;
  margin-right: 6px; }
.state-green { background: #16a34a; } .state-amber { background: #f59e0b; } .state-red { background: #dc2626; }
.state-grey { background: #9ca3af; }
.reasons { margin: 0; padding-left: 0; list-style: none; } .gapflag { color: #b91c1c; font-weight: 600; }
.coverage { max-height: 560px; overflow-y: auto; display: inline-block; border: 1px solid #e5e7eb; }
.coverage td { padding: 1px 8px; } .coverage th { position: sticky; top: 0; z-index: 1; }
.bar { display: inline-block; height: 8px; background: #e5e7eb; width: 60px; vertical-align: middle; }
.bar > span { display: block; height: 8px; background: #2563eb; } .bar.full > span { background: #dc2626; }
.legend span { margin-right: 14px; } .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
a { color: #1d4ed8; text-decoration: none; } a:hover { text-decoration: underline; }
"""


TOP_LINKS = """
document.addEventListener('click', function (event) {
  var link = event.target.closest ? event.target.closest('a[target="_top"]') : null;
  if (!link || window.top === window) return;
  event.preventDefault();
  var top = window.top.document, proxy = top.createElement('a');
  proxy.href = link.href;
  top.body.appendChild(proxy);
  proxy.click();
  proxy.remove();
});
"""


def run_href(ui_root: str, run: RunLink) -> str:
    """The Airflow UI's page of a DAG run, e.g. /dags/prod_to_dev_sync/runs/manual__2026-11-21T02%3A00..."""
    return f"{ui_root}/dags/{quote(run.dag_id, safe='')}/runs/{quote(run.run_id, safe='')}"


def _run_link(ui_root: str, run: RunLink | None, text: str | None = None) -> str:
    if run is None:
        return '<span class="muted">—</span>'
    label = escape(text or run.run_id)
    return (
        f'<a class="run-link" href="{escape(run_href(ui_root, run), quote=True)}" target="_top" '
        f'title="{escape(run.dag_id + " / " + run.run_id, quote=True)}">{label}</a>'
    )


def _ts(value: dt.datetime | None) -> str:
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def _num(value: int | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def _environments(board: Dashboard, ui_root: str) -> str:
    rows = []
    for env in board.environments:
        reasons = "".join(f"<li>{escape(r)}</li>" for r in env.reasons)
        version = env.seed_version and f"seed {env.seed_version[:12]}"
        if env.migration_version is not None:
            version = ", ".join(v for v in (version, f"migration {env.migration_version}") if v)
        age = f" ({human_age(env.age_seconds)} old)" if env.age_seconds is not None else ""
        rows.append(
            f'<tr class="env" data-env="{escape(env.name, quote=True)}" data-state="{env.state}">'
            f'<td><span class="state state-{env.state}" title="{STATE_LABEL[env.state]}"></span>'
            f"<b>{escape(env.name)}</b>"
            + (f'<div class="muted project">{escape(env.project)}</div>' if env.project else "")
            + "</td>"
            f'<td><ul class="reasons">{reasons}</ul></td>'
            f"<td>{_run_link(ui_root, env.ok_run, _ts(env.ok_at) if env.ok_run else None)}</td>"
            f'<td class="cut">{_ts(env.cut)}{escape(age)}</td>'
            f'<td class="num tables-ok">{_num(env.tables_ok)}</td>'
            f'<td class="num tables-failed">{_num(env.tables_failed)}</td>'
            f'<td class="num rows">{_num(env.rows)}</td>'
            '<td class="num bytes">'
            f"{escape(human_bytes(env.est_bytes_billed)) if env.est_bytes_billed is not None else '—'}</td>"
            f'<td class="version">{escape(version or "—")}</td>'
            f'<td class="num">{env.runs:,} / {env.failed_runs:,}</td>'
            f"<td>{_run_link(ui_root, env.last_run, env.last_status) if env.last_run else '—'}</td></tr>"
        )
    return (
        "<h2>Environments</h2>"
        '<table id="environments"><tr><th>environment</th><th>state</th><th>last successful run</th>'
        "<th>cut T (age)</th><th>tables ok</th><th>failed</th><th>rows</th><th>est. bytes billed</th>"
        f"<th>seed / migration</th><th>runs / failed ({HISTORY_DAYS} d)</th><th>last run</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _leases(board: Dashboard, ui_root: str) -> str:
    """Who holds each environment's lease now (one writer per environment across all DAGs)."""
    head = "<h2>Being written now</h2>"
    if not board.leases:
        return head + '<p id="leases" class="none">No run holds an environment\'s lease: nothing is being written.</p>'
    rows = "".join(
        f'<tr class="lease" data-env="{escape(lease.environment, quote=True)}">'
        f"<td><b>{escape(lease.environment)}</b></td>"
        f"<td>{_run_link(ui_root, lease.run, f'{lease.run.dag_id} / {lease.run.run_id}')}</td>"
        f"<td>{escape(lease.task_id)}</td><td>{_ts(lease.since)}</td><td>{_ts(lease.heartbeat)}</td>"
        f"<td>{escape(lease.deployment)}</td></tr>"
        for lease in board.leases
    )
    return (
        head
        + '<table id="leases"><tr><th>environment</th><th>held by run</th><th>task</th><th>since</th>'
        + "<th>last heartbeat</th><th>Airflow deployment</th></tr>"
        + rows
        + "</table>"
    )


def _coverage(board: Dashboard, ui_root: str, limit: int | None) -> str:
    start, end = board.coverage_from, board.generated_at
    legend = (
        '<div class="legend">'
        '<span><i class="swatch" style="background:#bfdbfe"></i>time travel</span>'
        '<span><i class="swatch" style="background:#2563eb"></i>ladder snapshot</span>'
        '<span><i class="swatch" style="background:#7c3aed"></i>pinned backup</span>'
        '<span><i class="swatch" style="background:#059669"></i>daily export</span>'
        '<span><i class="swatch" style="background:#fecaca"></i>'
        f"gap over {GAP_LIMIT.total_seconds() / 3600:.0f} h</span>"
        "</div>"
    )
    if not board.coverage:
        return (
            f"<h2>Backup coverage (last {COVERAGE_DAYS} days)</h2>"
            '<p class="note">no backup recorded yet: the backup_ladder DAG has not run</p>'
        )
    most_jobs = max(c.jobs_today for c in board.coverage)
    gaps = sum(1 for c in board.coverage if c.gap)
    rows = []
    shown = board.coverage if limit is None else board.coverage[:limit]
    for cov in shown:
        marks = [Mark(p.at, p.kind, f"{p.at:%Y-%m-%d %H:%M} UTC: {p.label}") for p in cov.points]
        svg = timeline(marks, start, end, cov.time_travel_from, gap=(cov.gap_from, cov.gap_to) if cov.gap else None)
        share = min(1.0, cov.jobs_today / board.snapshot_job_limit)
        full = " full" if cov.jobs_today >= board.snapshot_job_limit else ""
        gap = (
            f'<span class="gapflag">{human_age(cov.largest_gap_seconds)}</span>'
            if cov.gap
            else escape(human_age(cov.largest_gap_seconds))
        )
        counts = {k: sum(1 for p in cov.points if p.kind == k) for k in ("snapshot", "pinned", "export")}
        rows.append(
            f'<tr class="cov" data-table="{escape(cov.table, quote=True)}" data-gap="{str(cov.gap).lower()}">'
            f"<td>{escape(cov.table)}</td><td>{svg}</td>"
            f'<td class="num snapshots">{counts["snapshot"]}</td><td class="num pinned">{counts["pinned"]}</td>'
            f'<td class="num exports">{counts["export"]}</td><td class="num gap">{gap}</td>'
            f'<td class="num jobs"><span class="bar{full}"><span style="width:{share * 100:.0f}%"></span></span> '
            f"{cov.jobs_today}/{board.snapshot_job_limit}</td>"
            f"<td>{_run_link(ui_root, cov.last_run, cov.last_status)}</td></tr>"
        )
    return (
        f"<h2>Backup coverage (last {COVERAGE_DAYS} days)</h2>"
        f'<p class="meta">{len(board.coverage):,} prod tables; {gaps:,} with a gap; the most snapshot jobs '
        f"used today by one table: {most_jobs} of {board.snapshot_job_limit} (BigQuery's limit per table per day)</p>"
        + legend
        + '<div class="coverage"><table id="coverage"><tr><th>prod table</th>'
        f"<th>{day_axis(start, end)}</th><th>snapshots</th><th>pinned</th><th>exports</th>"
        "<th>largest gap</th><th>snapshot jobs today</th><th>last backup run</th></tr>"
        + "".join(rows)
        + "</table></div>"
        + (
            f'<p class="meta" id="coverage-more">showing the {len(shown):,} tables with the largest gaps of '
            f'{len(board.coverage):,}: <a href="?tables=all">show all</a></p>'
            if len(shown) < len(board.coverage)
            else ""
        )
    )


def _drills(board: Dashboard, ui_root: str) -> str:
    rto, rpo = [], []
    for run in board.drills:
        href = run_href(ui_root, run.run)
        what = f"{run.run.run_id}: {run.tables} tables, {run.failed_tables} failed" + (
            f" ({run.failed_names})" if run.failed_names else ""
        )
        rto.append(
            Point(
                run.at,
                run.rto_seconds,
                run.failed_tables > 0,
                f"{what}; RTO {run.rto_seconds if run.rto_seconds is not None else '?'} s",
                href,
            )
        )
        rpo.append(
            Point(
                run.at,
                None if run.rpo_seconds is None else run.rpo_seconds / 3600,
                run.failed_tables > 0,
                f"{what}; RPO {(run.rpo_seconds or 0) / 3600:.2f} h",
                href,
            )
        )
    failed = sum(1 for r in board.drills if r.failed_tables)
    latest = "".join(
        f'<tr class="drill" data-failed="{str(r.failed_tables > 0).lower()}"><td>{_run_link(ui_root, r.run)}</td>'
        f"<td>{_ts(r.at)}</td><td class='num'>{r.tables}</td><td class='num'>{r.failed_tables}</td>"
        f"<td class='num'>{'—' if r.rto_seconds is None else f'{r.rto_seconds:.1f}'}</td>"
        f"<td class='num'>{'—' if r.rpo_seconds is None else f'{r.rpo_seconds / 3600:.2f}'}</td>"
        f"<td>{escape(r.failed_names or '')}</td></tr>"
        for r in reversed(board.drills[-10:])
    )
    table = (
        (
            '<table id="drills"><tr><th>drill run</th><th>at</th><th>tables</th><th>failed</th><th>RTO s</th>'
            "<th>RPO h</th><th>failed tables</th></tr>" + latest + "</table>"
        )
        if board.drills
        else ""
    )
    return (
        f"<h2>Recovery drills (last {HISTORY_DAYS} days)</h2>"
        f'<p class="meta">{len(board.drills):,} drill runs, {failed:,} with a failed table (red crosses); '
        "each point is the run's worst table and links to the run</p>"
        + line_chart(rto, label="RTO: restore duration", unit="seconds", css_class="chart rto")
        + line_chart(rpo, label="RPO: T minus the backup's time", unit="hours", css_class="chart rpo")
        + table
    )


def _parity(board: Dashboard, ui_root: str) -> str:
    head = "<h2>Parity with prod</h2>"
    if not board.parity.present:
        return head + _absent(board.parity.table, board.parity.missing_columns, "parity")
    if not board.parity_findings:
        return head + '<p class="meta" id="parity">no difference in the latest parity check of any environment</p>'
    counts: dict[str, dict[str, int]] = {}
    for f in board.parity_findings:
        per_env = counts.setdefault(f.environment, {})
        per_env[f.status] = per_env.get(f.status, 0) + 1
    summary = "; ".join(
        f"{escape(env)}: " + ", ".join(f"{n} {escape(status)}" for status, n in sorted(c.items()))
        for env, c in sorted(counts.items())
    )
    rows = "".join(
        f'<tr class="finding" data-env="{escape(f.environment, quote=True)}" '
        f'data-status="{escape(f.status, quote=True)}">'
        f"<td>{escape(f.environment)}</td><td>{escape(f.status)}</td><td>{escape(f.object)}</td>"
        f"<td>{escape(f.finding)}</td><td>{escape(f.detail or '')}</td>"
        f"<td>{_run_link(ui_root, f.run, _ts(f.at))}</td></tr>"
        for f in board.parity_findings[:200]
    )
    more = (
        f'<p class="muted">and {len(board.parity_findings) - 200:,} more</p>'
        if len(board.parity_findings) > 200
        else ""
    )
    return (
        head + f'<p class="meta">the latest check per environment: {summary}</p>'
        '<table id="parity"><tr><th>environment</th><th>status</th><th>object</th><th>finding</th>'
        "<th>detail</th><th>check run</th></tr>" + rows + "</table>" + more
    )


def _migrations(board: Dashboard, ui_root: str) -> str:
    head = "<h2>Schema migrations</h2>"
    if not board.migrations.present:
        return head + _absent(board.migrations.table, board.migrations.missing_columns, "promotion")
    rows = "".join(
        f'<tr class="migration" data-env="{escape(m.environment, quote=True)}"><td>{escape(m.environment)}</td>'
        f"<td class='num version'>{'—' if m.version is None else m.version}</td><td>{escape(m.name or '')}</td>"
        f"<td>{_run_link(ui_root, m.run, _ts(m.applied_at)) if m.run else _ts(m.applied_at)}</td>"
        f"<td>{escape(str(m.last_version))} {escape(m.last_status or '')}"
        f"{(': ' + escape(m.last_error[:160])) if m.last_error else ''}</td>"
        f"<td>{_run_link(ui_root, m.last_run) if m.last_run else '—'}</td></tr>"
        for m in board.migration_status
    )
    return (
        head + '<table id="migrations"><tr><th>environment</th><th>version</th><th>name</th><th>applied</th>'
        "<th>newest ledger row</th><th>its run</th></tr>" + rows + "</table>"
    )


def _absent(table: str, missing: list[str], feature: str) -> str:
    if missing:
        return f'<p class="note">{escape(table)} exists but lacks the columns {escape(", ".join(missing))}</p>'
    return f'<p class="note">shown once {escape(table)} exists (it is written by the {feature} runs)</p>'


def _where(board: Dashboard) -> str:
    """Where envsync's environments live: `project X`, or prod's project and every other project with
    the environments it holds (`prod in project A; dev, qa in B; backup, drill in C`)."""
    if not board.projects:
        return f"project {escape(board.project)}"
    prod = board.projects.get("prod", board.project)
    held: dict[str, list[str]] = {}
    for env, project in board.projects.items():
        if env != "prod":
            held.setdefault(project, []).append(env)
    others = "; ".join(f"{', '.join(envs)} in {escape(project)}" for project, envs in held.items())
    return f"prod in project {escape(prod)}" + (f"; {others}" if others else "")


def render_page(board: Dashboard, *, ui_root: str = "", coverage_limit: int | None = COVERAGE_ROWS) -> str:
    """The whole page. `ui_root`: the Airflow UI's root path (links to runs are `<ui_root>/dags/...`);
    `coverage_limit`: how many tables the coverage section draws (those with the largest gaps; None: all)."""
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in board.notes)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>envsync</title>'
        f"<style>{CSS}</style></head><body>"
        "<h1>envsync: every environment at a glance</h1>"
        f'<p class="meta">{_where(board)}{"; " if board.projects else ", "}audit dataset '
        f"{escape(board.audit_dataset)}; "
        f"read at {_ts(board.generated_at)} in {board.seconds:.2f} s (kept for {CACHE_SECONDS} s)</p>"
        + notes
        + _environments(board, ui_root)
        + _leases(board, ui_root)
        + _coverage(board, ui_root, coverage_limit)
        + _drills(board, ui_root)
        + _parity(board, ui_root)
        + _migrations(board, ui_root)
        + f"<script>{TOP_LINKS}</script></body></html>"
    )
