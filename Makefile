# The two commands of the README: `make demo` (the main job, on embedded defaults) and
# `make test` (environment, real services, lint, type checks, pytest). Everything else here
# is a building block of those two.

PYTHON ?= python3
UV_VERSION := 0.13.8
CACHE_DIR ?= $(HOME)/.cache/tiered-recsys
UV_HOME := $(CACHE_DIR)/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
VENV := .venv
RECSYS := $(VENV)/bin/recsys
GO ?= $(or $(shell command -v go),/usr/local/go/bin/go)
VEGETA := $(CACHE_DIR)/bin/vegeta
VEGETA_MODULE := github.com/tsenart/vegeta/v12@v12.13.0

.PHONY: setup demo test lint typecheck services-up services-down vegeta clean

# uv lives in a small venv of its own in the download cache, outside the clone; its package
# cache (~/.cache/uv) keeps torch and friends, so a re-install is a copy, not a download.
$(UV):
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced ## create .venv with the locked dependencies

demo: setup ## run the demo on embedded defaults
	$(RECSYS) demo

test: setup ## install, start Kafka/Cassandra/Redis, lint, type-check, run every test
	scripts/test.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

# The compiled load generator of `recsys bench online --generator vegeta`, built into the
# download cache outside the clone (scripts/test.sh builds it too).
$(VEGETA):
	GOBIN=$(CACHE_DIR)/bin $(GO) install $(VEGETA_MODULE)

vegeta: $(VEGETA) ## build vegeta for `recsys bench online --generator vegeta`

services-up: setup
	$(RECSYS) services up

services-down: setup
	$(RECSYS) services down

clean: ## remove the environment and local state (not the download caches)
	rm -rf $(VENV) var
