#!/usr/bin/env bash
# Set up, then run the whole stack on this machine (embedded Redis, SQLite, local artifact
# directory, API, one worker) and take the demo job to a verified, pulled artifact.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ADAPRUNE_HOME=${ADAPRUNE_HOME:-$PWD/.adaprune}
exec .venv/bin/adaprune up --port "${ADAPRUNE_PORT:-8000}" --demo "$@"
