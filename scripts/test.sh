#!/usr/bin/env bash
# Quick start 2: run the whole test suite (set-up included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${REMAP_VENV:-.venv}
"$VENV/bin/remap" test rules/
exec "$VENV/bin/python" -m pytest "$@"
