#!/usr/bin/env bash
# Quick start 1: convert the bundled DistilHuBERT example and check it against s3prl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${REMAP_VENV:-.venv}
OUT=out/distilhubert-tiny
"$VENV/bin/remap" apply rules/distilhubert.yaml examples/distilhubert-tiny.ckpt -o "$OUT" --force
"$VENV/bin/python" examples/check_parity.py examples/distilhubert-tiny.ckpt "$OUT"
