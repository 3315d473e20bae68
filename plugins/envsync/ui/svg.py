"""Server-side SVG plots of the envsync page: inline markup, no JavaScript, nothing fetched at view time.

Every mark carries a <title> (the browser's tooltip) and, where a run produced it, a link to that run.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

COLORS = {
    "snapshot": "#2563eb",
    "pinned": "#7c3aed",
    "export": "#059669",
    "time_travel": "#bfdbfe",
    "ok": "#2563eb",
    "failed": "#dc2626",
    "grid": "#e5e7eb",
    "axis": "#6b7280",
    "gap": "#fecaca",
}


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _x(at: dt.datetime, start: dt.datetime, end: dt.datetime, left: float, width: float) -> float:
    span = (end - start).total_seconds() or 1.0
    return left + width * min(1.0, max(0.0, (at - start).total_seconds() / span))


@dataclass(frozen=True)
class Mark:
    """One restore point on a timeline: when, which kind (snapshot, pinned, export), its tooltip."""

    at: dt.datetime
    kind: str
    title: str


def day_axis(start: dt.datetime, end: dt.datetime, *, width: int = 520, height: int = 18) -> str:
    """The day labels above the coverage timelines (UTC midnights between start and end)."""
    parts = [
        f'<svg class="axis" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="days">'
    ]
    day = dt.datetime.combine(start.date() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    while day <= end:
        x = _x(day, start, end, 0, width)
        parts.append(f'<line x1="{x:.1f}" y1="12" x2="{x:.1f}" y2="{height}" stroke="{COLORS["axis"]}"/>')
        parts.append(
            f'<text x="{x:.1f}" y="10" font-size="10" text-anchor="middle" fill="{COLORS["axis"]}">{day:%b %d}</text>'
        )
        day += dt.timedelta(days=1)
    parts.append("</svg>")
    return "".join(parts)


def timeline(
    marks: Sequence[Mark],
    start: dt.datetime,
    end: dt.datetime,
    time_travel_from: dt.datetime,
    *,
    gap: tuple[dt.datetime, dt.datetime] | None = None,
    width: int = 520,
    height: int = 16,
) -> str:
    """One table's restore points over [start, end]: the time-travel window as a band, snapshots as ticks,
    pinned backups as diamonds, exports as squares; `gap` (the largest one, when flagged) in red."""
    parts = [
        f'<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg" role="img">'
    ]
    parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f9fafb"/>')
    day = dt.datetime.combine(start.date() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    while day <= end:
        x = _x(day, start, end, 0, width)
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="{COLORS["grid"]}"/>')
        day += dt.timedelta(days=1)
    if gap is not None:
        x0, x1 = _x(gap[0], start, end, 0, width), _x(gap[1], start, end, 0, width)
        parts.append(
            f'<rect class="gap" x="{x0:.1f}" y="0" width="{max(1.0, x1 - x0):.1f}" height="{height}" '
            f'fill="{COLORS["gap"]}"><title>'
            f"{_attr(f'no restore point from {gap[0]:%Y-%m-%d %H:%M} to {gap[1]:%Y-%m-%d %H:%M} UTC')}"
            "</title></rect>"
        )
    if time_travel_from < end:
        x0 = _x(time_travel_from, start, end, 0, width)
        parts.append(
            f'<rect class="time-travel" x="{x0:.1f}" y="3" width="{width - x0:.1f}" height="{height - 6}" '
            f'fill="{COLORS["time_travel"]}"><title>'
            f"{_attr(f'time travel: any instant since {time_travel_from:%Y-%m-%d %H:%M} UTC')}"
            "</title></rect>"
        )
    mid = height / 2
    for mark in marks:
        if not start <= mark.at <= end:
            continue
        x = _x(mark.at, start, end, 0, width)
        title = f"<title>{_attr(mark.title)}</title>"
        color = COLORS.get(mark.kind, COLORS["snapshot"])
        if mark.kind == "pinned":
            r = height / 2 - 2
            parts.append(
                f'<path class="pinned" d="M{x:.1f} {mid - r:.1f} L{x + r:.1f} {mid:.1f} L{x:.1f} {mid + r:.1f} '
                f'L{x - r:.1f} {mid:.1f} Z" fill="{color}">{title}</path>'
            )
        elif mark.kind == "export":
            parts.append(
                f'<rect class="export" x="{x - 3:.1f}" y="{mid - 3:.1f}" width="6" height="6" '
                f'fill="{color}">{title}</rect>'
            )
        else:
            parts.append(
                f'<rect class="snapshot" x="{x - 1:.1f}" y="1" width="2.5" height="{height - 2}" '
                f'fill="{color}">{title}</rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Point:
    """One point of a line chart: x, y (None: not measured), failed or not, tooltip, link."""

    at: dt.datetime
    value: float | None
    failed: bool
    title: str
    href: str | None = None


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def line_chart(
    points: Sequence[Point], *, label: str, unit: str, width: int = 900, height: int = 180, css_class: str = "chart"
) -> str:
    """Values over time with a line through the measured points; failed points are red crosses."""
    left, right, top, bottom = 56, 12, 24, 26  # top: room for the chart's title above the highest tick
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="{_attr(css_class)}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_attr(label)}">'
    ]
    parts.append(f'<text x="4" y="11" font-size="11" fill="{COLORS["axis"]}">{escape(label)} ({escape(unit)})</text>')
    measured = [p for p in points if p.value is not None]
    if not points:
        parts.append(
            f'<text x="{left}" y="{top + plot_h / 2:.0f}" font-size="12" fill="{COLORS["axis"]}">'
            "no drill recorded yet</text></svg>"
        )
        return "".join(parts)
    start, end = min(p.at for p in points), max(p.at for p in points)
    if end <= start:
        start, end = start - dt.timedelta(hours=12), end + dt.timedelta(hours=12)
    top_value = _nice_max(max((p.value or 0.0) for p in measured) if measured else 1.0)

    def y(value: float) -> float:
        return top + plot_h * (1 - value / top_value)

    for i in range(5):
        value = top_value * i / 4
        parts.append(
            f'<line x1="{left}" y1="{y(value):.1f}" x2="{left + plot_w}" y2="{y(value):.1f}" '
            f'stroke="{COLORS["grid"]}"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="{COLORS["axis"]}">{value:g}</text>'
        )
    ticks = 6
    for i in range(ticks + 1):
        at = start + (end - start) * i / ticks
        x = _x(at, start, end, left, plot_w)
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        parts.append(
            f'<text x="{x:.1f}" y="{height - 8}" font-size="10" text-anchor="{anchor}" '
            f'fill="{COLORS["axis"]}">{at:%b %d}</text>'
        )
    line = " ".join(
        f"{_x(p.at, start, end, left, plot_w):.1f},{y(p.value):.1f}" for p in measured if p.value is not None
    )
    if line:
        parts.append(f'<polyline points="{line}" fill="none" stroke="{COLORS["ok"]}" stroke-width="1.5"/>')
    for p in points:
        x = _x(p.at, start, end, left, plot_w)
        py = y(p.value) if p.value is not None else top + plot_h
        title = f"<title>{_attr(p.title)}</title>"
        if p.failed:
            mark = (
                f'<path class="failed" d="M{x - 4:.1f} {py - 4:.1f} L{x + 4:.1f} {py + 4:.1f} '
                f"M{x - 4:.1f} {py + 4:.1f} "
                f'L{x + 4:.1f} {py - 4:.1f}" stroke="{COLORS["failed"]}" stroke-width="2.5">{title}</path>'
            )
        else:
            mark = f'<circle class="ok" cx="{x:.1f}" cy="{py:.1f}" r="3" fill="{COLORS["ok"]}">{title}</circle>'
        parts.append(f'<a href="{_attr(p.href)}" target="_top">{mark}</a>' if p.href else mark)
    parts.append("</svg>")
    return "".join(parts)
