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

.PHONY: setup demo test lint typecheck docs docs-serve docs-reference services-up services-down vegeta clean

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

# The documentation site (mkdocs.yml). docs/reference/ is generated from the code and
# committed, so that its links work on GitHub too; tests/unit/test_docs.py fails when it is stale.
docs: setup ## build the documentation site into site/ (strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: setup ## preview the documentation site on http://127.0.0.1:8001/
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8001

docs-reference: setup ## regenerate docs/reference/ (CLI, HTTP API, settings) from the code
	$(VENV)/bin/python -m recsys.docs

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
