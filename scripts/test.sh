#!/usr/bin/env bash
# Quick start 2: run the whole test suite (set-up included): the rule files' inline examples,
# pytest, then the static checks (mypy --strict, ruff). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${REMAP_VENV:-.venv}
"$VENV/bin/remap" test rules/
"$VENV/bin/python" -m pytest "$@"
echo "static checks: mypy --strict remap; ruff check" >&2
"$VENV/bin/mypy" --strict remap
"$VENV/bin/ruff" check remap tests benchmarks examples
