# Two commands on a fresh machine (Python 3.11, Java 17, Maven, Node.js 20+): `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: help install install-run ui ui-test up test test-fast lint kafka-start kafka-stop clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Two stamps: what running Maple needs (`make up`), and the test extras on top (`make test`, `make install`).
# -qq: pip's own errors still show; setuptools' notices about the editable install do not.
RUN_DEPS  := $(VENV)/.run-deps
TEST_DEPS := $(VENV)/.test-deps

$(RUN_DEPS): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -qq -e .
	@touch $@

$(TEST_DEPS): $(RUN_DEPS)
	$(BIN)/pip install -qq -e '.[test]'
	@touch $@

install-run: $(RUN_DEPS)  ## create .venv with what running Maple needs (no test tools)

install: $(TEST_DEPS)  ## create .venv with Maple and its test extras (pytest, the OTel SDK, ruff, mypy, ...)

ui:  ## build the web UI into ui/dist when its sources or lock file changed (npm ci, vite build)
	@ui/build.sh

ui-test: ui  ## the web UI's type check and component tests (Vitest)
	cd ui && npx --no-install tsc --noEmit -p . && npx --no-install vitest run

up: install-run ui  ## run Maple locally: Kafka (KRaft) + embedded ClickHouse + stages; Ctrl-C stops
	$(BIN)/maple up

test: install ui-test  ## lint, the UI's component tests, then every test against a real Kafka broker and the real ClickHouse engine (CI runs this)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -ra

test-fast: install  ## the unit tests only: pure code, no broker, no ClickHouse, a few seconds
	$(BIN)/python -m pytest -ra tests/unit

lint: install  ## ruff and mypy over the whole project
	$(BIN)/ruff check .
	$(BIN)/mypy

kafka-start: install-run  ## start only the local Kafka in the background
	$(BIN)/maple kafka start

kafka-stop: install-run  ## stop the local Kafka
	$(BIN)/maple kafka stop

clean:  ## stop the local Kafka, remove .venv and .maple (the data); keeps the caches ~/.cache/maple and ~/.m2
	-$(BIN)/maple kafka stop
	rm -rf $(VENV) .maple ui/dist ui/node_modules
