# One line for a new user: `make test` (tests) or `make demo` (the demo study end to end).
# Every install step lives here, so a fresh machine needs only python3.11 and make.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test processes (pytest-xdist). Most of the slow tests wait on process and Ray start-ups, not
# the CPU: two processes keep 2 cores busy. A file runs whole in one process (--dist loadfile),
# so a module's shared fixtures (a Ray cluster, a served worker, a reproduction) start once.
# TEST_WORKERS=0 runs them in this process (for --pdb or -s).
TEST_WORKERS ?= 2

.PHONY: install test test-fast demo bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned in pyproject.toml to the CPU wheel that installs from local files
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

demo: $(STAMP)
	$(BIN)/memtune demo

bench: $(STAMP)
	$(BIN)/python bench/optimizer_step.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
