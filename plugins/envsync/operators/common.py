"""Pieces every envsync DAG shares: the manifest store of a run, and the run report task.

A run's plan task writes `plan.json` with at least `units` (names of the mapped work units), `planned`
(one result row per object, status "planned"), `params` (with `dry_run`) and `cut`; each mapped task
writes `results/<unit>.json`; the report task gathers them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from envsync.clients import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from envsync.config import EnvsyncConfig
    from envsync.manifest import ManifestStore


def manifest_store(config: EnvsyncConfig, conn_id: str) -> ManifestStore:
    from envsync.clients import storage_client
    from envsync.manifest import ManifestStore

    return ManifestStore(storage_client(config.project, conn_id), config.state.bucket)


def run_prefix(store: ManifestStore, context: Context) -> str:
    return store.run_prefix(context["dag"].dag_id, context["run_id"])


class RunReportOperator(BaseOperator):
    """Gather every unit's results, log the run report, store it, and fail if anything failed."""

    ui_color = "#fef7e0"

    def __init__(self, *, gcp_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.config import load_config
        from envsync.report import human_bytes, results_table, summarise
        from envsync.window import Window

        config = load_config()
        store = manifest_store(config, self.gcp_conn_id)
        prefix = run_prefix(store, context)
        manifest = store.read(f"{prefix}/plan.json")
        if manifest is None:
            raise AirflowFailException("the plan task recorded no plan; see its log")
        dry_run = bool(manifest["params"].get("dry_run"))
        results: list[dict[str, Any]] = []
        missing: list[str] = []
        for unit in manifest["units"]:
            recorded = None if dry_run else store.read(f"{prefix}/results/{unit}.json")
            if recorded is not None:
                results.extend(recorded["results"])
                continue
            if not dry_run:
                missing.append(unit)
            status = "planned" if dry_run else "not run"
            results.extend({**row, "status": status} for row in manifest["planned"] if row["unit"] == unit)
        window = manifest.get("window")
        win = (Window(dt.datetime.fromisoformat(window["start"]), dt.datetime.fromisoformat(window["end"]),
                      window["quarters"]) if window else None)
        summary = summarise(results, cut=dt.datetime.fromisoformat(manifest["cut"]), window=win)
        summary.update(dry_run=dry_run, anchor=manifest.get("anchor"), seed_version=manifest.get("seed_version"),
                       manifest=store.uri(f"{prefix}/report.json"))
        brief = {k: v for k, v in summary.items() if k != "tables"}
        store.write(f"{prefix}/report.json", {**manifest, "results": results, "summary": brief})
        header = [f"T = {manifest['cut']}"]
        if manifest.get("anchor"):
            header.insert(0, f"A = {manifest['anchor']}")
        if win:
            header.append(f"window [{win.start.isoformat()}, {win.end.isoformat()})")
        if manifest.get("seed_version"):
            header.append(f"seed version {manifest['seed_version']['version']}")
        self.log.info(
            "envsync run report%s: %s\n%s\n%d objects, %d ok, %d failed, %s rows, est. %s billed, %d BigQuery jobs",
            " (dry run)" if dry_run else "", ", ".join(header), results_table(results), summary["objects"],
            summary["ok"], len(summary["failed"]), f"{summary['rows']:,}", human_bytes(summary["est_bytes_billed"]),
            summary["jobs"],
        )
        if missing or summary["failed"]:
            # what the other tasks recorded will not change on a retry of this task
            raise AirflowFailException(
                "the run did not complete: "
                + (f"failed: {summary['failed']}; " if summary["failed"] else "")
                + (f"no results from {missing}" if missing else "")
            )
        return brief
