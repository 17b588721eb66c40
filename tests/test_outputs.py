"""What a conversion writes beside the weights, and what it may read besides the checkpoint.

- ``target.files``: JSON files computed from the config and from ``tensors`` (source shapes);
- ``target.tokenizer``: a transformers tokenizer from a vocabulary mapping, or from a tiktoken file an
  installed package ships, loaded back with AutoTokenizer and checked against tiktoken itself;
- ``--source-config``: a JSON or YAML config file for checkpoints released without one;
- a config whose numbers the weights cannot justify is refused before the target model is built.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from remap import ConfigError, RuleError, compile_text, convert, prepare

TINY_HUBERT = """\
    hidden_size: 8
    num_hidden_layers: 1
    num_attention_heads: 2
    intermediate_size: 16
    conv_dim: [8]
    conv_kernel: [4]
    conv_stride: [2]
    num_conv_pos_embeddings: 4
    num_conv_pos_embedding_groups: 2
"""


def hubert_source(tmp_path: Path) -> Path:
    """A tiny HubertModel's own state dict, saved as safetensors (a pure-rename source)."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                          conv_dim=[8], conv_kernel=[4], conv_stride=[2], num_conv_pos_embeddings=4,
                          num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    path = tmp_path / "hubert.safetensors"
    save_file({k: v.contiguous() for k, v in HubertModel(config).state_dict().items()}, path)
    return path


def rules(extra: str = "", defaults: str = "{}", config: str = TINY_HUBERT) -> str:
    return (f"remap: 1\nname: out\nsource:\n  state_dict: ''\n  defaults: {defaults}\ntarget:\n  class: HubertModel\n"
            f"  config:\n{config}{extra}rules:\n  - from: '{{k:path}}'\n    to: '{{k}}'\n")


def test_declared_json_files_are_computed_from_config_and_source_shapes(tmp_path: Path) -> None:
    extra = """\
  files:
    generation_config.json:
      decoder_start_token_id: {expr: start}
      forced: [[1, {expr: start + 1}], [2, null]]
      width: {expr: 'tensors["feature_projection.projection.weight"][0]'}
      literal: {nested: [true, "text"]}
"""
    ruleset = compile_text(rules(extra, defaults="{start: 50258}"), "r.yaml")
    convert(ruleset, hubert_source(tmp_path), tmp_path / "out")
    written = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert written == {"decoder_start_token_id": 50258, "forced": [[1, 50259], [2, None]], "width": 8,
                       "literal": {"nested": [True, "text"]}}


@pytest.mark.parametrize("name", ["../escape.json", "config.json", "vocab.json", "notes.txt"])
def test_a_declared_file_cannot_leave_the_folder_or_replace_remaps_own(name: str) -> None:
    with pytest.raises(RuleError, match=r"r\.yaml:\d+: target file name .* must be a plain \*\.json name"):
        compile_text(rules(f"  files:\n    '{name}': {{a: 1}}\n"), "r.yaml")


