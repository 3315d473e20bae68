"""Write prod's table schemas, as discovered, to a JSON file for ``make check-sql``.

    .venv/bin/python scripts/prod_schemas.py --out .devstack/prod-schemas.json [--project P] [--datasets a,b]

Prod is the config's (``ENVSYNC_CONFIG``, default ``config/envsync.yaml``): its prod project and
``prod.datasets``. BigQuery is reached as envsync reaches it: the emulator when
``BIGQUERY_EMULATOR_HOST`` is set, else the Airflow connection ``google_cloud_default``. Views are
included (their columns), so SQL reading them is checked too. Format: ``{"project": ...,
"tables": {"<dataset>.<table>": [<BigQuery API schema fields>]}}``; a table partitioned by ingestion
time is ``{"fields": [...], "ingestion_time": true}`` (it has _PARTITIONTIME and _PARTITIONDATE).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "plugins"))


def prod_schemas(client: Any, project: str, datasets: list[str]) -> dict[str, Any]:
    """{"project", "tables"} of the given prod datasets (tables and views, sorted)."""
    from envsync.bigquery.discovery import discover_dataset

    tables: dict[str, Any] = {}
    for dataset in datasets:
        for info in discover_dataset(client, project, dataset).tables:
            fields = info.schema
            ingestion = bool(info.partitioning) and not (info.partitioning or {}).get("field")
            tables[f"{dataset}.{info.table}"] = {"fields": fields, "ingestion_time": True} if ingestion else fields
    return {"project": project, "tables": dict(sorted(tables.items()))}


def dump(data: dict[str, Any]) -> str:
    """JSON with one column per line (diffs of a re-discovered prod stay readable)."""
    lines = ["{", f'  "project": {json.dumps(data["project"])},', '  "tables": {']
    items = list(data["tables"].items())
    for index, (key, value) in enumerate(items):
        fields = value["fields"] if isinstance(value, dict) else value
        body = ",\n".join(f"      {json.dumps(field, sort_keys=True)}" for field in fields)
        column_list = f"[\n{body}\n    ]"
        if isinstance(value, dict):
            column_list = f'{{"ingestion_time": true, "fields": {column_list}}}'
        lines.append(f"    {json.dumps(key)}: {column_list}{',' if index < len(items) - 1 else ''}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from envsync.core.clients import bigquery_client
    from envsync.core.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--project", help="default: the config's prod project (prod.project, else project)")
    parser.add_argument("--datasets", help="comma-separated; default: the config's prod.datasets")
    args = parser.parse_args(argv)
    config = load_config()
    project = args.project or config.prod_project
    datasets = args.datasets.split(",") if args.datasets else list(config.prod.datasets)
    data = prod_schemas(bigquery_client(project, config.location), project, datasets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(data), encoding="utf-8")
    print(f"wrote {len(data['tables'])} prod tables of {project} ({', '.join(datasets)}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
