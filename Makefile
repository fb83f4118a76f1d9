# Gatehouse: `make dev` serves every function locally on emulators; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
OWNER  ?= owner@example.com

.PHONY: venv dev test token bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

dev: venv
	$(BIN)/python -m tools.dev --port $(PORT) --owner $(OWNER)

test: venv
	$(BIN)/python -m pytest -q tests

token: venv
	@test -n "$(EMAIL)" || (echo "usage: make token EMAIL=someone@example.com" >&2; exit 2)
	@$(BIN)/python -m tools.token $(EMAIL)

bench: venv
	$(BIN)/python -m bench.run $(BENCH)

clean:
	rm -rf $(VENV) .dev .pytest_cache
