#!/usr/bin/env bash
# Set up and run every test: core (CPU, tiny models), service, workers and deploy (real services).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
exec .venv/bin/python -m pytest -q "$@"
