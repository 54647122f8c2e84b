# Two commands do all set-up on a fresh machine (only Python 3.11+ needed):
#   make run    the embedded stack (Temporal dev server + Web UI, worker, SQLite, mail sink) and a demo
#   make test   the whole test suite (SQLite and PostgreSQL, time-skipping and dev servers)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean chromium

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/loanflow up --demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The Web UI test drives Debian's headless Chromium (installed once; root or sudo needed).
chromium:
	@command -v chromium >/dev/null || ( \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium )

bench: $(STAMP)
	$(BIN)/python -m bench.crash $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
