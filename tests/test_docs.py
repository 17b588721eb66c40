"""The docs' examples run: every rule file in docs/*.md compiles and its examples pass (or fails as marked)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from remap import RuleError, compile_text, run_examples
from tests.conftest import ROOT

BLOCK = re.compile(r"(?:<!-- error: (?P<error>[^\n]*?) -->\n)?```yaml\n(?P<body>.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, str, str | None]]:
    found = []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for n, match in enumerate(BLOCK.finditer(doc.read_text())):
            if match.group("body").startswith("remap: 1"):
                found.append((f"{doc.name}#{n}", match.group("body"), match.group("error")))
    return found


DOC_BLOCKS = blocks()


def test_the_docs_have_rule_examples() -> None:
    assert len(DOC_BLOCKS) >= 10


@pytest.mark.parametrize("name, body, error", DOC_BLOCKS, ids=[b[0] for b in DOC_BLOCKS])
def test_doc_rule_file(name: str, body: str, error: str | None) -> None:
    if error is not None:
        with pytest.raises(RuleError) as caught:
            compile_text(body, "docs.yaml")
        assert str(caught.value) == error
        return
    ruleset = compile_text(body, "docs.yaml")
    assert [str(failure) for failure in run_examples(ruleset)] == []
    ruleset.target_config(ruleset.environment({}))  # lets, requires and config expressions evaluate


def console_steps() -> list[tuple[str, int]]:
    """Each `$ ` line of docs/new-model.md, with the exit code the prose promises (1 for lint here)."""
    text = (ROOT / "docs" / "new-model.md").read_text()
    steps = []
    for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                command = line[2:]
                steps.append((command, 1 if command.startswith("remap lint draft.yaml") else 0))
    return steps


def test_new_model_walkthrough_runs_as_written(tmp_path: Path) -> None:
    import json
    import os
    import shlex
    import subprocess
    import sys

    for name in ("examples", "rules"):
        (tmp_path / name).symlink_to(ROOT / name)
    config = re.search(r"```json\n(.*?)```", (ROOT / "docs" / "new-model.md").read_text(), re.DOTALL)
    assert config is not None
    (tmp_path / "target-config.json").write_text(json.dumps(json.loads(config.group(1))))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    steps = console_steps()
    assert [c.split()[1] for c, _ in steps if c.startswith("remap")] == [
        "inspect", "suggest", "test", "lint", "explain", "plan", "apply", "verify"]
    for command, expected in steps:
        argv = shlex.split(command)
        argv = [sys.executable, "-m", "remap", *argv[1:]] if argv[0] == "remap" else [sys.executable, *argv[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == expected, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert "48 mapped" in subprocess.run([sys.executable, "-m", "remap", "plan", "rules/distilhubert.yaml",
                                          "examples/distilhubert-tiny.ckpt"], cwd=tmp_path, env=env,
                                         capture_output=True, text=True, check=True).stdout


def test_the_op_reference_is_generated_from_the_ops_themselves() -> None:
    from remap.ops import STRUCTURES, TENSOR_OPS
    from remap.ops.docs import BEGIN, END, reference

    text = (ROOT / "docs" / "rules.md").read_text()
    section = text[text.index(BEGIN): text.index(END) + len(END) + 1]
    assert section == reference(), "docs/rules.md is out of date: run `python -m remap.ops.docs`"
    for name in [*STRUCTURES, *TENSOR_OPS]:  # every op has a tested example in the docs
        assert f"#### `{name}`" in section and f"name: op-{name.replace('_', '-')}\n" in section