def test_a_ctc_tokenizer_is_built_from_a_computed_vocabulary(tmp_path: Path) -> None:
    """fairseq's <s>/<pad> swap, as a rule file expresses it, and | as the word delimiter."""
    from transformers import AutoTokenizer

    extra = """\
  tokenizer:
    class: Wav2Vec2CTCTokenizer
    vocab: {expr: '{s: (1 - i if i < 2 else i) for i, s in enumerate(symbols)}'}
    options: {pad_token: "<pad>", unk_token: "<unk>", word_delimiter_token: "|"}
"""
    symbols = '["<s>", "<pad>", "</s>", "<unk>", "|", "A", "B"]'
    ruleset = compile_text(rules(extra, defaults=f"{{symbols: {symbols}}}"), "r.yaml")
    convert(ruleset, hubert_source(tmp_path), tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert type(tokenizer).__name__ == "Wav2Vec2CTCTokenizer"
    assert (tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids("<s>")) == (0, 1)
    assert tokenizer("AB A").input_ids == [5, 6, 4, 5]
    assert tokenizer.decode([5, 5, 0, 6, 4, 5]) == "AB A"


def test_a_bpe_tokenizer_is_built_from_a_packages_tiktoken_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A package ships its own ranks file; the result encodes as tiktoken itself does, specials after it."""
    from transformers import AutoTokenizer
    from whisper.tokenizer import get_encoding

    package = tmp_path / "site" / "toytok"
    (package / "assets").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    ranks = Path(__import__("whisper").__file__).parent / "assets" / "gpt2.tiktoken"
    (package / "assets" / "toy.tiktoken").write_bytes(ranks.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    extra = """\
  tokenizer:
    class: WhisperTokenizer
    tiktoken: {package: toytok, path: assets/toy.tiktoken}
    special_tokens: {expr: '["<|endoftext|>", "<|startoftranscript|>"]'}
    options: {unk_token: "<|endoftext|>", bos_token: "<|endoftext|>", eos_token: "<|endoftext|>"}
"""
    convert(compile_text(rules(extra), "r.yaml"), hubert_source(tmp_path), tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    reference = get_encoding("gpt2")  # openai-whisper's own tiktoken encoding of the same file
    text = "Hello world, it's remap: 1234 tokens!"
    assert tokenizer.encode(text, add_special_tokens=False) == reference.encode(text)
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>"]) == [50256, 50257]
    del sys.modules["toytok"]


def test_a_missing_tokenizer_package_is_one_line(tmp_path: Path) -> None:
    extra = """\
  tokenizer:
    class: WhisperTokenizer
    tiktoken: {package: no_such_package_here, path: a.tiktoken}
"""
    with pytest.raises(ConfigError, match="the tokenizer's vocabulary comes with the package 'no_such_package_here', "
                                          "which is not installed"):
        convert(compile_text(rules(extra), "r.yaml"), hubert_source(tmp_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix, text", [(".json", '{"width": 8, "unused": 1}'), (".yaml", "width: 8\nunused: 1\n")])
def test_a_source_config_file_overlays_the_checkpoints(tmp_path: Path, suffix: str, text: str) -> None:
    config = tmp_path / f"model{suffix}"
    config.write_text(text)
    ruleset = compile_text(rules(defaults="{width: 999}", config=TINY_HUBERT.replace("hidden_size: 8",
                                                                                      "hidden_size: width")), "r.yaml")
    prepared = prepare(ruleset, hubert_source(tmp_path), source_config=config)
    assert prepared.target_config["hidden_size"] == 8 and prepared.plan.ok


def test_a_source_config_with_yaml_aliases_is_refused(tmp_path: Path, cli) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("a: &x [1, 2]\nb: *x\n")
    path = tmp_path / "r.yaml"
    path.write_text(rules())
    result = cli("plan", path, hubert_source(tmp_path), "--source-config", config)
    assert (result.code, result.err) == (1, f"error: {config}: the source config uses a YAML alias (*name); write "
                                            "the values out\n")


def test_a_config_the_weights_cannot_justify_is_refused_before_building_the_target(tmp_path: Path, cli) -> None:
    """encoder_layers: 1e9 in a stranger's checkpoint must not build a billion-layer model."""
    path = tmp_path / "r.yaml"
    path.write_text(rules(defaults="{layers: 1}", config=TINY_HUBERT.replace("num_hidden_layers: 1",
                                                                            "num_hidden_layers: int(layers)")))
    config = tmp_path / "c.json"
    config.write_text('{"layers": 1e9}')
    result = cli("plan", path, hubert_source(tmp_path), "--source-config", config)
    assert result.code == 1
    assert result.err.startswith(f"error: {path}:7: target config 'num_hidden_layers' is 1000000000, more than the "
                                 "checkpoint's tensors justify (largest dimension 16)")
