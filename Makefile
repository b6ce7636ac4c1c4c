# Two commands from a clean clone:  `make test`  and  `make demo`.
#
#   make venv   create .venv and install leadflow with its dev extras (instant when up to date)
#   make test   ruff, mypy --strict, then pytest on SQLite and again on PostgreSQL (scripts/test.sh)
#   make demo   migrate, load demo data and serve on http://127.0.0.1:8000 (prints the admin token)

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := test
.PHONY: venv test demo

venv: $(STAMP)

# Reinstall only when the package metadata changes (or the venv was deleted).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: venv
	bash scripts/test.sh

demo: venv
	$(VENV)/bin/leadflow demo
