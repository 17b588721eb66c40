#!/usr/bin/env bash
# Build the wheel from this checkout, install it (not editable) into a fresh venv, and use it
# from outside the repository as a user would: remap --help, remap list, and a conversion of the
# bundled example by rule-file name. Run by .ci/run; usable by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOG="$WORK/log"
fail() { echo "error: wheel check: $*; see the log below" >&2; tail -30 "$LOG" >&2; exit 1; }

python3 -m venv "$WORK/venv"
# A copy of what a clone would hold (tracked files, plus new ones git does not ignore): build
# output, venvs and caches in the checkout must not reach the wheel.
mkdir -p "$WORK/src"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && xargs -0 cp --parents -t "$WORK/src" 2>/dev/null || true)
"$WORK/venv/bin/python" -m pip --disable-pip-version-check wheel -q --no-deps -w "$WORK/dist" "$WORK/src" \
    >>"$LOG" 2>&1 || fail "the wheel does not build"
WHEEL=$(ls "$WORK"/dist/remap-*.whl)
"$WORK/venv/bin/python" - "$WHEEL" <<'PY' || fail "the wheel lacks files"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["remap/py.typed", "remap/_rules/distilhubert.yaml", "remap/io/readers/unpickle.py",
        "remap/verify/adapters/distilhubert.py", "remap/authoring/pytest_plugin.py"]
missing = [n for n in need if n not in names]
sys.exit(f"missing from the wheel: {missing}" if missing else 0)
PY

PIP=("$WORK/venv/bin/python" -m pip --disable-pip-version-check install -q)
"${PIP[@]}" -c "$ROOT/constraints.txt" "torch==2.13.0" >>"$LOG" 2>&1 || fail "cannot install torch 2.13.0"
"${PIP[@]}" -c "$ROOT/constraints.txt" "$WHEEL" >>"$LOG" 2>&1 || fail "cannot install the wheel"

cd "$WORK"  # outside the repository: nothing may come from the checkout
REMAP="$WORK/venv/bin/remap"
"$REMAP" --help >"$LOG" 2>&1 || fail "remap --help"
"$REMAP" list >"$WORK/list" 2>>"$LOG" || fail "remap list"
grep -q "^distilhubert .*HubertModel" "$WORK/list" || { cat "$WORK/list" >>"$LOG"; fail "remap list does not show distilhubert"; }
cp "$ROOT/examples/distilhubert-tiny.ckpt" "$WORK/example.ckpt"
HF_HUB_OFFLINE=1 REMAP_CACHE=off "$REMAP" apply distilhubert example.ckpt -o out >>"$LOG" 2>&1 \
    || fail "remap apply distilhubert"
"$WORK/venv/bin/python" - <<'PY' >>"$LOG" 2>&1 || fail "the output does not load cleanly"
import remap, pathlib
assert "site-packages" in remap.__file__, remap.__file__
from transformers import HubertModel
_, info = HubertModel.from_pretrained("out", output_loading_info=True)
assert not any(info.values()), info
print("loaded", sorted(p.name for p in pathlib.Path("out").iterdir()))
PY
echo "wheel check: $(basename "$WHEEL") installs, lists its rule files and converts the example by name" >&2
