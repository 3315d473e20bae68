#!/usr/bin/env bash
# The end-to-end demo on the embedded default (`make demo`): start the local BigQuery and GCS
# emulators, create a demo prod, run the prod_to_dev_sync DAG through Airflow (`airflow dags test`),
# print the run report, and stop the emulators again (their data stays under .devstack/).
# DEMO_ROWS sets the size of the demo prod (rows of the fact table; default 200000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS="${DEMO_ROWS:-200000}"
PY=.venv/bin/python
export PYTHONPATH="$PWD/plugins"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.devstack/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$PWD/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM=4
mkdir -p .devstack

step() { printf '\n==> %s\n' "$*"; }

step "starting the local BigQuery and GCS emulators"
$PY -m envsync.devstack up
trap '$PY -m envsync.devstack down >/dev/null 2>&1 || true; echo "emulators stopped (make up starts them again)"' EXIT
eval "$($PY -m envsync.devstack env)"

step "creating the demo prod ($ROWS rows, ending today)"
$PY -m envsync.demo --rows "$ROWS" --ref-date "$(date -u +%F)"

step "preparing the Airflow metadata DB ($AIRFLOW_HOME)"
.venv/bin/airflow db migrate >"$PWD/.devstack/airflow-migrate.log" 2>&1 \
  || { tail -20 "$PWD/.devstack/airflow-migrate.log"; exit 1; }

step "running prod_to_dev_sync through Airflow (log: .devstack/demo-run.log)"
start=$(date +%s)
if ! .venv/bin/airflow dags test prod_to_dev_sync >"$PWD/.devstack/demo-run.log" 2>&1; then
  grep -E "ERROR|Error|failed" "$PWD/.devstack/demo-run.log" | tail -20
  echo "the DAG run failed; full log: .devstack/demo-run.log" >&2
  exit 1
fi
echo "DAG run finished in $(( $(date +%s) - start )) s"

step "run report"
$PY -m envsync.report prod_to_dev_sync

step "GoogleSQL analyzer (every statement the emulator ran, checked as BigQuery's front end would)"
$PY - <<'PY'
import json, pathlib
path = pathlib.Path(".devstack/run/analyzer.json")
stats = json.loads(path.read_text()) if path.exists() else None
if stats:
    print(f"GoogleSQL analyzer: {stats['analyzed']} statements analyzed, {stats['refused']} refused "
          f"({stats['ms_per_statement']} ms a statement); counters in {path}")
PY
