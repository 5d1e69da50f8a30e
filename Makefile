# Two commands set everything up on a fresh clone with only python3 on PATH:
#   make run    creates .venv if needed, installs realsys, trains the default classifier
#   make test   the same set-up with the test extras, then the default test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A stamp per extra: reinstalls when pyproject.toml changes (a stale venv) or .venv is missing.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# Test processes side by side (pytest-xdist): most tests are compile-bound, and XLA compiles
# on one core, so two workers on 2 cores take about 0.7x the time of one. 0 = in this process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

.PHONY: setup run test test-slow lint bench bench-data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(RUN_STAMP)

setup: $(TEST_STAMP)

run: $(RUN_STAMP)
	$(BIN)/realsys train-classifier

test: $(TEST_STAMP)
	$(PYTEST)

test-slow: $(TEST_STAMP)
	$(PYTEST) -m slow

lint: $(TEST_STAMP)
	$(BIN)/ruff check realsys_cli tests

bench: $(RUN_STAMP)
	$(BIN)/python bench/run.py

bench-data: $(RUN_STAMP)
	$(BIN)/python bench/data_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
