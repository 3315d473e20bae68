# envsync developer entry points. `make` (or `make help`) lists the targets.
#
# Two virtualenvs: .venv (Python 3.11: Airflow, envsync, tests) and .venv-emulators (Python 3.13:
# the local BigQuery and GCS emulators). Both are installed from hashed lock files; stamp files make
# a repeated `make install` instant until a lock file changes.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
# Leave empty to use $(pyenv root)/versions/3.13.0/bin/python, else python3.13 on PATH.
EMULATOR_PYTHON ?=
UV_VERSION := 0.13.9
VENV := .venv
EMU_VENV := .venv-emulators
UV := $(VENV)/bin/uv
PYTEST_ARGS ?=
# make test runs the suite on this many pytest-xdist workers (0: in the pytest process itself)
TEST_WORKERS ?= 2
# Extra arguments for the devstack CLI, e.g. DEVSTACK_ARGS="--bq-port 9150 --gcs-port 9123".
DEVSTACK_ARGS ?=
DEVSTACK := PYTHONPATH=$(CURDIR)/plugins $(VENV)/bin/python -m envsync.dev.devstack
# check-sql: prod's schemas (JSON) the SQL is analyzed against; DISCOVER=1 discovers them from prod first
# (the config's project and prod.datasets, through BIGQUERY_EMULATOR_HOST or google_cloud_default).
SCHEMAS ?= sql/schemas/prod.json
DISCOVER ?=
# sql/migrations (when it exists) is analyzed in version order, each migration's DDL changing the catalog.
CHECK_SQL_PATHS ?= sql/seeds $(wildcard sql/migrations)

# Airflow run from this checkout (git-ignored home, loopback-only, few worker processes).
export AIRFLOW_HOME := $(CURDIR)/.devstack/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__PARALLELISM := 4

.PHONY: help install lock up down stop status check-sql lint test test-fast test-gcp demo bundle deploy smoke rollback

help: ## List the targets
	@echo "envsync targets:"
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "Variables: PYTEST_ARGS='-k foo -x' (test, test-gcp), DEVSTACK_ARGS='--bq-port N ...' (up/down/status),"
	@echo "           SCHEMAS=file.json or DISCOVER=1 (check-sql), ENVSYNC_TEST_GCP_PROJECT=<sandbox project id> (test-gcp)"

install: $(VENV)/.installed $(EMU_VENV)/.installed ## Create/sync .venv and .venv-emulators from the lock files (instant when done)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(UV): | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: requirements.txt | $(UV)
	$(UV) pip sync --require-hashes --python $(VENV)/bin/python requirements.txt
	@touch $@

$(EMU_VENV)/bin/python:
	@py="$(EMULATOR_PYTHON)"; \
	if [ -z "$$py" ]; then \
	  root="$$(pyenv root 2>/dev/null || true)"; \
	  if [ -n "$$root" ] && [ -x "$$root/versions/3.13.0/bin/python" ]; then \
	    py="$$root/versions/3.13.0/bin/python"; \
	  elif command -v python3.13 >/dev/null 2>&1; then \
	    py="$$(command -v python3.13)"; \
	  else \
	    echo "error: the emulators need Python 3.13: install it with pyenv (pyenv install 3.13.0)," >&2; \
	    echo "       put python3.13 on PATH, or pass EMULATOR_PYTHON=/path/to/python3.13" >&2; \
	    exit 1; \
	  fi; \
	fi; \
	echo "$$py -m venv $(EMU_VENV)"; \
	"$$py" -m venv $(EMU_VENV)

$(EMU_VENV)/.installed: emulators/requirements.txt | $(UV) $(EMU_VENV)/bin/python
	$(UV) pip sync --require-hashes --python $(EMU_VENV)/bin/python emulators/requirements.txt
	@touch $@

lock: | $(UV) ## Recompile requirements.txt and emulators/requirements.txt with uv
	$(UV) pip compile --quiet --python-version 3.11 --generate-hashes requirements.in -o requirements.txt
	$(UV) pip compile --quiet --python-version 3.13 --generate-hashes --override emulators/overrides.txt \
		emulators/requirements.in -o emulators/requirements.txt

up: install ## Start the local BigQuery (9050, gRPC 9060) and GCS (9023) emulators in the background
	@$(DEVSTACK) up $(DEVSTACK_ARGS)

down: ## Stop the emulators
	@$(DEVSTACK) down $(DEVSTACK_ARGS)

stop: down ## Alias of down

status: ## Show whether the emulators run and answer
	@$(DEVSTACK) status $(DEVSTACK_ARGS)

check-sql: install ## Analyze the seeds (sql/seeds) and migrations (sql/migrations) with GoogleSQL against prod's schemas (file:line: message)
	@schemas="$(SCHEMAS)"; \
	if [ -n "$(DISCOVER)" ]; then \
	  schemas=.devstack/prod-schemas.json; \
	  $(VENV)/bin/python scripts/prod_schemas.py --out "$$schemas" || exit 1; \
	fi; \
	PYTHONPATH=$(CURDIR)/emulators $(EMU_VENV)/bin/python -m bqfidelity.checksql \
	  --schemas "$$schemas" --cache .devstack/zetasql $(CHECK_SQL_PATHS)

