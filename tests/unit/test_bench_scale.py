"""bench/bench_scale.py's prod mix: every kind the benchmark promises is generated, and envsync's planner
gives each kind the strategy the benchmark means to measure. Pure: no BigQuery."""

from __future__ import annotations

import collections
import datetime as dt
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from envsync.bigquery.discovery import DatasetInfo, TableInfo
from envsync.core.config import parse_config
from envsync.core.window import quarter_window
from envsync.sync.plan import plan_dataset

REPO = Path(__file__).resolve().parents[2]
PROJECT = "envsync-demo"
ANCHOR = dt.datetime(2026, 11, 21, 2, tzinfo=dt.UTC)


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "bench" / "bench_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

# What each kind's CREATE statement produces, as BigQuery describes it (tables.get).
COLUMNS = {
    "day": [("id", "INTEGER"), ("label", "STRING"), ("event_date", "DATE")],
    "hour": [("id", "INTEGER"), ("label", "STRING"), ("event_at", "TIMESTAMP")],
    "flat": [("id", "INTEGER"), ("label", "STRING"), ("amount", "FLOAT")],
}


def table_info(spec, view_query: str | None) -> TableInfo:
    kind = spec.kind
    columns = COLUMNS["hour" if kind == "hour" else "flat" if kind == "flat" else "day"]
    partitioning = {
        "day": {"type": "DAY", "field": "event_date"},
        "day_rpf": {"type": "DAY", "field": "event_date"},
        "hour": {"type": "HOUR", "field": "event_at"},
    }.get(kind)
    return TableInfo(
        dataset=spec.dataset,
        table=spec.name,
        kind="VIEW" if kind == "view" else "TABLE",
        schema=[] if kind == "view" else [{"name": n, "type": t, "mode": "NULLABLE"} for n, t in columns],
        partitioning=partitioning,
        require_partition_filter=kind == "day_rpf",
        view_query=view_query,
    )


def statements(spec, hour_span_days: int = 184):
    return bench.create_statements(
        spec, PROJECT, hour_start=quarter_window(ANCHOR, 2).start, hour_span_days=hour_span_days, ref_date=ANCHOR.date()
    )


