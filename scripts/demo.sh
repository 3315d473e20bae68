#!/usr/bin/env bash
# The end-to-end demo on the embedded default (`make demo`): start the local BigQuery and GCS
# emulators, create a demo prod, run the prod_to_dev_sync DAG through Airflow (`airflow dags test`),
# print the run report, serve the envsync page from an Airflow api-server and print its URL, and stop
# the api-server and the emulators again (their data stays under .devstack/). Run from a terminal, the
# page stays up until Enter is pressed.
# DEMO_ROWS sets the size of the demo prod (rows of the fact table; default 200000); DEMO_PORT the
# api-server's port on 127.0.0.1 (default 8080); DEMO_CONFIG another envsync config to run the demo on
# (default config/envsync.yaml, one project), e.g. config/examples/split-projects.yaml: the demo prod is
# then created in its prod project and the DAG writes every environment where that config says.
set -euo pipefail
if [ -n "${DEMO_CONFIG:-}" ]; then
  [ -f "$DEMO_CONFIG" ] || { echo "DEMO_CONFIG=$DEMO_CONFIG: no such file" >&2; exit 2; }
  CONFIG="$(cd "$(dirname "$DEMO_CONFIG")" && pwd)/$(basename "$DEMO_CONFIG")"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ENVSYNC_CONFIG="${CONFIG:-$PWD/config/envsync.yaml}"

ROWS="${DEMO_ROWS:-200000}"
PORT="${DEMO_PORT:-8080}"
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
$PY -m envsync.dev.devstack up
trap '$PY -m envsync.dev.devstack down >/dev/null 2>&1 || true; echo "emulators stopped (make up starts them again)"' EXIT
eval "$($PY -m envsync.dev.devstack env)"

step "creating the demo prod ($ROWS rows, ending today; config $ENVSYNC_CONFIG)"
$PY -m envsync.dev.demo --rows "$ROWS" --ref-date "$(date -u +%F)"

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
$PY -m envsync.observe.report prod_to_dev_sync

step "GoogleSQL analyzer (every statement the emulator ran, checked as BigQuery's front end would)"
$PY - <<'PY'
import json, pathlib
path = pathlib.Path(".devstack/run/analyzer.json")
stats = json.loads(path.read_text()) if path.exists() else None
if stats:
    print(f"GoogleSQL analyzer: {stats['analyzed']} statements analyzed, {stats['refused']} refused "
          f"({stats['ms_per_statement']} ms a statement); counters in {path}")
PY

step "serving the envsync page (Airflow api-server on 127.0.0.1:$PORT, log: .devstack/demo-api-server.log)"
if ! $PY -c "import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PORT)) == 0)"; then
  echo "port $PORT is taken: run DEMO_PORT=<free port> make demo to see the page" >&2
  exit 1
fi
.venv/bin/airflow api-server -H 127.0.0.1 -p "$PORT" >"$PWD/.devstack/demo-api-server.log" 2>&1 &
API_PID=$!
trap 'kill $API_PID 2>/dev/null; wait $API_PID 2>/dev/null; $PY -m envsync.dev.devstack down >/dev/null 2>&1 || true; echo "api-server and emulators stopped (make up starts the emulators again)"' EXIT
$PY - "$PORT" <<'PY'
import json, os, sys, time
import httpx

port = sys.argv[1]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 180
while True:
    try:
        if httpx.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the api-server did not answer in 180 s; see .devstack/demo-api-server.log")
    time.sleep(1)
passwords = os.path.join(os.environ["AIRFLOW_HOME"], "simple_auth_manager_passwords.json.generated")
password = json.load(open(passwords))["admin"]
token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30).json()["access_token"]
data = httpx.get(f"{base}/envsync/data.json", cookies={"_token": token}, timeout=120)
if data.status_code != 200:
    sys.exit(f"the envsync page answered HTTP {data.status_code}: {data.text[:500]}")
board = data.json()
states = ", ".join(f"{e['name']} {e['state']}" for e in board["environments"])
print(f"envsync page: {base}/envsync/  (in the Airflow UI: {base}/plugin/envsync)")
print(f"log in as admin, password {password}; environments: {states}")
if board.get("projects"):
    print("projects: " + ", ".join(f"{env} {project}" for env, project in board["projects"].items()))
PY
if [ -t 0 ]; then
  read -r -p "press Enter to stop the api-server and the emulators " _
fi
