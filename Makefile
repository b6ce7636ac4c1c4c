# Two commands from a clean clone:  `make test`  and  `make demo`.
#
#   make venv   create .venv and install leadflow with its dev extras (instant when up to date)
#   make test   ruff, mypy --strict, then pytest on SQLite and again on PostgreSQL (scripts/test.sh)
#   make fuzz   schemathesis over every operation (>= 10,000 requests) + property tests; counts in docs/
#   make reliability  kill -9 crash tests at 200k rows/leads, 8 concurrent writers, on SQLite and PostgreSQL
#   make demo   migrate, load demo data and serve on http://127.0.0.1:8000 (prints the admin token)

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := test
.PHONY: venv test demo fuzz reliability

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

# >= 10,000 generated requests over every operation (as admin and as a rep); the counts are
# written to docs/fuzz-counts.json (see docs/RELIABILITY.md).
fuzz: venv
	LEADFLOW_FUZZ_EXAMPLES=$${LEADFLOW_FUZZ_EXAMPLES:-60} LEADFLOW_FUZZ_REPORT=docs/fuzz-counts.json \
	LEADFLOW_PROPERTY_EXAMPLES=2000 LEADFLOW_MATRIX_EXAMPLES=10 \
	$(VENV)/bin/pytest -q -p no:warnings tests/test_fuzz.py tests/test_robustness_properties.py tests/test_access_matrix.py

# The crash tests at full size (kill -9 of a 200k-row import, of a 200k-lead rescore, of the
# cadence worker mid-send) and the concurrency tests, on SQLite then on PostgreSQL (scripts/test.sh,
# without its lint steps: a throwaway PostgreSQL database, or LEADFLOW_TEST_PG_URL).
reliability: venv
	LEADFLOW_CRASH_ROWS=200000 LEADFLOW_CRASH_LEADS=200000 LEADFLOW_TEST_SKIP_LINT=1 \
	bash scripts/test.sh -q -p no:warnings tests/test_crash.py tests/test_worker.py tests/test_concurrency.py
