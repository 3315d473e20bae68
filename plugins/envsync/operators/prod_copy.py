"""The plan task of prod_copy; execution reuses the sync's dataset, views and report tasks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from envsync.core.clients import DEFAULT_CONN_ID
from envsync.operators.common import manifest_store, recorded_cut, run_prefix
from envsync.operators.dev_sync import check_plan_salt, plan_entries
from envsync.operators.leasing import renews_taken_leases

if TYPE_CHECKING:
    from airflow.sdk import Context

MODES = ("copy", "reset")


class PlanProdCopyOperator(BaseOperator):
    """Fix T (as_of, or the recorded T for a reset), check it is inside every prod dataset's time-travel
    window, plan full clones of the tables that existed at T, with their schema as of T."""

    template_fields: Sequence[str] = ("as_of", "mode", "datasets")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        as_of: Any = None,
        mode: Any = "copy",
        datasets: Any = None,
        gcp_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.as_of = as_of
        self.mode = mode
        self.datasets = datasets
        self.gcp_conn_id = gcp_conn_id

    @renews_taken_leases
    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow.sdk.exceptions import AirflowFailException

        from envsync.bigquery.discovery import DiscoveryError
        from envsync.bigquery.timetravel import prod_windows
        from envsync.core.clients import bigquery_client
        from envsync.core.config import ConfigError, load_config
        from envsync.observe.report import privacy_table
        from envsync.operators.leasing import take_leases
        from envsync.operators.params import check_datasets
        from envsync.sync.prodcopy import CURRENT, AsOfError, check_as_of, parse_as_of, pin_plans_to_cut
        from envsync.sync.run import build_plans
        from envsync.sync.summary import plan_table

        try:
            config = load_config()
            if self.mode not in MODES:
                raise ValueError(f"param mode must be one of {list(MODES)}, got {self.mode!r}")
            datasets = check_datasets(config, self.datasets)
            store = manifest_store(config, self.gcp_conn_id)
            store.ensure_bucket(config.location)
            prefix = run_prefix(store, context)
            take_leases(config, self.gcp_conn_id, context, self.task_id, ["prodcopy"])
            now = dt.datetime.now(dt.UTC)
            recorded = recorded_cut(store, prefix)
            if recorded is not None:
                cut = recorded  # a retry of this run keeps its T
            elif self.mode == "reset":
                current = store.read(CURRENT)
                if current is None:
                    raise ValueError("mode reset: no prod-copy has been made yet (run mode copy first)")
                cut = dt.datetime.fromisoformat(current["cut"])
                self.log.info("reset: re-creating prod-copy as of its recorded T = %s", cut.isoformat())
            else:
                cut = parse_as_of(self.as_of, now)
            # reads prod's metadata; its dry runs (schemas as of T) run in the jobs project of prodcopy
            client = bigquery_client(config.jobs_project_of("prodcopy"), config.location, self.gcp_conn_id)
            # each dataset's own window (max_time_travel_hours), narrowed by prod.time_travel_hours
            for window in prod_windows(config, client, datasets).values():
                check_as_of(cut, now, window)
            plans = build_plans(config, client, datasets=datasets, tables=[], env="prodcopy")
            pin_plans_to_cut(config, client, plans, cut)
            check_plan_salt(config, plans, dry_run=False, log=self.log)
        except (ConfigError, DiscoveryError, AsOfError, ValueError) as error:
            raise AirflowFailException(str(error)) from error
        manifest = {
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "cut": cut.isoformat(),
            "env": "prodcopy",
            "mode": self.mode,
            "window": None,
            "params": {"datasets": datasets, "as_of": self.as_of, "mode": self.mode, "dry_run": False},
            **plan_entries(config, plans),
        }
        uri = store.write(f"{prefix}/plan.json", manifest)
        if self.mode == "copy":
            store.write(CURRENT, {"cut": cut.isoformat(), "run_id": context["run_id"], "datasets": datasets})
        self.log.info(
            "prod-copy (%s) as of T = %s:\n%s\nmanifest: %s", self.mode, cut.isoformat(), plan_table(plans), uri
        )
        self.log.info(
            "privacy report (prodcopy%s):\n%s",
            "" if config.masks_apply("prodcopy") else ": an exact copy, privacy.environments does not list prodcopy",
            privacy_table(manifest["privacy"]),
        )
        return [{"dataset": p.dataset, "manifest": uri} for p in plans]
