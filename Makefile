# The two commands of the README: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-test demo serve test lint clean-demo

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

## Install what is missing, start the embedded PostGIS, load the demo and serve it on :8000.
demo: setup
	$(BIN)/riskatlas db upgrade
	$(BIN)/riskatlas demo load
	$(BIN)/riskatlas serve

serve: setup
	$(BIN)/riskatlas serve

## Install what is missing and run the whole test suite against a private PostGIS.
test: setup-test
	$(BIN)/pytest

lint: setup-test
	$(BIN)/ruff check api geo frontend migrations tests bench
