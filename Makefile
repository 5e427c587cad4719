# One entry point for people and CI. Every target installs what it needs.
#   make run    the whole system in the foreground against local services
#   make test   the whole test suite (sets up venv, broker plugins, database)
#   make up     the whole system with docker compose

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv services broker db migrate run test test-unit test-integration test-e2e test-cluster \
        test-faults soak lint fmt schemas browser monitoring nginx definitions up up-prod down bench \
        dashboard-snapshot vapid-keys clean seed-data

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11+ is needed (found $$($(PYTHON) --version)); set PYTHON=python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create .venv and install the project with its dev tools

services: venv ## check PostgreSQL, Redis, RabbitMQ; enable the broker plugins
	@$(PY) -m devtools.env check

broker: services ## load broker/definitions.json into the local broker
	@$(PY) -m devtools.env broker

db: services ## create the database if it is missing
	@$(PY) -m devtools.env database

migrate: services ## create the database if missing and apply the migrations
	@$(PY) -m devtools.env migrate

run: broker migrate ## run every process of the system in the foreground (Ctrl-C stops all)
	@$(PY) -m devtools.run

test: services browser monitoring nginx ## run the whole test suite against the local services
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv ## unit tests only (no services needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: services nginx ## integration tests against real servers
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

monitoring: venv ## Debian's prometheus-process-exporter for the dashboard test (apt-get when root)
	@$(PY) -m devtools.env process-exporter

browser: venv ## Debian's chromium for the admin page's browser test (apt-get when root)
	@$(PY) -m devtools.env browser

nginx: venv ## Debian's nginx for the load-balancer test (apt-get when root)
	@$(PY) -m devtools.env nginx

test-e2e: services browser monitoring ## end-to-end tests of the running system
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

test-cluster: services ## a broker node lost under load, on a 3-node RabbitMQ cluster (not in `make test`)
	$(PY) -m pytest tests/cluster -s $(PYTEST_ARGS)

test-faults: services ## fault tests: RSVPs flowing while a server fails (prints recovery times)
	$(PY) -m pytest tests/faults -s $(PYTEST_ARGS)

SOAK_S ?= 600
soak: services ## RSVPs under random faults for SOAK_S seconds (default 600), dead letters replayed; prints lost, duplicated
	$(PY) -m tests.faults.soak --duration $(SOAK_S)

lint: venv ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: venv ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

schemas: venv ## regenerate JSON Schemas and the AsyncAPI document
	$(PY) -m shared.schemas.export

definitions: venv ## regenerate broker/definitions.json from the topology module
	$(PY) -m shared.messaging.definitions

SCALE ?= small
SEED_ARGS ?=
seed-data: migrate ## load events, RSVPs and their history with COPY into DATABASE_URL's database (SCALE=10m: 100k events, 10M RSVPs; SEED_ARGS=--force or --append when it holds data)
	$(PY) -m devtools.seed --scale $(SCALE) $(SEED_ARGS)

BENCH_ARGS ?= --messages 10000 --runs 3
B1_ARGS ?=
B2_ARGS ?=
B4_ARGS ?=
B5_ARGS ?=
BENCHMARKS := B1 B2 B3 B4 B5 B6 B8 announcement push reports broker reference
ONLY ?= $(BENCHMARKS)
.PHONY: $(addprefix bench-,$(BENCHMARKS))
bench: services $(addprefix bench-,$(ONLY)) ## run the benchmarks (ONLY=B2 for some of $(BENCHMARKS)); results in bench/results/
	$(PY) -m bench.summary

bench-B1: services
	@$(PY) -m devtools.env wrk
	$(PY) -m bench.b1_rsvp_post $(B1_ARGS)

bench-B2: services
	$(PY) -m bench.b2_end_to_end $(B2_ARGS)

bench-B3: services
	$(PY) -m bench.email_consumer_throughput $(BENCH_ARGS)

bench-B4: services
	$(PY) -m bench.relay_lag $(B4_ARGS)

# B5: reads at 100k events and 10M RSVPs; seeds a throw-away database unless
# B5_ARGS="--database rsvp_scale" names one `make seed-data SCALE=10m` loaded
bench-B5: services
	$(PY) -m bench.b5_reads $(B5_ARGS)

# B6: replay from the dead-letter store
bench-B6: services
	$(PY) -m bench.dlq_store_replay

# B8: the dead-letter store's pages and groups at 1,000,000 stored dead letters
bench-B8: services
	$(PY) -m bench.dlq_store_queries

bench-announcement: services
	$(PY) -m bench.announcement

PUSH_BENCH_ARGS ?= --messages 2000 --runs 3
bench-push: services
	$(PY) -m bench.push_consumer_throughput $(PUSH_BENCH_ARGS)

# what one message costs RabbitMQ at B2's steady rate, on a node of its own
bench-broker: services
	$(PY) -m bench.broker_paced

REPORTS_BENCH_ARGS ?= --messages 4000 --runs 3
bench-reports: services
	$(PY) -m bench.delivery_reports_cost $(REPORTS_BENCH_ARGS)

# the reference day's mix, rising steps, two API replicas behind nginx (README "Capacity")
REFERENCE_ARGS ?=
bench-reference: services nginx
	$(PY) -m bench.reference_load $(REFERENCE_ARGS)

SNAPSHOT_ARGS ?= --rates 50,100,150,200,250 --step-seconds 30 --all-steps
dashboard-snapshot: services nginx ## the reference load with Prometheus scraping; each dashboard panel to bench/results/dashboard/
	@$(PY) -m devtools.env prometheus
	$(PY) -m bench.reference_load --prometheus $(SNAPSHOT_ARGS)

up: ## run the whole system with docker compose
	@command -v docker >/dev/null || { echo "docker is not installed: use 'make run' instead"; exit 1; }
	docker compose up -d --build
	@echo "API: http://localhost:8000/docs  RabbitMQ UI: http://localhost:15672  Mailpit: http://localhost:8025"

up-prod: ## the whole system with docker compose, APP_ENV=prod, secrets from the environment
	@command -v docker >/dev/null || { echo "docker is not installed"; exit 1; }
	docker compose -f compose.yaml -f compose.production.yaml up -d --build

down: ## stop the compose system
	docker compose down

vapid-keys: venv ## print a new VAPID key pair for the push consumer (python -m push_consumer.keys)
	@$(PY) -m push_consumer.keys

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
