"""wav2vec 2.0 conformer: fairseq / s3prl checkpoints -> Wav2Vec2ConformerModel.

Every checkpoint is written from s3prl's own ``Wav2Vec2Model`` with conformer layers (random weights,
every parameter and buffer perturbed: batch-norm statistics, counters, rotary tables), in each layout
fairseq or s3prl saves, converted, and compared with ``remap.verify.verify``, whose reference side is
s3prl's model (``remap.verify.adapters.wav2vec2_conformer``), and directly with the in-memory model the
file was written from. Measured: <= 1.2e-6 on every layer and the final output, every pos_enc_type
and layout.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from remap import compile_file, compile_text, convert
from remap.verify import converted, verify
from tests.conformer_fixtures import TINY, build, write
from tests.conftest import ROOT, line_of
from tests.layouts import save_fairseq

warnings.filterwarnings("ignore", message=r".*torch\.nn\.utils\.weight_norm.*is deprecated", category=FutureWarning)

RULES = ROOT / "rules" / "wav2vec2-conformer.yaml"
LAYOUTS = ["fairseq", "fairseq-args", "s3prl"]
POSITIONS = ["rel_pos", "rope"]


def wave(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 16000, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("positions", POSITIONS)
def test_matches_s3prl(positions: str, layout: str, cli, tmp_path: Path) -> None:
    from remap.verify.adapters.wav2vec2_conformer import hiddens

    ckpt, out = tmp_path / "checkpoint.pt", tmp_path / "out"
    model = write(layout, {**TINY, "pos_enc_type": positions}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    assert "7 dropped, 0 initialised" in result.out  # the pretraining heads; post_extract_proj exists
    report = verify(compile_file(RULES), ckpt, out)
    assert set(report.diffs) == {"layer1", "layer2", "final"} and report.worst <= 1e-5, report.diffs
    # the in-memory model the file was written from, not the file read back
    want, got = hiddens(model.eval(), wave()), converted(out, wave())
    direct = {k: float((want[k] - got[k]).abs().max()) for k in want}
    assert max(direct.values()) <= 1e-5, direct
    assert float(want["final"].std()) > 0.1


def test_rotary_tables_are_deduplicated_not_dropped(cli, tmp_path: Path) -> None:
    """One byte-identical table per layer in fairseq, one in transformers: it is the file's (perturbed) table."""
    from safetensors import safe_open

    ckpt, out = tmp_path / "checkpoint.pt", tmp_path / "out"
    model = write("fairseq", {**TINY, "pos_enc_type": "rope"}, ckpt)
    assert cli("apply", RULES, ckpt, "-o", out).code == 0
    table = model.encoder.layers[0].self_attn.rotary_emb.inv_freq
    with safe_open(out / "model.safetensors", "pt") as f:
        assert torch.equal(f.get_tensor("encoder.embed_positions.inv_freq"), table)
        assert not any("rotary" in key for key in f.keys())
    # the perturbed table matters: with transformers' default table the outputs move away from s3prl's
    from transformers import Wav2Vec2ConformerModel

    from remap.verify.adapters.wav2vec2_conformer import hiddens

    hf = Wav2Vec2ConformerModel.from_pretrained(out).eval()
    with torch.no_grad():
        hf.encoder.embed_positions.inv_freq.copy_(1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8)))
        hf.encoder.embed_positions.cached_sequence_length = None
        got = hf(wave()).last_hidden_state
    assert float((hiddens(model.eval(), wave())["final"] - got).abs().max()) > 1e-2


def test_rotary_copies_that_differ_are_refused(cli, tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    model, model_cfg = build({**TINY, "pos_enc_type": "rope", "encoder_layers": 3})
    with torch.no_grad():
        for i in (1, 2):
            model.encoder.layers[i].self_attn.rotary_emb.inv_freq.mul_(1.0 + 1e-3 * i)
    save_fairseq(ckpt, model.state_dict(), model_cfg, {})
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    problem, summary = result.err.splitlines()
    assert result.code == 1 and summary == "error: 1 problem(s); nothing was written", result.err
    # one problem, naming the first copy that differs (layer 1), not every one (layer 2 too)
    assert problem.startswith(f"error: {RULES}:{line_of(RULES, '  - from: encoder.layers.{l:int}')}: "
                              "'encoder.layers.1.self_attn.rotary_emb.inv_freq' differs from "
                              "'encoder.layers.0.self_attn.rotary_emb.inv_freq'"), problem
    assert problem.endswith("(dedup); the copies must be identical")
    assert not (tmp_path / "out").exists()


def test_no_post_extract_proj_gets_an_identity_projection(cli, tmp_path: Path) -> None:
    """transformers #28174: its script leaves this projection random; here it is the identity, and parity holds.

    Also the group-norm extractor without conv bias, and rel_pos.
    """
    ckpt, out = tmp_path / "checkpoint.pt", tmp_path / "out"
    config = {**TINY, "pos_enc_type": "rel_pos", "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 3",
              "extractor_mode": "default", "conv_bias": False}
    model = write("fairseq", config, ckpt)
    assert model.post_extract_proj is None
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    assert "2 initialised" in result.out
    assert verify(compile_file(RULES), ckpt, out).worst <= 1e-5


def test_parity_check_catches_swapped_batch_norm_statistics(tmp_path: Path) -> None:
    """Batch-norm statistics of layer 0 and layer 1 trade places (same shapes): parity against s3prl must fail."""
    text = RULES.read_text()
    swapped = text.replace("to: encoder.layers.{n}.conv_module.batch_norm.{param}",
                           "to: encoder.layers.{1 - n}.conv_module.batch_norm.{param}")
    assert swapped != text
    ckpt, out = tmp_path / "checkpoint.pt", tmp_path / "out"
    write("s3prl", {**TINY, "pos_enc_type": "rel_pos"}, ckpt)
    rules = compile_text(swapped, str(tmp_path / "wav2vec2-conformer.yaml"))
    convert(rules, ckpt, out)
    assert verify(rules, ckpt, out).worst > 1e-2


@pytest.mark.parametrize("change, message", [
    ({"pos_enc_type": "abs"}, "pos_enc_type 'abs' with conformer layers runs fairseq's TransformerEncoder "
                              "(positional conv, no relative or rotary positions), which Wav2Vec2ConformerModel "
                              "cannot express"),
    ({"layer_norm_first": False}, "layer_norm_first false applies the encoder's layer norm before the conformer "
                                  "layers; Wav2Vec2ConformerModel applies it after them"),
    ({"attn_type": ""}, "only attn_type 'espnet' exists in Wav2Vec2ConformerModel (any other value builds "
                        "fairseq's MultiheadAttention, which ignores pos_enc_type)"),
    ({"layer_type": "transformer"}, "only layer_type 'conformer' is converted here (transformer layers are "
                                    "rules/wav2vec2.yaml's)"),
])
def test_what_transformers_cannot_express_is_refused(change: dict[str, Any], message: str, cli,
                                                     tmp_path: Path) -> None:
    model, model_cfg = build({**TINY, "pos_enc_type": "rel_pos"})
    ckpt = tmp_path / "checkpoint.pt"
    save_fairseq(ckpt, model.state_dict(), {**model_cfg, **change}, {})
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert f"unsupported source: {message}" in result.err
    assert not (tmp_path / "out").exists()


def test_wav2vec2_rules_still_refuse_conformer_layers(cli, tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    write("fairseq", {**TINY, "pos_enc_type": "rope"}, ckpt)
    result = cli("apply", ROOT / "rules" / "wav2vec2.yaml", ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and "only layer_type 'transformer' exists in Wav2Vec2Model" in result.err
