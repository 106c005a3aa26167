# The two commands of the README: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-test demo serve test lint audit lock clean-demo

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

## Check the locked dependencies for known vulnerabilities (pip-audit; says so when no
## vulnerability database is reachable from this machine, exit status 2).
audit: setup-test
	@scripts/audit.sh

## Re-pin requirements*.lock after a change to pyproject.toml (uv, from PyPI, in the venv).
lock:
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra test --generate-hashes --universal \
	  --python-version 3.11 -o requirements-test.lock
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 \
	  -c requirements-test.lock -o requirements.lock
