"""A deterministic demo prod: the `sales` and `marketing` datasets envsync derives from.

Everything is generated server-side by one BigQuery statement per object (`sql/demo/<table>.sql`,
GENERATE_ARRAY + CTAS): no row ever passes through Python, so a 50-million-row prod costs this process
no memory. Every value is a function of the row id and the reference date only, so two runs with the
same `rows` and `ref_date` produce byte-identical tables (checked by tests/integration/test_demo_prod.py).
The size and the reference date are bound as query parameters (`@rows`, `@ref_date`, plus the derived
dimension sizes `@customers` and `@campaigns`); Python fills in only validated, backtick-quoted
identifiers (`envsync.core.identifiers.quote`).

| object                        | kind  | shape                                                            |
|-------------------------------|-------|------------------------------------------------------------------|
| sales.orders                  | table | `rows` rows, DAY partitions on DATE order_date (730 days ending  |
|                               |       | on ref_date), clustered by customer_id, ARRAY<STRUCT> items,     |
|                               |       | STRUCT shipping                                                  |
| sales.customers               | table | max(10, rows/10) rows, no date/timestamp column                  |
| sales.orders_flat             | table | max(1, rows/2) rows, unpartitioned, DATE order_date + ship_date   |
| sales.audit_log               | table | 10..1000 rows, unpartitioned, TIMESTAMP event_at (config: exclude)|
| marketing.sessions            | table | `rows` rows, MONTH partitions on TIMESTAMP session_start          |
| marketing.ad_spend            | table | max(1, rows/20) rows, unpartitioned, one DATE column spend_date   |
| marketing.campaigns           | table | 10..1000 rows, no date column                                    |
| marketing.campaign_revenue    | view  | orders x campaigns x customers, across both datasets             |

With rows >= 730, orders / sessions hold every one of the 730 days up to ref_date (so also the days on
either side of each quarter boundary, e.g. 2026-06-30 and 2026-07-01); with fewer rows the days are
spread evenly from ref_date back 729 days.

NOTE: this module writes to the PROD datasets directly, on purpose: it fakes a prod for demos, tests
and benchmarks. It therefore does NOT go through envsync's write guard (`envsync.core.guard.GuardedBigQuery`),
which exists to stop envsync itself from ever writing prod. As a safety net of its own it refuses to
touch a dataset that already holds tables but was not created by this module (label
`envsync_demo=true`), and `drop_demo_prod` only deletes datasets carrying that label.

CLI: `python -m envsync.dev.demo --rows N [--ref-date YYYY-MM-DD]` (with PYTHONPATH=plugins): the demo prod
of the config ENVSYNC_CONFIG names (default config/envsync.yaml), in its prod project (`prod.project`, by
default the top-level `project`), its statements run in prod's jobs project. Everything else (the derived
environments, the audit dataset, the state bucket) is made by the DAG runs where the config says.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envsync.core.guard import to_query_parameters
from envsync.core.identifiers import quote, validate_identifier

if TYPE_CHECKING:
    from google.cloud import bigquery

MIN_ROWS = 1
MAX_ROWS = 50_000_000
# The SQL generates row ids in blocks: generate_array(0, 499) x generate_array(1, 100000).
ID_BLOCK_SIZE = 100_000
ID_BLOCKS = 500
DEFAULT_REF_DATE = date(2026, 11, 21)
SQL_DIR = Path(__file__).resolve().parents[3] / "sql" / "demo"
DEMO_LABEL = ("envsync_demo", "true")
JOB_LABELS = {"envsync_demo": "true", "envsync_component": "demo"}


@dataclass(frozen=True)
class DemoObject:
    dataset: str
    name: str
    kind: str  # "table" or "view"
    sql_file: str

    @property
    def key(self) -> str:
        return f"{self.dataset}.{self.name}"


DATASETS: dict[str, str] = {
    "sales": "Demo prod (envsync.dev.demo): orders, customers and their exports.",
    "marketing": "Demo prod (envsync.dev.demo): web sessions, ad spend and campaigns.",
}

# Creation order: dimensions first, the view last (it reads sales.orders, customers, campaigns).
OBJECTS: tuple[DemoObject, ...] = (
    DemoObject("marketing", "campaigns", "table", "campaigns.sql"),
    DemoObject("sales", "customers", "table", "customers.sql"),
    DemoObject("sales", "orders", "table", "orders.sql"),
    DemoObject("sales", "orders_flat", "table", "orders_flat.sql"),
    DemoObject("sales", "audit_log", "table", "audit_log.sql"),
    DemoObject("marketing", "sessions", "table", "sessions.sql"),
    DemoObject("marketing", "ad_spend", "table", "ad_spend.sql"),
    DemoObject("marketing", "campaign_revenue", "view", "campaign_revenue.sql"),
)

PARAMETER_NAMES = ("rows", "ref_date", "customers", "campaigns")


class DemoError(RuntimeError):
    """The demo prod could not be created or dropped; the message says which object and why."""


# ----- pure helpers (unit-tested without BigQuery) ------------------------------------------------


def validate_rows(rows: Any) -> int:
    if isinstance(rows, bool) or not isinstance(rows, int):
        raise ValueError(f"rows must be an integer between {MIN_ROWS:,} and {MAX_ROWS:,}, got {rows!r}")
    if not MIN_ROWS <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be between {MIN_ROWS:,} and {MAX_ROWS:,}, got {rows:,}")
    return rows


def validate_ref_date(ref_date: Any) -> date:
    if isinstance(ref_date, datetime) or not isinstance(ref_date, date):
        raise ValueError(f"ref_date must be a datetime.date (not a datetime), got {ref_date!r}")
    return ref_date


def parameters(rows: int, ref_date: date = DEFAULT_REF_DATE) -> dict[str, Any]:
    """Every query parameter a demo statement may use; all derived from rows and ref_date."""
    rows = validate_rows(rows)
    return {
        "rows": rows,
        "ref_date": validate_ref_date(ref_date),
        "customers": max(10, rows // 10),
        "campaigns": min(1000, max(10, rows // 10_000)),
    }


def expected_row_counts(rows: int) -> dict[str, int]:
    """Rows each demo table holds for a demo of `rows` rows (the SQL implements the same sizes)."""
    p = parameters(rows)
    return {
        "marketing.campaigns": p["campaigns"],
        "sales.customers": p["customers"],
        "sales.orders": rows,
        "sales.orders_flat": max(1, rows // 2),
        "sales.audit_log": min(1000, max(10, rows // 1000)),
        "marketing.sessions": rows,
        "marketing.ad_spend": max(1, rows // 20),
    }


def sql_template(obj: DemoObject) -> str:
    return (SQL_DIR / obj.sql_file).read_text(encoding="utf-8")


def identifiers(obj: DemoObject, project: str, prefix: str = "") -> dict[str, str]:
    """The quoted identifiers a statement's placeholders take. The view deliberately mixes forms.

    `prefix` is put before every dataset name (`<prefix>sales`), e.g. to share a sandbox project."""
    refs = {"target": quote(project, prefix + obj.dataset, obj.name)}
    if obj.kind == "view":
        refs["orders"] = quote(project, prefix + "sales", "orders")  # `project.sales.orders`
        refs["campaigns"] = quote(prefix + "marketing", "campaigns")  # `marketing.campaigns`
        refs["customers"] = quote(prefix + "sales", "customers")  # `sales.customers`
    return refs


def render(obj: DemoObject, project: str, prefix: str = "") -> str:
    """The statement for one object: only validated, backtick-quoted identifiers are filled in."""
    return sql_template(obj).format(**identifiers(obj, project, prefix))


def used_parameters(sql: str) -> list[str]:
    import re

    names = sorted(set(re.findall(r"@([A-Za-z_][A-Za-z0-9_]*)", sql)))
    unknown = [n for n in names if n not in PARAMETER_NAMES]
    if unknown:
        raise DemoError(f"demo SQL uses unknown query parameters {unknown}")
    return names


# ----- BigQuery -----------------------------------------------------------------------------------


def _query(client: bigquery.Client, sql: str, params: dict[str, Any], location: str | None) -> Any:
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(
        query_parameters=to_query_parameters({n: params[n] for n in used_parameters(sql)}),
        labels=JOB_LABELS,
        use_legacy_sql=False,
    )
    job = client.query(
        sql,
        job_config=config,
        location=location,
        retry=bigquery.DEFAULT_RETRY.with_deadline(120),
        job_retry=None,
    )
    return job.result()


def _ensure_dataset(client: bigquery.Client, project: str, dataset_id: str, location: str, prefix: str = "") -> None:
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    validate_identifier("dataset", prefix + dataset_id)
    ref = f"{project}.{prefix}{dataset_id}"
    try:
        existing = client.get_dataset(ref)
    except NotFound:
        dataset = bigquery.Dataset(ref)
        dataset.location = location
        dataset.description = DATASETS[dataset_id]
        dataset.labels = {DEMO_LABEL[0]: DEMO_LABEL[1], "envsync_role": "prod"}
        client.create_dataset(dataset, exists_ok=True)
        return
    if existing.labels.get(DEMO_LABEL[0]) != DEMO_LABEL[1]:
        tables = list(client.list_tables(ref, max_results=1))
        if tables:
            raise DemoError(
                f"refusing to write the demo into dataset {ref}: it already holds tables and was not "
                f"created by envsync.dev.demo (no label {DEMO_LABEL[0]}={DEMO_LABEL[1]}). Use an empty "
                "project or drop the dataset yourself."
            )
    if (existing.location or location).upper() != location.upper():
        raise DemoError(f"dataset {ref} is in {existing.location}, the config says {location}")
    existing.description = DATASETS[dataset_id]
    existing.labels = {**existing.labels, DEMO_LABEL[0]: DEMO_LABEL[1], "envsync_role": "prod"}
    client.update_dataset(existing, ["description", "labels"])


def create_demo_prod(
    client: bigquery.Client,
    project: str,
    location: str,
    rows: int,
    ref_date: date = DEFAULT_REF_DATE,
    *,
    dataset_prefix: str = "",
) -> dict[str, int]:
    """Create (or replace) the demo prod; return {"dataset.table": rows} for every table and the view.

    Deterministic: the same rows and ref_date always give identical contents. Writes prod directly
    (no write guard): see the module docstring. With `dataset_prefix` the datasets are
    `<prefix>sales` and `<prefix>marketing` (the returned keys stay `sales.<table>`).
    """
    validate_identifier("project", project)
    params = parameters(rows, ref_date)
    for dataset_id in DATASETS:
        _ensure_dataset(client, project, dataset_id, location, dataset_prefix)
    counts: dict[str, int] = {}
    for obj in OBJECTS:
        sql = render(obj, project, dataset_prefix)
        target = f"{project}.{dataset_prefix}{obj.key}"
        try:
            _query(client, sql, params, location)
        except Exception as error:  # name the object: a bare API error says little
            raise DemoError(f"creating {obj.kind} {target} failed: {error}") from error
        if obj.kind == "view":
            result = _query(
                client,
                f"select count(*) as n from {quote(project, dataset_prefix + obj.dataset, obj.name)}",
                {},
                location,
            )
            counts[obj.key] = int(next(iter(result))["n"])
        else:
            counts[obj.key] = int(client.get_table(target).num_rows or 0)
    expected = expected_row_counts(rows)
    wrong = {k: (counts[k], n) for k, n in expected.items() if counts.get(k) != n}
    if wrong:
        raise DemoError(f"demo tables have unexpected row counts (got, expected): {wrong}")
    return counts


def describe_demo_prod(client: bigquery.Client, project: str) -> list[dict[str, Any]]:
    """Metadata of each demo object: table, kind, rows, partitioning, clustering."""
    out = []
    for obj in OBJECTS:
        table = client.get_table(f"{project}.{obj.key}")
        tp = table.time_partitioning
        partitioning = f"{tp.type_} on {tp.field or '_PARTITIONTIME'}" if tp else "-"
        out.append(
            {
                "table": obj.key,
                "kind": "view" if table.table_type == "VIEW" else "table",
                "rows": table.num_rows,
                "partitioning": partitioning,
                "clustering": ", ".join(table.clustering_fields or []) or "-",
            }
        )
    return out


def drop_demo_prod(client: bigquery.Client, project: str, *, dataset_prefix: str = "") -> list[str]:
    """Delete the demo datasets (only those labelled envsync_demo=true). Returns the dropped ones."""
    from google.api_core.exceptions import NotFound

    validate_identifier("project", project)
    dropped = []
    for dataset_id in DATASETS:
        ref = f"{project}.{dataset_prefix}{dataset_id}"
        try:
            dataset = client.get_dataset(ref)
        except NotFound:
            continue
        if dataset.labels.get(DEMO_LABEL[0]) != DEMO_LABEL[1]:
            raise DemoError(f"refusing to drop {ref}: it was not created by envsync.dev.demo")
        client.delete_dataset(ref, delete_contents=True, not_found_ok=True)
        dropped.append(dataset_id)
    return dropped


# ----- CLI ----------------------------------------------------------------------------------------


def _rows_arg(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rows must be an integer, got {text!r}") from None
    try:
        return validate_rows(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ref-date must be YYYY-MM-DD, got {text!r}") from None


def format_table(rows: list[dict[str, Any]], columns: list[str], right: tuple[str, ...] = ("rows",)) -> str:
    cells = [["-" if r.get(c) is None else str(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if c in right else v.ljust(w) for v, w, c in zip(values, widths, columns, strict=False)
        ).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(row) for row in cells])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m envsync.dev.demo",
        description="Create the deterministic demo prod (datasets sales, marketing) server-side.",
    )
    parser.add_argument(
        "--rows", type=_rows_arg, required=True, help=f"size of sales.orders ({MIN_ROWS}..{MAX_ROWS:,})"
    )
    parser.add_argument(
        "--ref-date", type=_date_arg, default=DEFAULT_REF_DATE, help="last day of data (default %(default)s)"
    )
    args = parser.parse_args(argv)

    from envsync.core.clients import bigquery_client
    from envsync.core.config import ENV_NAMES, ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    project = config.prod_project
    client = bigquery_client(config.jobs_project_of("prod"), config.location)
    started = time.monotonic()
    try:
        counts = create_demo_prod(client, project, config.location, args.rows, args.ref_date)
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    described = describe_demo_prod(client, project)
    for item in described:
        item["rows"] = f"{counts[item['table']]:,}"
    print(
        f"demo prod in project {project} ({config.location}), rows={args.rows:,}, "
        f"ref_date={args.ref_date.isoformat()}, created in {seconds:.1f} s\n"
    )
    print(format_table(described, ["table", "kind", "rows", "partitioning", "clustering"]))
    if config.split:
        homes = "; ".join(f"{env} in {config.project_of(env)}" for env in ENV_NAMES)
        print(f"\nthe DAGs write {homes}; audit dataset {config.audit_project}.{config.audit.dataset}")
    missing = sorted(set(DATASETS) - set(config.prod.datasets))
    if missing:
        print(f"\nnote: config prod.datasets {config.prod.datasets} does not list {missing}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
