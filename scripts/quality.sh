#!/usr/bin/env bash
# The static checks CI runs before the tests: ruff lint, ruff format, mypy (strict for core,
# service, workers and cli; pyproject.toml) and the import contracts (lint-imports).
# Every check runs; the script names each one that failed and exits 1 if any did.
# ADAPRUNE_VENV picks the virtualenv whose tools run (default .venv).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${ADAPRUNE_VENV:-.venv}/bin
# The checkout's packages, not an installed copy, are what mypy and lint-imports read.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

failed=()
check() {
  local name=$1
  shift
  echo "== $name: $*"
  if ! "$@"; then
    failed+=("$name")
    echo "!! $name failed" >&2
  fi
}
check "ruff check" "$BIN/ruff" check .
check "ruff format" "$BIN/ruff" format --check .
check "mypy" "$BIN/mypy" core service workers cli
check "import contracts" "$BIN/lint-imports" --no-logo

if [ ${#failed[@]} -gt 0 ]; then
  echo "quality checks failed: ${failed[*]}" >&2
  echo "fix them (make style fixes the ruff findings) before the tests run" >&2
  exit 1
fi
echo "quality checks passed"
