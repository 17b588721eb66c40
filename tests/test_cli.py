"""The `remap` command: outputs, one-line errors, exit codes, and nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.conftest import EXAMPLE, ROOT, RULES, TINY, example_count, line_of


def test_apply_writes_a_loadable_folder_with_metadata(cli, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = cli("apply", RULES, EXAMPLE, "-o", out)
    assert result.code == 0, result.err
    assert result.out.startswith(f"wrote {out}: 48 mapped, 4 dropped, 1 initialised, ")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json",
                                                   "remap-provenance.json"]
    with safe_open(out / "model.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["remap.ruleset"] == "distilhubert"
    assert meta["remap.source"] == "distilhubert-tiny.ckpt"
    import hashlib
    assert meta["remap.ruleset_sha256"] == hashlib.sha256(RULES.read_bytes()).hexdigest()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["HubertModel"] and config["model_type"] == "hubert"
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_output_loads_with_automodel_and_feature_extractor(cli, tmp_path: Path) -> None:
    from transformers import AutoFeatureExtractor, AutoModel

    out = tmp_path / "model"
    assert cli("apply", RULES, EXAMPLE, "-o", out).code == 0
    model, info = AutoModel.from_pretrained(out, output_loading_info=True)
    assert type(model).__name__ == "HubertModel"
    assert {k: v for k, v in info.items() if v} == {}
    fe = AutoFeatureExtractor.from_pretrained(out)
    assert (type(fe).__name__, fe.sampling_rate, fe.feature_size, fe.do_normalize) == (
        "Wav2Vec2FeatureExtractor", 16000, 1, False)


def test_conversion_is_deterministic(cli, tmp_path: Path) -> None:
    assert cli("apply", RULES, EXAMPLE, "-o", tmp_path / "a").code == 0
    assert cli("apply", RULES, EXAMPLE, "-o", tmp_path / "b").code == 0
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_missing_parent_folders_are_created_and_removed_again_on_failure(cli, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "a" / "b" / "model"
    assert cli("apply", RULES, EXAMPLE, "-o", out).code == 0
    assert (out / "model.safetensors").exists()

    def fail(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("remap.pipeline.write_weights", fail)
    result = cli("apply", RULES, EXAMPLE, "-o", tmp_path / "c" / "d" / "model")
    assert result.err == f"error: {tmp_path / 'c' / 'd' / 'model'}: writing failed: Input/output error\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_existing_output_is_refused_without_force(cli, tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert cli("apply", RULES, EXAMPLE, "-o", out, "--max-shard-size", "50KB").code == 0
    shards = sorted(p.name for p in out.iterdir())
    result = cli("apply", RULES, EXAMPLE, "-o", out)
    assert (result.code, result.err) == (1, f"error: {out}: output folder already exists; pass --force to replace it\n")
    assert sorted(p.name for p in out.iterdir()) == shards
    result = cli("apply", RULES, EXAMPLE, "-o", out, "--force")
    assert result.code == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json",
                                                   "remap-provenance.json"]


def test_failure_while_writing_leaves_nothing(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from remap.io.execute import produce

    def explode(recipe, tensors):
        if recipe.inputs[0].startswith("encoder.layers.1"):
            raise OSError(28, "No space left on device")
        return produce(recipe, tensors)

    monkeypatch.setattr("remap.pipeline.produce", explode)
    out = tmp_path / "model"
    result = cli("apply", RULES, EXAMPLE, "-o", out)
    assert (result.code, result.err) == (1, f"error: {out}: writing failed: No space left on device\n")
    assert list(tmp_path.iterdir()) == []


def test_plan_problems_are_listed_and_nothing_is_written(cli, make_ckpt, tmp_path: Path) -> None:
    ckpt, _ = make_ckpt(TINY)
    rules = tmp_path / "rules.yaml"
    text = RULES.read_text().replace("  - from: encoder.layers.{n:int}.fc2.{param:weight|bias}\n"
                                     "    to: encoder.layers.{n}.feed_forward.output_dense.{param}\n"
                                     "    examples:\n"
                                     "      - encoder.layers.11.fc2.bias: encoder.layers.11.feed_forward.output_dense.bias\n",
                                     "")
    assert "fc2" not in text
    rules.write_text(text)
    out = tmp_path / "model"
    result = cli("apply", rules, ckpt, "-o", out)
    assert result.code == 1
    lines = result.err.splitlines()
    unmapped = [f"error: {ckpt}: source key 'encoder.layers.{n}.fc2.{p}' is not mapped by any rule; add a rule "
                "for it, or drop it explicitly" for n in (0, 1) for p in ("bias", "weight")]
    target_line = line_of(rules, "  class: HubertModel")
    missing = [f"error: {rules}:{target_line}: HubertModel key 'encoder.layers.{n}.feed_forward.output_dense.{p}' {s} is not "
               "produced by any rule; map a source key to it, or declare it under 'init' or 'allow_missing'"
               for n in (0, 1) for p, s in (("bias", "[32]"), ("weight", "[32, 64]"))]
    assert sorted(lines[:-1]) == sorted(unmapped + missing)
    keys = [line.split("'")[1] for line in lines[:-1]]
    assert keys == sorted(keys)
    assert lines[-1] == "error: 8 problem(s); nothing was written"
    assert not out.exists()


def test_plan_prints_the_accounting_table(cli) -> None:
    result = cli("plan", RULES, EXAMPLE)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "summary: 48 mapped, 4 dropped, 1 initialised, 0 allowed missing, 0 problems"
    assert lines[2].split() == ["source", "target", "shape", "dtype", "rule"]
    row = next(line for line in lines if line.startswith("encoder.pos_conv.0.weight_g "))
    assert row.split() == ["encoder.pos_conv.0.weight_g", "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
                           "[1,", "1,", "16]", "float32",
                           f"{RULES}:{line_of(RULES, '  - from: encoder.pos_conv.0.weight_g')}"]
    assert "dropped:" in lines and "initialised:" in lines
    assert any(line.startswith("output_layer.0.weight ") and "distillation prediction heads" in line for line in lines)
    assert any(line.startswith("masked_spec_embed ") and " uniform " in line for line in lines)


def test_plan_exits_non_zero_on_problems(cli, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.read_text().replace("  - drop: output_layer.**", "  - drop: output_layer.nothing"))
    result = cli("plan", rules, EXAMPLE)
    assert result.code == 1
    assert "4 problems" in result.out.splitlines()[0]
    assert f"  {EXAMPLE}: source key 'output_layer.0.bias' is not mapped by any rule" in result.out


def test_inspect_lists_tensors_and_other_entries(cli) -> None:
    result = cli("inspect", EXAMPLE)
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].startswith("distilhubert-tiny.ckpt: ")
    assert any(line.split() == ["Distiller.encoder.pos_conv.0.weight_v", "[32,", "8,", "16]", "float32"] for line in lines)
    assert "  Step = 1000" in lines
    assert any(line.startswith("  Args = argparse.Namespace(config='config_runner.yaml'") for line in lines)
    assert "  Config.distiller.encoder_layers = 2" in lines


def test_test_command_runs_inline_examples(cli) -> None:
    result = cli("test", ROOT / "rules")
    assert result.code == 0
    total = sum(example_count(path) for path in (ROOT / "rules").glob("*.yaml"))
    assert result.out.splitlines()[-1] == f"{total} passed, 0 failed"


def test_test_command_reports_a_wrong_example(cli, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.read_text().replace(
        "      - encoder.layers.1.self_attn.out_proj.bias: encoder.layers.1.attention.out_proj.bias",
        "      - encoder.layers.1.self_attn.out_proj.bias: encoder.layers.1.attention.o_proj.bias"))
    result = cli("test", rules)
    assert result.code == 1
    example = line_of(rules, "      - encoder.layers.1.self_attn.out_proj.bias:")
    rule = line_of(rules, "  - from: encoder.layers.{n:int}.self_attn.")
    assert result.out.splitlines()[0] == (
        f"FAIL {rules}:{example}: example 'encoder.layers.1.self_attn.out_proj.bias': expected "
        "'encoder.layers.1.attention.o_proj.bias', got 'encoder.layers.1.attention.out_proj.bias' from rule "
        f"'encoder.layers.{{n:int}}.self_attn.{{proj:q|k|v|out}}_proj.{{param:weight|bias}}' ({rules}:{rule})")
    assert result.out.splitlines()[-1] == f"{example_count() - 1} passed, 1 failed"


def test_test_lint_and_plan_speak_json_with_one_diagnostic_shape(cli, tmp_path: Path) -> None:
    import json

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.read_text().replace(
        "      - encoder.layers.1.self_attn.out_proj.bias: encoder.layers.1.attention.out_proj.bias",
        "      - encoder.layers.1.self_attn.out_proj.bias: encoder.layers.1.attention.o_proj.bias"))
    tested = json.loads(cli("test", rules, "--json").out)
    assert (tested["passed"], tested["failed"]) == (example_count() - 1, 1)
    (failure,) = tested["failures"]
    example = line_of(rules, "      - encoder.layers.1.self_attn.out_proj.bias:")
    assert {k: failure[k] for k in ("file", "line", "severity", "key")} == {
        "file": str(rules), "line": example, "severity": "error", "key": "encoder.layers.1.self_attn.out_proj.bias"}
    assert failure["where"] == f"{rules}:{example}"
    linted = json.loads(cli("lint", RULES, "--no-target", "--json").out)
    assert linted["warnings"] == 0 and linted["notes"] == len(linted["findings"]) > 0
    assert set(linted["findings"][0]) == set(failure) and {f["severity"] for f in linted["findings"]} == {"note"}


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file: not a PyTorch checkpoint (zip or legacy), a safetensors file, or a folder of them"),
    (b"garbage" * 100, "unknown format: not a PyTorch checkpoint (zip or legacy), a safetensors file, or a folder "
                       "of them"),
])
def test_unreadable_checkpoint_is_a_one_line_error(cli, tmp_path: Path, content: bytes, reason: str) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    result = cli("apply", RULES, bad, "-o", tmp_path / "out")
    assert (result.code, result.err) == (1, f"error: {bad}: {reason}\n")
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint_is_a_one_line_error(cli, tmp_path: Path) -> None:
    bad = tmp_path / "cut.ckpt"
    data = EXAMPLE.read_bytes()
    bad.write_bytes(data[: len(data) - 2000])
    result = cli("inspect", bad)
    assert result.code == 1 and result.err.count("\n") == 1
    assert result.err.startswith(f"error: {bad}: ")


def test_checkpoint_with_a_code_running_pickle_is_shown_inert_not_executed(cli, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.ckpt"
    torch.save({"Distiller": {"w": torch.zeros(1)}, "Args": Evil()}, bad)
    result = cli("inspect", bad)
    assert result.code == 0, result.err
    assert any(line.startswith("  Args = posix.system(args=('touch ") for line in result.out.splitlines())
    assert not marker.exists()


def test_wrong_layout_names_the_missing_entry(cli, tmp_path: Path) -> None:
    ckpt = tmp_path / "plain.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.err == ("error: plain.pt: no entry 'Distiller' at the top level where the rule file expects the "
                          "state dict 'Distiller' (found: model)\n")


def test_unsupported_variant_is_refused_by_a_requirement(cli, make_ckpt, tmp_path: Path) -> None:
    ckpt, _ = make_ckpt({**TINY, "out_layer_type": "none", "task_emb_type": "add"})
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1
    line = line_of(RULES, "  - check: str(task_emb_type) in")
    assert result.err == (f"error: {RULES}:{line}: unsupported source: task embeddings 'add'/'concat'/'concat-last' change "
                          "the encoder input, which HubertModel cannot express (check `str(task_emb_type) in "
                          "[\"expand-last\", \"self-hidden\", \"none\"]`)\n")


def test_debug_shows_the_traceback(cli, tmp_path: Path) -> None:
    from remap import SourceError

    with pytest.raises(SourceError):
        cli("--debug", "inspect", tmp_path / "missing.ckpt")


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "remap", "test", str(RULES)], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"{example_count()} passed, 0 failed"


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "remap", "inspect", str(tmp_path / "nope.ckpt")],
                          capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stderr, proc.stdout) == (1, f"error: {tmp_path / 'nope.ckpt'}: no such file\n", "")


def test_help_and_test_do_not_import_torch_or_transformers() -> None:
    code = ("import sys, contextlib, io\n"
            "from remap.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['test', {str(RULES)!r}]) == 0\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout) == (0, "[]\n"), proc.stderr


def test_max_shard_size_writes_shards_and_an_index_transformers_loads(cli, make_ckpt, tmp_path: Path) -> None:
    from transformers import HubertModel

    ckpt, _ = make_ckpt(TINY)
    out = tmp_path / "sharded"
    result = cli("apply", RULES, ckpt, "-o", out, "--max-shard-size", "40KB")
    assert result.code == 0, result.err
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 1 and shards[-1] == f"model-{len(shards):05d}-of-{len(shards):05d}.safetensors"
    assert sorted(set(index["weight_map"].values())) == shards
    for name in shards:
        assert (out / name).stat().st_size <= 40_000 + 4096 or len(
            [k for k, v in index["weight_map"].items() if v == name]) == 1
    _, info = HubertModel.from_pretrained(out, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}


def test_bad_shard_size_is_a_one_line_error(cli, tmp_path: Path) -> None:
    result = cli("apply", RULES, EXAMPLE, "-o", tmp_path / "o", "--max-shard-size", "lots")
    assert (result.code, result.err) == (1, "error: invalid size 'lots'; use e.g. 2GB, 500MB or 1GiB\n")


def _interrupt_mid_write(ckpt: Path, out: Path, sig: int) -> subprocess.CompletedProcess[str]:
    """Start a conversion and send ``sig`` once its temporary folder exists.

    On a loaded machine the run can finish between two polls; then the output is
    removed and the run repeated, so the signal always lands mid-write.
    """
    import time

    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "remap", "apply", str(RULES), str(ckpt), "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not list(out.parent.glob(f".{out.name}.remap-*")) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(sig)
        _, err = proc.communicate()
        if not (proc.returncode == 0 and out.exists()):
            return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
        shutil.rmtree(out)
    raise AssertionError("the conversion always finished before the signal")


def test_killed_conversion_leaves_no_output_and_the_next_run_cleans_up(make_ckpt, tmp_path: Path) -> None:
    import signal

    ckpt, _ = make_ckpt({"encoder_layers": 2, "n_tasks": 3})  # full width: takes long enough to kill
    out = tmp_path / "model"
    _interrupt_mid_write(ckpt, out, signal.SIGKILL)
    assert not out.exists(), "a killed conversion must not leave the output folder"
    result = subprocess.run([sys.executable, "-m", "remap", "apply", str(RULES), str(ckpt), "-o", str(out)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_sigterm_cleans_up_immediately(make_ckpt, tmp_path: Path) -> None:
    import signal

    ckpt, _ = make_ckpt({"encoder_layers": 2, "n_tasks": 3})
    out = tmp_path / "model"
    result = _interrupt_mid_write(ckpt, out, signal.SIGTERM)
    assert (result.returncode, result.stderr) == (130, "error: interrupted; nothing was written\n")
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_force_never_replaces_the_folder_holding_the_source(cli, tmp_path: Path) -> None:
    folder = tmp_path / "ck"
    folder.mkdir()
    ckpt = folder / "tiny.ckpt"
    ckpt.write_bytes(EXAMPLE.read_bytes())
    result = cli("apply", RULES, ckpt, "-o", folder, "--force")
    assert result.err == f"error: {folder}: the output folder contains the source checkpoint; choose another folder\n"
    assert ckpt.exists()


def test_force_never_replaces_a_folder_with_foreign_files(cli, tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "config.json").write_text("{}")
    result = cli("apply", RULES, EXAMPLE, "-o", out, "--force")
    assert result.err == (f"error: {out}: refusing to replace a folder holding files remap did not write "
                          "(notes.txt); remove them or choose another folder\n")
    assert (out / "notes.txt").read_text() == "keep me"


def test_usage_errors_are_one_line_with_exit_code_1() -> None:
    proc = subprocess.run([sys.executable, "-m", "remap", "apply", str(RULES)], capture_output=True, text=True,
                          check=False)
    assert (proc.returncode, proc.stderr) == (
        1, "error: the following arguments are required: -o/--output (see 'remap apply --help')\n")


def test_plan_json_has_the_same_accounting(cli) -> None:
    result = cli("plan", RULES, EXAMPLE, "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["summary"] == {"mapped": 48, "dropped": 4, "initialised": 1, "allowed_missing": 0, "problems": 0}
    weight_g = next(m for m in data["mapped"] if m["source"] == "encoder.pos_conv.0.weight_g")
    assert weight_g == {"source": "encoder.pos_conv.0.weight_g", "sources": ["encoder.pos_conv.0.weight_g"],
                        "target": "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
                        "shape": [1, 1, 16], "dtype": "float32", "cast": None, "ops": "copy", "exact": True,
                        "rule": f"{RULES}:{line_of(RULES, '  - from: encoder.pos_conv.0.weight_g')}"}
    assert data["initialised"][0]["target"] == "masked_spec_embed" and data["problems"] == []


def test_debug_works_after_the_command_too(cli, tmp_path: Path) -> None:
    from remap import SourceError

    with pytest.raises(SourceError):
        cli("inspect", tmp_path / "missing.ckpt", "--debug")


def test_suggest_rejects_unknown_config_fields(cli, tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"hiden_size": 32}')
    result = cli("suggest", EXAMPLE, "--target", "HubertModel", "--config", config)
    assert result.err == f"error: {config}:1: 'hiden_size' is not a field of HubertConfig (did you mean 'hidden_size'?)\n"


def test_a_previous_output_moved_aside_by_a_killed_run_is_restored(cli, tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert cli("apply", RULES, EXAMPLE, "-o", out).code == 0
    dead = 2**22 + 12345  # a pid that does not exist
    aside = tmp_path / f".model.remap-{dead}-old"
    out.rename(aside)  # what a SIGKILL between the two renames of --force leaves
    assert cli("apply", RULES, EXAMPLE, "-o", tmp_path / "other").code == 0  # other destinations: untouched
    assert aside.exists()
    result = cli("apply", RULES, EXAMPLE, "-o", out)
    assert result.code == 1 and "already exists" in result.err  # restored first, so not overwritten silently
    assert (out / "model.safetensors").exists() and not aside.exists()
