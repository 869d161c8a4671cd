#!/usr/bin/env bash
# Set up, run the static checks (scripts/quality.sh), then every test: core (CPU, tiny models),
# service, workers and deploy (real services). Arguments go to pytest.
# ADAPRUNE_SKIP_SETUP=1 skips installing and starting services (a machine already set up);
# ADAPRUNE_VENV picks the virtualenv (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ADAPRUNE_VENV:-.venv}
if [ "${ADAPRUNE_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup.sh
  bash scripts/services.sh
fi
ADAPRUNE_VENV=$VENV bash scripts/quality.sh
status=0
# the slowest tests are listed so that the suite's time can be kept in check
"$VENV/bin/python" -m pytest -q --durations=20 "$@" || status=$?
# pytest's 5 means that nothing was collected: a selection or a path that matches no test
# is a broken run, not a green one.
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests (exit 5): the run fails" >&2
elif [ "$status" -ne 0 ]; then
  echo "pytest failed (exit $status)" >&2
fi
exit "$status"
