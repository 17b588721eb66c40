"""Shared fixtures: paths, a CLI runner, and s3prl-layout checkpoints built on demand."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download during tests
# The target-shape cache lives in a per-run temporary folder, never in the user's home.
os.environ["REMAP_CACHE"] = tempfile.mkdtemp(prefix="remap-test-cache-")
warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated", category=FutureWarning)

pytest_plugins = ["pytester", "tests.golden"]

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "distilhubert.yaml"
EXAMPLE = ROOT / "examples" / "distilhubert-tiny.ckpt"

# A small distiller with the same structure as DistilHuBERT (group norm,
# post_extract_proj, weight-normed positional conv, expand-last heads).
TINY: dict[str, Any] = {
    "extractor_conv_feature_layers": "[(24,10,5)] + [(24,3,2)] * 2 + [(24,2,2)]",
    "conv_pos": 16, "conv_pos_groups": 4, "encoder_layers": 2, "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4, "final_dim": 16, "n_tasks": 3,
}


def example_count(path: Path = RULES) -> int:
    """How many inline examples a rule file declares (counted by the compiler)."""
    from remap import compile_file

    return len(compile_file(path).examples)


def line_of(path: Path, needle: str) -> int:
    """1-based line number of the first line of ``path`` that starts with ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith(needle):
            return number
    raise AssertionError(f"{needle!r} not found in {path}")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``remap`` in-process; returns exit code and captured output."""
    from remap.cli import main
    from tests.provenance_check import check_provenance

    def run(*args: str | Path) -> Result:
        argv = [str(a) for a in args]
        code = main(argv)
        captured = capsys.readouterr()
        if code == 0:
            check_provenance(argv)  # every successful conversion's provenance matches its plan
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def make_ckpt(tmp_path: Path):
    """Write an s3prl-layout checkpoint of s3prl's DistillerModel; returns (path, model)."""
    from tests.reference import build_distiller, save_s3prl_checkpoint

    def make(config: dict[str, Any], name: str = "states.ckpt", seed: int = 0):
        model = build_distiller(config, seed=seed)
        path = tmp_path / name
        save_s3prl_checkpoint(model, config, path)
        return path, model

    return make

# tests/rulepack is a package to install (scripts/setup.sh), not tests: collecting it would put its
# source folder on sys.path and shadow the installed copy that tests/test_catalog.py checks.
collect_ignore = ["rulepack"]
