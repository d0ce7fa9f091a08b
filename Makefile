# Switchboard: `make run` for the service on embedded defaults, `make test` for the checks.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

LOCK := requirements.lock
SERVICE_LOCK := requirements-service.lock
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml - --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' --quiet

# Exact versions and hashes from the lock, never whatever the index serves today; the
# project itself is installed without its dependencies (they all came from the lock).
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP) ## Create the virtual environment from the lock file

# Pins already in the lock are kept unless LOCK_ARGS says otherwise (`--upgrade-package NAME`,
# `--upgrade`). The build backend is locked with the rest (fed on stdin); the image's lock takes
# the same versions as the development lock.
lock: $(STAMP) ## Resolve pyproject.toml into requirements.lock and requirements-service.lock
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(UV_COMPILE) --extra embedded --extra dev $(LOCK_ARGS) -o $(LOCK)
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(UV_COMPILE) -c $(LOCK) -o $(SERVICE_LOCK)

run: $(STAMP) ## Run the service (embedded broker and PostgreSQL unless configured)
	exec $(BIN)/switchboard run

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

tools: ## Tools the tests use beyond Python packages (chromium, promtool, curl, openssl)
	@sh deploy/install-tools.sh

test: tools lint ## Lint, type-check and run the whole test suite
	$(BIN)/pytest

# Mutation testing ([tool.mutmut] in pyproject.toml): mutmut mutates the routing metrics and
# the engine in a copy of the tree (mutants/) and runs the tests that cover each mutant, on one
# embedded broker and PostgreSQL. MUTANTS picks mutants by name (globs): by default the metric
# modules; MUTANTS='router.engine*' (or 'router.engine.state*', ...) the engine. MUTATE_JOBS
# mutants run at once: most of their time is spent waiting on the service, not on a core.
MUTANTS ?= router.shell.observe* runtime.metrics*
MUTATE_JOBS ?= 4

mutate: $(STAMP) ## Mutation testing of the routing metrics (MUTANTS='router.engine*': the engine)
	$(BIN)/python -m tests.mutation --max-children $(MUTATE_JOBS) $(foreach m,$(MUTANTS),'$(m)')
	$(BIN)/mutmut results

DEMO_PORT ?= 8080
DEMO_DURATION ?= 120
DEMO_ENV := SWITCHBOARD_CONFIG=switchboard/demo.toml SWITCHBOARD_PORT=$(DEMO_PORT) \
	SWITCHBOARD_STATE_DIR=$(CURDIR)/.state \
	SWITCHBOARD_PUBLIC_URL=http://127.0.0.1:$(DEMO_PORT) SWITCHBOARD_ADMIN_TOKEN=demo-admin-token \
	TWILIO_AUTH_TOKEN=demo-twilio-token META_APP_SECRET=demo-meta-secret \
	META_VERIFY_TOKEN=demo-verify-token MAILGUN_SIGNING_KEY=demo-mailgun-key

# The service runs in the background (throwaway secrets from DEMO_ENV); the trap stops it
# (SIGTERM: it stops its embedded broker and PostgreSQL) when the simulation ends or on Ctrl-C.
demo: $(STAMP) ## Run the service and a simulated contact centre; watch http://127.0.0.1:8080/console
	@export $(DEMO_ENV); \
	$(BIN)/switchboard run & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid; trap - EXIT; exit' EXIT INT TERM; \
	$(BIN)/switchboard simulate --url http://127.0.0.1:$(DEMO_PORT) --wait-ready 120 --service-pid $$pid \
		--duration $(DEMO_DURATION) --console-hint

bench: $(STAMP) ## Measure engine and end-to-end throughput; writes .bench/results.json
	$(BIN)/python -m tools.bench

schemas: $(STAMP) ## Regenerate the JSON Schema and AsyncAPI files
	$(BIN)/switchboard schemas

clean: ## Remove the virtual environment and local state
	rm -rf $(VENV) .state .bench .mypy_cache .pytest_cache .ruff_cache mutants

.PHONY: help install lock run demo lint tools test mutate bench schemas clean
