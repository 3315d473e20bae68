"""Readable run reports (a table in the task log) and the small summary that goes to XCom."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from envsync.core.window import Window

# rows of a run that record a step around the copies (a cut's pins, publishing, rollback and migration
# ledger), not copied objects: the counts of tables and rows in alerts and audit leave them out (their
# failures still show)
BOOKKEEPING_ACTIONS = ("drop", "skip", "exclude", "pre_cut_pin", "publish", "rollback", "migrations")


def result_row(
    table: str, target: str, action: str, reason: str, *, est_bytes_billed: int = 0, **extra: Any
) -> dict[str, Any]:
    """One object's row in a run's results and report (before it has run: status "pending")."""
    return {
        "table": table,
        "target": target,
        "action": action,
        "reason": reason,
        "rows": None,
        "est_bytes_billed": est_bytes_billed,
        "bytes_billed": 0,
        "jobs": 0,
        "seconds": 0.0,
        "status": "pending",
        "error": None,
        "warnings": [],
        "retryable": False,
        **extra,
    }


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def format_rows(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def render_table(headers: list[str], rows: Iterable[list[str]]) -> str:
    rows = [list(map(str, r)) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    return "\n".join(out)


def results_table(results: list[dict[str, Any]]) -> str:
    return render_table(
        ["table", "action", "rows", "est. bytes billed", "seconds", "status"],
        [
            [
                r["table"],
                r["action"],
                format_rows(r.get("rows")),
                human_bytes(r.get("est_bytes_billed")),
                f"{r.get('seconds') or 0:.1f}",
                r["status"]
                + (
                    f": {r['error']}"
                    if r.get("error")
                    else f": {r['reason']}"
                    if r["status"] == "skipped" and r.get("reason")
                    else ""
                ),
            ]
            for r in results
        ],
    )


def privacy_of(
    env: str, table: str, target: str, masks: list[dict[str, Any]], unmasked: dict[str, list[str]]
) -> dict[str, Any]:
    """One copied table's privacy entries (masks as envsync.privacy.masking.ColumnMask dicts)."""
    masked = [
        {
            "env": env,
            "table": table,
            "target": target,
            "column": m["column"],
            "mask": m["rule"] if isinstance(m["rule"], str) else "fixed",
            "origin": m["origin"],
            "policy_tags": m.get("policy_tags") or [],
        }
        for m in masks
    ]
    tagged = [
        {"env": env, "table": table, "target": target, "column": column, "policy_tags": tags}
        for column, tags in sorted(unmasked.items())
    ]
    return {"masked": masked, "unmasked_tagged": tagged}


def merge_privacy(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "masked": [m for p in parts for m in p["masked"]],
        "unmasked_tagged": [u for p in parts for u in p["unmasked_tagged"]],
    }


