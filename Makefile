# smshub: `make run` starts the hub on embedded defaults, `make test` installs and runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck bench screenshots system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

## run: create the venv, migrate the database and start the hub (Ctrl-C stops it)
run: $(STAMP)
	$(BIN)/smshub db upgrade
	$(BIN)/smshub run

## test: install what the tests need (Python packages, Kannel, Dovecot) and run them
test: $(STAMP) system-deps
	$(BIN)/ruff check hub connectors scheduler tests bench
	$(BIN)/mypy hub connectors scheduler
	scripts/test.sh

## system-deps: the real servers the tests start (Debian packages)
system-deps:
	scripts/install-system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check hub connectors scheduler tests bench
	$(BIN)/ruff format --check hub connectors scheduler tests bench

typecheck: $(STAMP)
	$(BIN)/mypy hub connectors scheduler

## screenshots: the console journeys in Chromium, saving the README's docs/screenshots/*.png
screenshots: $(STAMP) system-deps
	SMSHUB_SCREENSHOTS=$(CURDIR)/docs/screenshots scripts/test.sh tests/browser

bench: $(STAMP)
	$(BIN)/python bench/dispatch.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
