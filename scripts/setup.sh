#!/usr/bin/env bash
# Create .venv and install adaprune with its `[dev]` extra (the worker's engine plus the test and
# lint tools), and the headless browser the web page's test drives. A second run with the same
# pyproject.toml and torch spec does nothing: the stamp .venv/setup.stamp holds their hash, written
# only after pip succeeded; any change re-installs. Delete the stamp to force a re-install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# torch first, pinned, so pip never resolves a multi-GB CUDA build for the `[worker]` requirement.
TORCH_SPEC=${ADAPRUNE_TORCH_SPEC:-torch==2.13.0}
LOG=.venv/setup.log
STAMP=.venv/setup.stamp

wanted_stamp() { { cat pyproject.toml; echo "torch: $TORCH_SPEC"; } | sha256sum | cut -d' ' -f1; }

install() {
  # pip's chatter goes to the log; on failure the log's tail says why
  if ! .venv/bin/python -m pip install "$@" >>"$LOG" 2>&1; then
    echo "setup failed: pip install $*" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
}

install_python_packages() {
  if [ ! -x .venv/bin/python ]; then
    echo "setting up .venv (first run: a few minutes)" >&2
    "$PYTHON" -m venv .venv
  fi
  : >"$LOG"
  rm -f "$STAMP"
  if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    install "$TORCH_SPEC"
  fi
  # torchvision in its own step, without dependencies: it pins torch exactly, and resolving that
  # pin must never replace the CPU torch installed above (its C extension is then unused; the
  # test suite declares the two operator schemas it needs, see tests/support/torchvision_ops.py).
  if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torchvision') is None)" \
    >/dev/null 2>&1; then
    install --no-deps "torchvision==0.28.0"
  fi
  install -e ".[dev]"
  wanted_stamp >"$STAMP"
}

# Debian's chromium, for tests/ui; only where it is missing and apt can install it.
install_browser() {
  if command -v chromium >/dev/null 2>&1; then
    return
  fi
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "warning: chromium is missing and cannot be installed here (the web page test needs it)" >&2
    return
  fi
  echo "installing chromium (apt)" >&2
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    >>/tmp/adaprune-apt.log 2>&1; then
    echo "warning: could not install chromium (see /tmp/adaprune-apt.log)" >&2
  fi
}

if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(wanted_stamp)" ]; then
  echo "setup: .venv is current" >&2
else
  install_python_packages
fi
install_browser