def privacy_report(privacy: dict[str, Any] | None, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The plan's privacy entries with the verification's count of rows still holding prod's value
    (`unmasked_rows`, None when the table did not run) and the table's status."""
    privacy = privacy or {}
    by_table = {r["table"]: r for r in results}
    counts = {(r["table"], m["column"]): m.get("unmasked_rows") for r in results for m in r.get("masked") or []}
    masked = [
        {
            **m,
            "unmasked_rows": counts.get((m["table"], m["column"])),
            "status": (by_table.get(m["table"]) or {}).get("status"),
        }
        for m in privacy.get("masked") or []
    ]
    return {"masked": masked, "unmasked_tagged": list(privacy.get("unmasked_tagged") or [])}


def privacy_table(privacy: dict[str, Any], results: list[dict[str, Any]] | None = None) -> str:
    """The privacy report as text: masked columns (with the verification's count of rows still holding
    prod's value, once run) and policy-tagged columns that reach an environment unmasked (a warning)."""
    counts = {(r["table"], m["column"]): m.get("unmasked_rows") for r in results or [] for m in r.get("masked") or []}
    masked = privacy.get("masked") or []
    unmasked = privacy.get("unmasked_tagged") or []
    lines = []
    if masked:
        lines.append(
            render_table(
                ["env", "table", "column", "mask", "why", "rows = prod"],
                [
                    [
                        m["env"],
                        m["target"],
                        m["column"],
                        m["mask"],
                        "policy tag " + ", ".join(t.rsplit("/", 1)[-1] for t in m["policy_tags"])
                        if m["origin"] == "policy_tag"
                        else "config",
                        "-"
                        if counts.get((m["table"], m["column"])) is None
                        else str(counts[(m["table"], m["column"])]),
                    ]
                    for m in masked
                ],
            )
        )
    else:
        lines.append("no masked columns")
    for row in unmasked:
        lines.append(
            f"WARNING: {row['target']}.{row['column']} carries policy tag(s) {row['policy_tags']} and "
            f"reaches {row['env']} unmasked"
        )
    return "\n".join(lines)


def summarise(results: list[dict[str, Any]], *, cut: dt.datetime, window: Window | None) -> dict[str, Any]:
    """The small, JSON-serialisable summary a run leaves in XCom."""
    counted = [r for r in results if r["action"] not in ("drop", "skip", "exclude")]
    return {
        "cut": cut.isoformat(),
        "window": window.as_dict() if window else None,
        "objects": len(counted),
        "ok": sum(1 for r in counted if r["status"] == "ok"),
        "failed": [r["table"] for r in results if r["status"] == "failed"],
        "dropped": [r["target"] for r in results if r["status"] == "dropped"],
        "rows": sum(int(r.get("rows") or 0) for r in counted),
        "est_bytes_billed": sum(int(r.get("est_bytes_billed") or 0) for r in counted),
        "bytes_billed": sum(int(r.get("bytes_billed") or 0) for r in counted),
        "jobs": sum(int(r.get("jobs") or 0) for r in results),
        # requests and jobs refused by BigQuery's rate or quota limits and retried (envsync.core.limits)
        "retries": sum(int(r.get("retries") or 0) for r in results),
        "retry_reasons": _merged(r.get("retry_reasons") for r in results),
        "tables": results,
    }


def _merged(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for key, n in (count or {}).items():
            total[key] = total.get(key, 0) + int(n)
    return dict(sorted(total.items()))


def parity_summary_text(summary: dict[str, Any]) -> str:
    """The parity part of a run report: per environment, unexpected and expected differences."""
    envs = summary.get("environments") or {}
    per_env = "; ".join(
        f"{env}: {c.get('drift', 0)} drift, {c.get('expected', 0)} expected, {c.get('unknown', 0)} not checked"
        for env, c in sorted(envs.items())
    )
    head = (
        f"parity with prod ({', '.join(summary.get('datasets') or [])}): "
        f"{summary.get('drift', 0)} unexpected difference(s)"
    )
    top = "".join(f"\n  {line}" for line in summary.get("top_drift") or [])
    return f"{head}; {per_env or 'no environment checked'}{top}"


def print_latest(dag_id: str = "prod_to_dev_sync") -> int:
    """Print the newest stored run report of a DAG (used by `make demo`)."""
    from envsync.core.clients import storage_client
    from envsync.core.config import load_config
    from envsync.core.manifest import ManifestStore

    config = load_config()
    store = ManifestStore(storage_client(config.state_project), config.state.bucket)
    report = store.latest_report(dag_id)
    if report is None:
        print(f"no run report of {dag_id} in gs://{config.state.bucket}")
        return 1
    summary = report["summary"]
    print(f"\n{dag_id} run {report['run_id']}")
    print(f"  anchor A = {report['anchor']}   cut T = {report['cut']}")
    print(
        f"  window   = [{report['window']['start']}, {report['window']['end']})  "
        f"({report['window']['quarters']} quarters)\n"
    )
    print(results_table(report["results"]))
    print(
        f"\n{summary['objects']} objects: {summary['ok']} ok, {len(summary['failed'])} failed, "
        f"{len(summary['dropped'])} dev-only dropped; {summary['rows']:,} rows; "
        f"est. {human_bytes(summary['est_bytes_billed'])} billed; {summary['jobs']} BigQuery jobs; "
        f"{summary.get('retries', 0)} retries under BigQuery's rate limits"
    )
    print(f"manifest: {summary['manifest']}")
    return 0 if not summary["failed"] else 1


if __name__ == "__main__":
    import sys

    sys.exit(print_latest(*sys.argv[1:2]))
