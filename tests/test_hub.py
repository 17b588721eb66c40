"""With no SOURCE, `remap apply` uses the rule file's published checkpoint through the HF cache.

No test downloads anything: the cache is laid out on local disk, and the
offline case runs with HF_HUB_OFFLINE=1 and an empty cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLE, ROOT, RULES

REPO, FILE = "leo19941227/distilhubert", "distilhubert_ls960_4-8-12.ckpt"


def run_remap(*args: str | Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent)}
    return subprocess.run([sys.executable, "-m", "remap", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False)


def test_default_checkpoint_comes_from_the_hub_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / f"models--{REPO.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / FILE).write_bytes(EXAMPLE.read_bytes())
    out = tmp_path / "out"
    proc = run_remap("apply", RULES, "-o", out, cache=cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out}: 48 mapped, 4 dropped, 1 initialised")
    assert (out / "model.safetensors").exists()


def test_no_network_and_no_cache_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_remap("apply", RULES, "-o", out, cache=tmp_path / "empty")
    assert proc.returncode == 1
    assert proc.stderr == (f"error: cannot fetch {REPO}/{FILE}: no network and not in the Hugging Face cache; "
                           "download it elsewhere and pass it as SOURCE\n")
    assert not out.exists()


def test_no_network_without_offline_mode_fails_fast_in_one_line(tmp_path: Path) -> None:
    """With HF_HUB_OFFLINE unset and the hub unreachable (an endpoint nothing listens on), no retry loop."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update({"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HOME": str(tmp_path), "HF_ENDPOINT": "https://127.0.0.1:9"})
    proc = subprocess.run([sys.executable, "-m", "remap", "apply", str(RULES), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=60)
    assert (proc.returncode, proc.stderr) == (1, f"error: cannot fetch {REPO}/{FILE}: no network and not in the "
                                                 "Hugging Face cache; download it elsewhere and pass it as SOURCE\n")