@pytest.mark.parametrize("size", [100, 1000])
def test_the_mix_has_every_kind_in_the_cycle_proportions_over_20_datasets(size: int) -> None:
    specs = bench.table_mix(size, 20)
    assert len(specs) == size
    assert len({s.key for s in specs}) == size
    per_dataset = collections.Counter(s.dataset for s in specs)
    assert set(per_dataset.values()) == {size // 20}
    kinds = collections.Counter(s.kind for s in specs)
    assert set(kinds) == set(bench.KINDS)
    cycle = collections.Counter(bench.CYCLE)
    assert kinds == {k: n * size // len(bench.CYCLE) for k, n in cycle.items()}


@pytest.mark.parametrize("size", [100, 1000])
def test_every_view_reads_existing_tables_of_two_datasets_that_need_no_partition_filter(size: int) -> None:
    specs = bench.table_mix(size, 20)
    by_key = {s.key: s for s in specs}
    views = [s for s in specs if s.kind == "view"]
    assert views
    for view in views:
        assert len(view.reads) == 2, view
        assert {by_key[r].kind for r in view.reads} <= {"day", "hour", "flat_date", "flat"}
        assert {r.split(".")[0] for r in view.reads} == {
            view.dataset,
            bench.dataset_names(20)[(bench.dataset_names(20).index(view.dataset) + 1) % 20],
        }


@pytest.mark.parametrize("size", [100, 1000])
def test_envsync_plans_each_kind_with_the_strategy_the_bench_measures(size: int) -> None:
    base = yaml.safe_load((REPO / "config" / "envsync.yaml").read_text())
    datasets = bench.dataset_names(20)
    config = parse_config(bench.bench_config(base, datasets), "bench config")
    specs = bench.table_mix(size, 20)
    actions = {}
    for dataset in datasets:
        infos = []
        for spec in (s for s in specs if s.dataset == dataset):
            view_query = None
            if spec.kind == "view":
                [(sql, _)] = statements(spec)
                view_query = sql.split(" as\n", 1)[1]
            infos.append(table_info(spec, view_query))
        plan = plan_dataset(config, DatasetInfo(dataset, "US", None, {}, infos), existing=None)
        for action in plan.actions:
            actions[action.key] = action
    assert {key: a.action for key, a in actions.items()} == {s.key: bench.EXPECTED_ACTION[s.kind] for s in specs}
    hour = next(a for k, a in actions.items() if k.split(".")[1].startswith("hour_"))
    assert (hour.granularity, hour.column_type) == ("HOUR", "TIMESTAMP")
    for view in (a for a in actions.values() if a.action == "view"):
        # both references rewritten to the dev datasets, in both written forms
        assert not re.search(r"(?<!dev_)scale_\d\d\.", view.view_sql), view.view_sql
        assert len(view.depends_on) == 2


@pytest.mark.parametrize("days, slices", [(184, 2), (166, 1), (1, 1), (400, 3)])
def test_hour_tables_are_filled_in_slices_of_at_most_4000_partitions_covering_the_span(days: int, slices: int) -> None:
    # https://cloud.google.com/bigquery/quotas#partitioned_tables: 4,000 partitions per job
    spec = next(s for s in bench.table_mix(10, 1) if s.kind == "hour")
    create, *inserts = statements(spec, hour_span_days=days)
    assert "partition by timestamp_trunc(event_at, hour)" in create[0]
    assert len(inserts) == slices
    hours = [h for _, p in inserts for h in range(p["first"], p["last"] + 1)]
    assert hours == list(range(days * 24))
    assert all(p["last"] - p["first"] + 1 <= 4000 for _, p in inserts)


def test_the_default_hour_span_is_the_window_quarters_in_full() -> None:
    assert bench.hour_span_default(quarter_window(ANCHOR, 2)) == 184  # 2026-07-01 .. 2027-01-01
    assert bench.hour_span_default(quarter_window(ANCHOR, 1)) == 92  # 2026-10-01 .. 2027-01-01


def test_sizes_that_cannot_fill_the_datasets_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"a size of 10 objects cannot fill 20 datasets; use --datasets 10"):
        bench.table_mix(10, 20)


@pytest.mark.parametrize(
    "method, url, expected",
    [
        ("POST", "http://h/bigquery/v2/projects/p/jobs?prettyPrint=false", "jobs.insert"),
        ("GET", "http://h/bigquery/v2/projects/p/jobs/envsync_x_0?location=US", "jobs.get"),
        ("GET", "http://h/bigquery/v2/projects/p/queries/envsync_x_0", "jobs.getQueryResults"),
        ("GET", "http://h/bigquery/v2/projects/p/datasets/d", "datasets.get"),
        ("POST", "http://h/bigquery/v2/projects/p/datasets", "datasets.insert"),
        ("GET", "http://h/bigquery/v2/projects/p/datasets/d/tables", "tables.list"),
        ("GET", "http://h/bigquery/v2/projects/p/datasets/d/tables/t", "tables.get"),
        ("PATCH", "http://h/bigquery/v2/projects/p/datasets/d/tables/t", "tables.patch"),
        ("DELETE", "http://h/bigquery/v2/projects/p/datasets/d/tables/t", "tables.delete"),
        ("GET", "http://h/bigquery/v2/projects/p/datasets/d/tables/t/data", "tabledata.list"),
    ],
)
def test_requests_are_named_by_their_rest_method(method: str, url: str, expected: str) -> None:
    assert bench.api_method(method, url) == expected


def test_peak_rates_are_judged_against_each_methods_documented_limit() -> None:
    under = {"peak_per_second": {"jobs.get": 400, "tables.get": 60, "tables.insert": 3}}
    assert bench.peak_line(under).endswith("all under the limits: met")
    assert "jobs.get 400/s (1000)" in bench.peak_line(under) and "tables.insert 3/s (10)" in bench.peak_line(under)
    over = {"peak_per_second": {"tables.get": 101, "tables.insert": 11}}
    assert "OVER THE LIMIT: ['tables.get', 'tables.insert']" in bench.peak_line(over)
