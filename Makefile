# DVC Hub — the two commands of the README, and their parts.
#   make demo   set up, then run the whole hub on its embedded defaults (Ctrl-C stops it)
#   make test   set up, then lint, type-check and run the whole test suite
# `make setup` first finds or installs the system programs (deploy/setup/system-deps.sh: Python 3.11+ with
# venv, Java 17+, Maven, Prometheus + promtool; apt-get as root, else it prints the command), then builds
# .venv from the hashed lock file, then fetches the Kafka jars once.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock
PYTEST_ARGS ?=
# `make lock` keeps every pin it can; `make lock LOCK_ARGS=--upgrade` (or --upgrade-package NAME) moves them.
LOCK_ARGS ?=

.PHONY: setup system-deps demo test lint typecheck unit reliability soak bench lock audit clean

system-deps:
	@PYTHON="$(PYTHON)" sh deploy/setup/system-deps.sh

# Every package comes from the lock, hash-checked; the hub itself is installed editable on top, without
# dependencies and without build isolation (its build backend, setuptools, is in the lock too), so that
# nothing is fetched unpinned. A changed lock gets a new venv: pip would not remove what the lock dropped.
$(BIN)/.installed: $(LOCK) pyproject.toml | system-deps
	@cmp -s $(LOCK) $(VENV)/installed.lock 2>/dev/null || { echo "creating $(VENV) from $(LOCK)"; $(PYTHON) -m venv --clear $(VENV); }
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	@# setuptools' advice on editable installs (folders named like the packages) is about every checkout: not shown.
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@cp $(LOCK) $(VENV)/installed.lock
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

# Re-resolve the locks after a change to pyproject.toml's dependencies (tests/test_supply_chain.py fails
# until it is done), for Python 3.11 on Linux x86_64, with the hash of every file. requirements.lock: every
# dependency and extra, plus pip and the build backend. requirements-runtime.lock, for the Docker image:
# the same pins (constrained by the first), without the extras.
LOCK_COMPILE = $(BIN)/uv pip compile pyproject.toml deploy/setup/build-requirements.in --generate-hashes \
  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" --quiet
lock: $(BIN)/.installed
	$(LOCK_COMPILE) --extra dev --extra rocksdb $(LOCK_ARGS) -o $(LOCK)
	$(LOCK_COMPILE) -c $(LOCK) -o requirements-runtime.lock

# Every locked package against PyPI's vulnerability data; accepted advisories: deploy/setup/audit-ignore.toml.
audit: $(BIN)/.installed
	$(BIN)/python deploy/setup/audit.py

clean:
	rm -rf .dvc-hub .pytest_cache .mypy_cache .ruff_cache
