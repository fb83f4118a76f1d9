# Gatehouse: `make dev` serves every function locally on emulators; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
OWNER  ?= owner@example.com

CHECKOV := .venv-checkov

.PHONY: venv dev test test-unit lint types token bench package clean browser

# The first install takes minutes: pip shows each package as it goes (no --quiet there).
$(VENV)/.installed: requirements.txt requirements-dev.txt client/pyproject.toml
	@echo "Installing the Python packages into $(VENV) (the first time takes a few minutes)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -r requirements-dev.txt
	touch $@
	@echo "$(VENV) is ready."

venv: $(VENV)/.installed

# checkov gets a venv of its own: it replaces python-hcl2's `hcl2` package with its own.
$(CHECKOV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# Data is kept in .dev/data across runs; FRESH=1 starts empty.
dev: venv
	$(BIN)/python -m tools.dev --port $(PORT) --owner $(OWNER) $(if $(FRESH),--fresh)

# The headless browser the docs page test drives: Debian's chromium and its driver (apt-get,
# as root or through sudo), installed only when missing.
CHROMEDRIVER := /usr/bin/chromedriver
$(CHROMEDRIVER):
	$(if $(filter 0,$(shell id -u)),,sudo) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver'

browser: $(CHROMEDRIVER)

# The server's suite, every tier (tests/unit, tests/integration, tests/system) with the coverage
# floor, then the Python client's (client/tests: its own session on the same stack).
test: venv $(CHECKOV)/.installed browser lint types
	$(BIN)/python -m pytest -q tests --cov --cov-report=term
	$(BIN)/python -m pytest -q client/tests

# The edit loop: tests/unit alone, no emulators, in seconds.
test-unit: venv
	$(BIN)/python -m pytest -q tests/unit

# Types: mypy on common/, functions/ and the client's package client/gatehouse (configuration in pyproject.toml).
types: venv
	$(BIN)/mypy

# The house's gate (configuration in pyproject.toml): lint and format here, types below, and
# branch coverage with a floor in `make test`.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

token: venv
	@test -n "$(EMAIL)" || (echo "usage: make token EMAIL=someone@example.com" >&2; exit 2)
	@$(BIN)/python -m tools.token $(EMAIL)

# BENCH=<name> runs one; CLIO_STORE=<a clio-store checkout> adds clio-store side by side (BENCH=clio).
bench: venv
	CLIO_STORE="$(CLIO_STORE)" $(BIN)/python -m bench.run $(BENCH)

package: venv
	$(BIN)/python -m tools.package --out dist

clean:
	rm -rf $(VENV) $(CHECKOV) .dev .pytest_cache dist
