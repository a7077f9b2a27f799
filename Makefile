# Two commands on a fresh machine (Python 3.11, Java 17, Maven, Rust's cargo): `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The compiled core (native/, Rust): cargo's build is cached here, so a rebuild after a change is seconds.
# MAPLE_NATIVE=0 skips it; the workers then run the Python processors alone (several times slower).
MAPLE_NATIVE ?= 1
CARGO_TARGET_DIR ?= $(HOME)/.cache/maple/cargo-target
NATIVE_SRC := $(wildcard native/src/*.rs) native/Cargo.toml native/Cargo.lock native/pyproject.toml native/maple_native.pyi

.PHONY: help install up test test-fast lint kafka-start kafka-stop clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/maple: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

$(VENV)/.native-$(MAPLE_NATIVE): $(BIN)/maple $(NATIVE_SRC)
ifeq ($(MAPLE_NATIVE),0)
	@echo "MAPLE_NATIVE=0: the compiled core is not built; workers transform with the Python processors"
	-$(BIN)/pip uninstall --quiet --yes maple-native
else
	@command -v cargo >/dev/null 2>&1 || { echo "make: cargo (Rust) is needed to build Maple's compiled core in native/." \
	  "Install Rust (https://rustup.rs, or your system's cargo package), or run with MAPLE_NATIVE=0 to use the" \
	  "Python processors alone (several times slower per record)." >&2; exit 1; }
	$(BIN)/pip install --quiet 'maturin>=1.7,<2'
	PATH="$(abspath $(BIN)):$$PATH" CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) $(BIN)/pip install --quiet --no-build-isolation ./native
endif
	@rm -f $(VENV)/.native-*
	@touch $@

install: $(BIN)/maple $(VENV)/.native-$(MAPLE_NATIVE)  ## create .venv and install Maple with its test extras and its compiled core

up: install  ## run Maple locally: Kafka (KRaft) + embedded ClickHouse + stages; Ctrl-C stops
	$(BIN)/maple up

test: install  ## lint, then every test against a real Kafka broker and the real ClickHouse engine (CI runs this)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -ra

test-fast: install  ## the unit tests only: pure code, no broker, no ClickHouse, a few seconds
	$(BIN)/python -m pytest -ra tests/unit

lint: install  ## ruff and mypy over the whole project
	$(BIN)/ruff check .
	$(BIN)/mypy

kafka-start: install  ## start only the local Kafka in the background
	$(BIN)/maple kafka start

kafka-stop: install  ## stop the local Kafka
	$(BIN)/maple kafka stop

clean:  ## remove the virtualenv and local data (.maple)
	-$(BIN)/maple kafka stop
	rm -rf $(VENV) .maple
