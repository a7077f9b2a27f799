# Two commands on a fresh machine (Python 3.11, Java 17, Maven, Node.js 20+, Rust's cargo): `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The compiled core (native/, Rust): cargo's build is cached here, so a rebuild after a change is seconds.
# NATIVE=0 skips it; the workers then run the Python processors alone (several times slower).
NATIVE ?= 1
CARGO_TARGET_DIR ?= $(HOME)/.cache/maple/cargo-target
NATIVE_SRC := $(wildcard native/src/*.rs) native/Cargo.toml native/Cargo.lock native/pyproject.toml native/maple_native.pyi

.PHONY: help install install-run ui ui-test up test test-fast lint kafka-start kafka-stop clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Stamps: what running Maple needs (`make up`), the test extras on top (`make test`, `make install`), and
# the compiled core (both).
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

NATIVE_STAMP := $(VENV)/.native-$(NATIVE)

$(NATIVE_STAMP): $(RUN_DEPS) $(NATIVE_SRC)
ifeq ($(NATIVE),0)
	@echo "NATIVE=0: the compiled core is not built; workers transform with the Python processors"
	-$(BIN)/pip uninstall --quiet --yes maple-native
else
	@command -v cargo >/dev/null 2>&1 || { echo "make: cargo (Rust) is needed to build Maple's compiled core in native/." \
	  "Install Rust (https://rustup.rs, or your system's cargo package), or run with NATIVE=0 to use the" \
	  "Python processors alone (several times slower per record)." >&2; exit 1; }
	$(BIN)/pip install --quiet 'maturin>=1.7,<2'
	PATH="$(abspath $(BIN)):$$PATH" CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) $(BIN)/pip install --quiet --no-build-isolation ./native
endif
	@rm -f $(VENV)/.native-*
	@touch $@

install-run: $(RUN_DEPS) $(NATIVE_STAMP)  ## create .venv with what running Maple needs (no test tools) and the compiled core

install: $(TEST_DEPS) $(NATIVE_STAMP)  ## create .venv with Maple, its test extras (pytest, the OTel SDK, ruff, mypy, ...) and the compiled core

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