# Each check runs even when an earlier one fails, so one run lists every problem; any failure fails lint.
lint: install ## Lint (ruff check), formatting (ruff format --check), import contracts (lint-imports), types (mypy), workflows (actionlint)
	@status=0; \
	echo "ruff check"; $(VENV)/bin/ruff check --quiet . || status=1; \
	echo "ruff format --check"; $(VENV)/bin/ruff format --check --quiet . || status=1; \
	echo "lint-imports"; PYTHONPATH=$(CURDIR)/plugins $(VENV)/bin/lint-imports --no-logo \
	  --cache-dir .devstack/import-linter || status=1; \
	echo "mypy"; $(VENV)/bin/mypy || status=1; \
	echo "actionlint"; $(VENV)/bin/actionlint -no-color -shellcheck= -pyflakes= .github/workflows/*.yml || status=1; \
	exit $$status

test: install check-sql lint ## Run check-sql and lint, then the test suite (pass arguments with PYTEST_ARGS=...)
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# the fast tiers: unit and DAG-integrity tests (no emulator)
FAST_TIERS ?= tests/unit tests/dags
test-fast: install ## The fast tiers alone, in seconds: unit and DAG-integrity tests (no emulator)
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(FAST_TIERS) $(PYTEST_ARGS)

# The integration suite on a real GCP sandbox project (README: "Trying envsync on real GCP").
# Without ENVSYNC_TEST_GCP_PROJECT it prints one line and succeeds.
test-gcp: install ## Run the integration suite on a real GCP sandbox project (ENVSYNC_TEST_GCP_PROJECT=<id>)
	@$(VENV)/bin/python tests/sandbox.py $(PYTEST_ARGS)

demo: install ## Run the end-to-end demo (scripts/demo.sh; DEMO_CONFIG=<path> runs it on another config)
	bash scripts/demo.sh

# Deploying envsync (README "Deploying envsync"): one bundle, built once, promoted staging -> prod.
BUNDLE_DIR ?= dist
BUNDLE ?= $(BUNDLE_DIR)
DEPLOY := PYTHONPATH=$(CURDIR)/plugins $(VENV)/bin/python -m envsync.deploy
require = $(if $($(1)),,$(error $(1) is required: $(2)))

bundle: install ## Build dist/envsync-<version>.tar.gz from the git-tracked files (VERSION=..., ALLOW_DIRTY=1)
	@mkdir -p $(BUNDLE_DIR) && rm -f $(BUNDLE_DIR)/envsync-*.tar.gz
	@$(DEPLOY) bundle --out $(BUNDLE_DIR) --root $(CURDIR) $(if $(VERSION),--version "$(VERSION)") $(if $(ALLOW_DIRTY),--allow-dirty)

deploy: install ## Deploy BUNDLE to BUCKET as ENVIRONMENT (prod: STAGING_BUCKET=, CONFIRM='deploy envsync <version> to prod')
	$(call require,BUCKET,make deploy BUNDLE=dist BUCKET=<composer bucket> ENVIRONMENT=staging|prod)
	$(call require,ENVIRONMENT,make deploy BUNDLE=dist BUCKET=<composer bucket> ENVIRONMENT=staging|prod)
	@$(DEPLOY) deploy --bundle "$(BUNDLE)" --bucket "$(BUCKET)" --environment "$(ENVIRONMENT)" \
	  $(if $(STAGING_BUCKET),--staging-bucket "$(STAGING_BUCKET)") $(if $(CONFIRM),--confirm "$(CONFIRM)") \
	  $(if $(CONFIG),--config "$(CONFIG)") $(if $(ACTOR),--actor "$(ACTOR)")

smoke: install ## Smoke-test BUCKET's live release through API_URL (ENVSYNC_AIRFLOW_USERNAME/PASSWORD or _TOKEN, else Google auth)
	$(call require,BUCKET,make smoke BUCKET=<bucket> ENVIRONMENT=staging|prod API_URL=<airflow url>)
	$(call require,ENVIRONMENT,make smoke BUCKET=<bucket> ENVIRONMENT=staging|prod API_URL=<airflow url>)
	$(call require,API_URL,make smoke BUCKET=<bucket> ENVIRONMENT=staging|prod API_URL=<airflow url>)
	@$(DEPLOY) smoke --bucket "$(BUCKET)" --environment "$(ENVIRONMENT)" --api-url "$(API_URL)" \
	  $(if $(ACTOR),--actor "$(ACTOR)") $(SMOKE_ARGS)

rollback: install ## Switch BUCKET's ENVIRONMENT back to its previous good release
	$(call require,BUCKET,make rollback BUCKET=<bucket> ENVIRONMENT=staging|prod)
	$(call require,ENVIRONMENT,make rollback BUCKET=<bucket> ENVIRONMENT=staging|prod)
	@$(DEPLOY) rollback --bucket "$(BUCKET)" --environment "$(ENVIRONMENT)" $(if $(ACTOR),--actor "$(ACTOR)")
