#!/usr/bin/env bash
# Create .venv with remap, its tests' dependencies and s3prl's reference model code.
# Idempotent: re-running after a successful set-up only checks a stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${REMAP_VENV:-.venv}
STAMP="$VENV/.remap-setup"
WANT=$(cat constraints.txt pyproject.toml scripts/setup.sh tests/rulepack/pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    exit 0
fi

echo "setting up $VENV (torch CPU build, transformers, s3prl reference code)..." >&2
python3 -m venv "$VENV"
LOG="$VENV/setup.log"
: > "$LOG"
trap 'echo "error: set-up failed; see $LOG" >&2; tail -20 "$LOG" >&2' ERR
pip_install() { "$VENV/bin/python" -m pip --disable-pip-version-check install "$@" >>"$LOG" 2>&1; }
# torch first and pinned: any other version pulls a multi-GB CUDA build.
pip_install -c constraints.txt "torch==2.13.0"
pip_install -c constraints.txt -e ".[test,dev]"
# A rule pack registered through the `remap.rules` entry point, as another project ships one
# (tests/test_catalog.py). Installed like a user would, not in editable mode.
pip_install --no-deps ./tests/rulepack
# s3prl declares torchaudio, whose only available build fails to load with this
# torch and then breaks transformers' model imports. Its reference model code
# (s3prl.upstream.*) needs only torch and numpy, so install it without deps.
pip_install --no-deps "s3prl==0.4.18"
# openai-whisper, for the Whisper rule file's reference model and its tokenizer's vocabulary
# (whisper/assets/*.tiktoken). Its declared deps include triton (a GPU compiler, hundreds of MB);
# whisper.model needs only these.
pip_install --no-deps -c constraints.txt "openai-whisper==20250625"
pip_install -c constraints.txt tiktoken more-itertools numba
# The audio codecs' reference code (tests only). moshi declares exact torch and numpy ranges that
# would replace the pinned builds; encodec and descript-audio-codec declare torchaudio (and
# descript-audiotools, with librosa and tensorboard). Their model code needs none of that: the
# few module-level imports it does make are served by tests/standins/ (see its README).
pip_install --no-deps -c constraints.txt "moshi==0.2.13" "encodec==0.1.1" "descript-audio-codec==1.0.0"
pip_install --no-deps -c constraints.txt einops sentencepiece
"$VENV/bin/python" - <<'PY'
import importlib.util, sys
if importlib.util.find_spec("torchaudio") is not None:
    sys.exit("error: torchaudio is installed in the venv; it breaks transformers' imports here")
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    import s3prl.upstream.distiller.model  # noqa: F401
import whisper.model, tiktoken  # noqa: F401,E401
import moshi.models.loaders  # noqa: F401
import transformers, remap  # noqa: F401,E401
PY
echo "$WANT" > "$STAMP"
echo "set-up done" >&2
