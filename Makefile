# DVC Hub — the two commands of the README, and their parts.
#   make demo   set up, then run the whole hub on its embedded defaults (Ctrl-C stops it)
#   make test   set up, then lint, type-check and run the whole test suite
# Needs: Python 3.11+, Java 17+, Maven (the Kafka jars come from Maven Central, once).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck unit reliability soak bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required: install python3.11 and run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

setup: $(BIN)/.installed
	$(BIN)/python -c 'from hub.broker import EmbeddedBroker; from pathlib import Path; EmbeddedBroker(Path(".dvc-hub/kafka")).ensure_jars()'

demo: setup
	$(BIN)/dvc-hub up

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy hub connectors streams schemas bench

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest -m 'not e2e and not soak' $(PYTEST_ARGS)

reliability: setup
	$(BIN)/pytest -m 'not soak' tests/reliability $(PYTEST_ARGS)

soak: setup
	$(BIN)/pytest -m soak tests/reliability $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf .dvc-hub .pytest_cache .mypy_cache .ruff_cache
