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
.PHONY: help venv services broker db migrate run test test-unit test-integration test-e2e \
        lint fmt schemas browser definitions up down bench vapid-keys clean

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

test: services browser ## run the whole test suite against the local services
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv ## unit tests only (no services needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: services ## integration tests against real servers
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

browser: venv ## Debian's chromium for the admin page's browser test (apt-get when root)
	@$(PY) -m devtools.env browser

test-e2e: services browser ## end-to-end tests of the running system
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

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

BENCH_ARGS ?= --messages 10000 --runs 3
B1_ARGS ?=
B2_ARGS ?=
B4_ARGS ?=
BENCHMARKS := B1 B2 B3 B4 B6 B8 announcement push reports
ONLY ?= $(BENCHMARKS)
.PHONY: $(addprefix bench-,$(BENCHMARKS))
bench: services $(addprefix bench-,$(ONLY)) ## run the benchmarks (ONLY=B2 for some of B1 B2 B3 B4 B6 B8 announcement push reports); results in bench/results/
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

REPORTS_BENCH_ARGS ?= --messages 4000 --runs 3
bench-reports: services
	$(PY) -m bench.delivery_reports_cost $(REPORTS_BENCH_ARGS)

up: ## run the whole system with docker compose
	@command -v docker >/dev/null || { echo "docker is not installed: use 'make run' instead"; exit 1; }
	docker compose up -d --build
	@echo "API: http://localhost:8000/docs  RabbitMQ UI: http://localhost:15672  Mailpit: http://localhost:8025"

down: ## stop the compose system
	docker compose down

vapid-keys: venv ## print a new VAPID key pair for the push consumer (python -m push_consumer.keys)
	@$(PY) -m push_consumer.keys

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
