# Shortcuts over the scripts; scripts/test.sh is what CI runs.
PY := .venv/bin/python

.PHONY: setup style quality test test-core test-integration demo

setup:
	bash scripts/setup.sh

style:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# ruff lint and format, mypy, import contracts: the checks scripts/test.sh runs before pytest
quality:
	bash scripts/quality.sh

test:
	bash scripts/test.sh

test-core:
	$(PY) -m pytest -q tests/core tests/cli

test-integration:
	bash scripts/services.sh
	$(PY) -m pytest -q tests/service tests/workers tests/monitoring tests/deploy

demo:
	bash scripts/demo.sh
