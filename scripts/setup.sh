#!/usr/bin/env bash
# Create .venv and install adaprune with its test tools. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# torch first, pinned, so pip never resolves a multi-GB CUDA build for the bare requirement.
TORCH_SPEC=${ADAPRUNE_TORCH_SPEC:-torch==2.13.0}
LOG=.venv/setup.log

if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv (first run: a few minutes)" >&2
  "$PYTHON" -m venv .venv
fi
install() {
  # pip's chatter goes to the log; on failure the log's tail says why
  if ! .venv/bin/python -m pip install "$@" >>"$LOG" 2>&1; then
    echo "setup failed: pip install $*" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
}
: >"$LOG"
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  install "$TORCH_SPEC"
fi
# torchvision in its own step, without dependencies: it pins torch exactly, and resolving that pin
# must never replace the CPU torch installed above (its C extension is then unused; the test
# suite declares the two operator schemas it needs, see tests/support/torchvision_ops.py).
if ! .venv/bin/python -m pip show torchvision >/dev/null 2>&1; then
  install --no-deps "torchvision==0.28.0"
fi
install -e ".[dev]"
