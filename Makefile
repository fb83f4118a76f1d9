# Gatehouse: `make dev` serves every function locally on emulators; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
OWNER  ?= owner@example.com

CHECKOV := .venv-checkov

.PHONY: venv dev test lint token bench package clean

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

dev: venv
	$(BIN)/python -m tools.dev --port $(PORT) --owner $(OWNER)

# The server's suite, then the Python client's (client/tests: its own session on the same stack).
test: venv $(CHECKOV)/.installed lint
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q client/tests

# The house's gate: lint and format (configuration in pyproject.toml).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

token: venv
	@test -n "$(EMAIL)" || (echo "usage: make token EMAIL=someone@example.com" >&2; exit 2)
	@$(BIN)/python -m tools.token $(EMAIL)

bench: venv
	$(BIN)/python -m bench.run $(BENCH)

package: venv
	$(BIN)/python -m tools.package --out dist

clean:
	rm -rf $(VENV) $(CHECKOV) .dev .pytest_cache dist
