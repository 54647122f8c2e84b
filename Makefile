# Two commands do all set-up on a fresh machine (only Python 3.11+ needed):
#   make run    the embedded stack (Temporal dev server + Web UI, worker, SQLite, mail sink) and a demo
#   make test   the whole test suite (SQLite and PostgreSQL, time-skipping and dev servers)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/loanflow up --demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.crash $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
