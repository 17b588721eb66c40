"""wav2vec 2.0: fairseq / s3prl checkpoints -> Wav2Vec2Model, and fine-tuned CTC -> Wav2Vec2ForCTC.

Every checkpoint here is written from s3prl's own ``Wav2Vec2Model`` (random,
perturbed weights) in the layout fairseq or s3prl saves, converted with
``remap apply``, and compared with ``remap.verify.verify``, whose reference
side is s3prl's model (``remap.verify.adapters.wav2vec2``/``wav2vec2_ctc``), never
remap's own output.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from remap import compile_file
from remap.verify import verify
from tests.conftest import ROOT
from tests.layouts import fairseq_modules, perturb, save_fairseq, save_s3prl_converted, swap_layer_norm_targets

with contextlib.redirect_stdout(io.StringIO()):
    from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Config, Wav2Vec2Model

warnings.filterwarnings("ignore", message=r".*torch\.nn\.utils\.weight_norm.*is deprecated", category=FutureWarning)

RULES = ROOT / "rules" / "wav2vec2.yaml"
CTC_RULES = ROOT / "rules" / "wav2vec2-ctc.yaml"

# Tiny, with every part of a published wav2vec 2.0: a conv width (24) other than
# the model width (32), so post_extract_proj exists, and a quantizer with small
# codebooks (2 groups of 8, 16-wide codevectors) and heads of final_dim 12.
TINY: dict[str, Any] = {
    "conv_feature_layers": "[(24,10,5)] + [(24,3,2)] * 2 + [(24,2,2)]",
    "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
    "conv_pos": 16, "conv_pos_groups": 4, "quantize_targets": True, "latent_vars": 8, "latent_groups": 2,
    "latent_dim": 16, "final_dim": 12,
}
VARIANTS: dict[str, dict[str, Any]] = {
    # wav2vec2-base: post-LN layers, group norm on conv 0, no conv bias
    "base": {**TINY, "mask_prob": 0.65, "dropout_input": 0.1, "dropout_features": 0.1},
    # wav2vec2-large-lv60: layer_norm_first, layer norm in every conv, conv bias
    "large": {**TINY, "layer_norm_first": True, "extractor_mode": "layer_norm", "conv_bias": True,
              "mask_prob": 0.65, "encoder_layerdrop": 0.1, "dropout_input": 0.1, "dropout_features": 0.1},
}
TASK = {"_name": "audio_pretraining", "data": "/data/librispeech", "sample_rate": 16000, "normalize": False,
        "enable_padding": False, "max_sample_size": 250000, "min_sample_size": 32000, "labels": None}
# Fields of the 2020 argparse checkpoints: the newer ones (layer_type, pos_conv_depth,
# crop_seq_to_multiple, required_seq_len_multiple, ...) are absent and take their defaults.
OLD_ARGS_FIELDS = ("extractor_mode", "conv_feature_layers", "conv_bias", "encoder_layers", "encoder_embed_dim",
                   "encoder_ffn_embed_dim", "encoder_attention_heads", "activation_fn", "dropout",
                   "attention_dropout", "activation_dropout", "encoder_layerdrop", "dropout_input",
                   "dropout_features", "final_dim", "layer_norm_first", "logit_temp", "quantize_targets",
                   "quantize_input", "same_quantizer", "target_glu", "feature_grad_mult", "latent_vars",
                   "latent_groups", "latent_dim", "mask_length", "mask_prob", "mask_selection", "mask_other",
                   "no_mask_overlap", "mask_min_space", "mask_channel_length", "mask_channel_prob",
                   "mask_channel_selection", "mask_channel_other", "no_mask_channel_overlap",
                   "mask_channel_min_space", "num_negatives", "negatives_from_everywhere",
                   "cross_sample_negatives", "codebook_negatives", "conv_pos", "conv_pos_groups")
# A letter dictionary as fairseq's audio_finetuning task builds it (4 specials first).
LETTERS = ["<s>", "<pad>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N"]


def build(config: dict[str, Any], seed: int = 0) -> tuple[Wav2Vec2Model, dict[str, Any]]:
    """s3prl's Wav2Vec2Model with perturbed weights, and fairseq's full model config for it."""
    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(**config)
    model = perturb(Wav2Vec2Model(cfg), seed)
    # fairseq's omegaconf (2.0/2.1) stores tuples as lists
    return model, {"_name": "wav2vec2", **dataclasses.asdict(cfg), "latent_temp": list(cfg.latent_temp)}


def write(layout: str, variant: str, path: Path) -> None:
    model, model_cfg = build(VARIANTS[variant])
    task = {**TASK, "normalize": variant == "large"}
    if layout == "fairseq":
        save_fairseq(path, model.state_dict(), model_cfg, task)
    elif layout == "fairseq-args":
        old = {k: model_cfg[k] for k in OLD_ARGS_FIELDS}
        save_fairseq(path, model.state_dict(), {"_name": "wav2vec2", **old}, task, old_args=True)
    else:
        save_s3prl_converted(path, model.state_dict(), model_cfg, task)


# What Wav2VecEncoder writes over the pretrained config when fine-tuning (its arg_overrides).
FINETUNE: dict[str, Any] = {
    "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.1, "dropout_input": 0.0, "mask_prob": 0.5,
    "mask_length": 10, "mask_channel_prob": 0.1, "mask_channel_length": 64, "encoder_layerdrop": 0.05,
    "feature_grad_mult": 0.0}


def finetuned_model(variant: str, vocab: int) -> tuple[Wav2Vec2Model, torch.nn.Linear, dict[str, Any]]:
    """s3prl's Wav2Vec2Model as fine-tuning leaves it (no pretraining heads), the CTC proj, and the pretrained config.

    The pretrained config carries the fine-tuning overrides, as Wav2VecEncoder writes them into it.
    """
    model, pretrained_cfg = build({**VARIANTS[variant], **FINETUNE}, seed=3)
    model.remove_pretraining_modules()
    proj = perturb(torch.nn.Linear(TINY["encoder_embed_dim"], vocab), seed=4)
    return model, proj, pretrained_cfg


def finetuned_state(model: Wav2Vec2Model, proj: torch.nn.Linear) -> dict[str, torch.Tensor]:
    state_dict = {f"w2v_encoder.w2v_model.{k}": v for k, v in model.state_dict().items()}
    state_dict.update({f"w2v_encoder.proj.{k}": v for k, v in proj.state_dict().items()})
    return state_dict


def save_finetuned(path: Path, variant: str, model_extra: dict[str, Any] | None = None,
                   symbols: list[str] | None = None) -> None:
    """fairseq's wav2vec_ctc checkpoint, as fairseq-hydra-train writes it.

    cfg.model is the fine-tuning config (Wav2Vec2CtcConfig): its own defaults
    for conv_feature_layers and encoder_embed_dim, which are not the model's.
    The model's config is cfg.model.w2v_args, the pretrained checkpoint's whole
    config, with the fine-tuning overrides (dropouts, masking, layerdrop)
    written into its `model` section by Wav2VecEncoder. The pretraining heads
    are gone (remove_pretraining_modules). task_state holds the letter
    dictionary the CTC head was sized from. ``model_extra`` adds fields to cfg.model; ``symbols``
    stores another dictionary than the one the head was sized from.
    """
    from omegaconf import OmegaConf

    model, proj, pretrained_cfg = finetuned_model(variant, len(LETTERS))
    state_dict = finetuned_state(model, proj)
    normalize = variant == "large"
    w2v_args = {"_name": None, "common": {"fp16": True, "log_format": "json", "seed": 1},
                "task": {**TASK, "normalize": normalize}, "model": pretrained_cfg, "criterion": None,
                "lr_scheduler": None, "optimization": {"max_update": 400000, "lr": [0.0005]}}
    model_cfg = {"_name": "wav2vec_ctc", "w2v_path": "/checkpoints/wav2vec_pretrained.pt",
                 "no_pretrained_weights": False, "dropout_input": 0.0, "final_dropout": 0.1, "dropout": 0.0,
                 "attention_dropout": 0.0, "activation_dropout": 0.1,
                 "conv_feature_layers": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
                 "encoder_embed_dim": 768, "apply_mask": True, "mask_length": 10, "mask_prob": 0.5,
                 "mask_selection": "static", "mask_other": 0.0, "no_mask_overlap": False, "mask_min_space": 1,
                 "require_same_masks": True, "mask_dropout": 0.0, "mask_channel_length": 64,
                 "mask_channel_prob": 0.1, "mask_channel_selection": "static", "mask_channel_other": 0.0,
                 "no_mask_channel_overlap": False, "mask_channel_min_space": 1, "mask_channel_before": False,
                 "freeze_finetune_updates": 10000, "feature_grad_mult": 0.0, "layerdrop": 0.05,
                 "normalize": normalize, "data": "/data/librispeech", "w2v_args": w2v_args,
                 "offload_activations": False, "min_params_to_wrap": 100000000, "checkpoint_activations": False,
                 "ddp_backend": "legacy_ddp", "blank_weight": 0.0, "blank_mode": "add", **(model_extra or {})}
    cfg = OmegaConf.create({
        "_name": None, "common": {"fp16": True, "log_format": "json", "seed": 1},
        "task": {"_name": "audio_finetuning", "data": "/data/librispeech", "labels": "ltr", "normalize": normalize,
                 "sample_rate": 16000, "eval_wer": False},
        "model": model_cfg,
        "criterion": {"_name": "ctc", "zero_infinity": True, "sentence_avg": True, "post_process": "letter"},
    })
    modules = fairseq_modules()
    sys.modules.update(modules)
    try:
        dictionary = modules["fairseq.data.dictionary"].Dictionary(symbols or LETTERS)  # type: ignore[attr-defined]
        torch.save({"args": None, "cfg": cfg, "model": state_dict,
                    "task_state": {"target_dictionary": dictionary},
                    "optimizer_history": [{"criterion_name": "CtcCriterion", "optimizer_name": "FairseqAdam",
                                           "num_updates": 20000}],
                    "extra_state": {"epoch": 40}, "last_optimizer_state": {"state": {}, "param_groups": []}},
                   path)
    finally:
        for name in modules:
            sys.modules.pop(name, None)


# fairseq's LibriSpeech letter dictionary (dict.ltr.txt behind its 4 specials): what every 2020
# English CTC release was fine-tuned with, and what wav2vec2-ctc.yaml assumes without a dictionary.
LIBRISPEECH_LETTERS = ["<s>", "<pad>", "</s>", "<unk>", *"|ETAONIHSRDLUMWCFGYPBVK'XJQZ"]


def save_finetuned_args(path: Path, variant: str, *, vocab: int = len(LIBRISPEECH_LETTERS),
                        omegaconf_w2v_args: bool = False) -> tuple[Wav2Vec2Model, torch.nn.Linear]:
    """fairseq's argparse-era wav2vec_ctc checkpoint (the 2020 releases, e.g. wav2vec_small_960h.pt).

    ``args`` is the fine-tuning Namespace: task (audio_pretraining with labels), criterion (ctc) and
    Wav2VecCtc's own options, flat; ``args.w2v_args`` is the pretrained model's flat Namespace,
    overrides written in. There is no task_state: fairseq loaded the target dictionary from the data
    folder. With ``omegaconf_w2v_args``, w2v_args is the omegaconf config ({task, model, ...}) that
    fairseq's Wav2VecEncoder converts it to during the hydra migration. Returns the model and proj.
    """
    from omegaconf import OmegaConf

    model, proj, pretrained_cfg = finetuned_model(variant, vocab)
    normalize = variant == "large"
    task = {"task": "audio_pretraining", "data": "/data/librispeech", "normalize": normalize, "sample_rate": 16000,
            "max_sample_size": 250000, "min_sample_size": 32000, "enable_padding": False}
    common = {"fp16": True, "seed": 1, "log_format": "json", "optimizer": "adam", "lr_scheduler": "tri_stage"}
    pretrained_args = {**common, **task, "labels": None, "criterion": "wav2vec", "infonce": True,
                       "loss_weights": [0.1, 10.0], "log_keys": ["prob_perplexity", "code_perplexity", "temp"],
                       "max_update": 400000, "lr": [0.0005], "arch": "wav2vec2",
                       **{k: pretrained_cfg[k] for k in OLD_ARGS_FIELDS}}
    w2v_args: Any = argparse.Namespace(**pretrained_args)
    if omegaconf_w2v_args:
        w2v_args = OmegaConf.create({"_name": None, "common": {"fp16": True, "seed": 1},
                                     "task": {"_name": "audio_pretraining", **task},
                                     "model": pretrained_cfg, "criterion": {"_name": "wav2vec", "infonce": True}})
    finetune_args = {**common, **task, "labels": "ltr", "criterion": "ctc", "zero_infinity": True,
                     "sentence_avg": True, "remove_bpe": "letter", "max_update": 20000, "lr": [5e-05],
                     "arch": "wav2vec_ctc", "w2v_path": "/checkpoints/wav2vec_small.pt",
                     "no_pretrained_weights": False, "dropout_input": 0.0, "final_dropout": 0.1, "apply_mask": True,
                     "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.1, "mask_length": 10,
                     "mask_prob": 0.5, "mask_selection": "static", "mask_other": 0.0, "no_mask_overlap": False,
                     "mask_channel_length": 64, "mask_channel_prob": 0.1, "mask_channel_selection": "static",
                     "mask_channel_other": 0.0, "no_mask_channel_overlap": False, "freeze_finetune_updates": 10000,
                     "feature_grad_mult": 0.0, "layerdrop": 0.05, "w2v_args": w2v_args}
    torch.save({"args": argparse.Namespace(**finetune_args), "model": finetuned_state(model, proj),
                "optimizer_history": [{"criterion_name": "CtcCriterion", "optimizer_name": "FairseqAdam",
                                       "num_updates": 20000}],
                "extra_state": {"epoch": 40}, "last_optimizer_state": {"state": {}, "param_groups": []}}, path)
    return model, proj


@pytest.mark.parametrize("layout", ["fairseq", "fairseq-args", "s3prl"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pretrained_matches_s3prl(variant: str, layout: str, cli, tmp_path: Path) -> None:
    ckpt, out = tmp_path / "checkpoint.pt", tmp_path / "out"
    write(layout, variant, ckpt)
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    report = verify(compile_file(RULES), ckpt, out)
    n = VARIANTS[variant]["encoder_layers"]
    assert set(report.diffs) == {"final", *(f"layer{i}" for i in range(1, n + 1))}
    assert report.worst <= 1e-5, report.diffs


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_finetuned_ctc_matches_s3prl_and_its_projection(variant: str, cli, tmp_path: Path) -> None:
    ckpt, out = tmp_path / "finetuned.pt", tmp_path / "out"
    save_finetuned(ckpt, variant)
    result = cli("apply", CTC_RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    report = verify(compile_file(CTC_RULES), ckpt, out)
    assert {"final", "logits", "layer1"} <= set(report.diffs)
    assert report.worst <= 1e-5, report.diffs
    assert converted_final_diff(ckpt, out) <= 1e-5  # and directly against Wav2Vec2ForCTC's own encoder


def converted_final_diff(ckpt: Path, out: Path) -> float:
    """max |diff| between s3prl's encoder output and Wav2Vec2ForCTC's encoder (wav2vec2) last_hidden_state."""
    from transformers import Wav2Vec2ForCTC

    from remap.io import select_source
    from remap.io.readers import read_checkpoint
    from remap.verify.adapters.wav2vec2_ctc import reference

    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    source = select_source(read_checkpoint(ckpt), compile_file(CTC_RULES).source)
    model = Wav2Vec2ForCTC.from_pretrained(out).eval()
    with torch.no_grad():
        got = model.wav2vec2(wave).last_hidden_state
    return float((reference(source, wave)["final"] - got).abs().max())


def test_finetuned_config_comes_from_w2v_args_and_the_dictionary(cli, tmp_path: Path) -> None:
    """cfg.model's own conv/width defaults are ignored; fairseq's <s>/<pad> ids are swapped for CTC."""
    import json

    ckpt, out = tmp_path / "finetuned.pt", tmp_path / "out"
    save_finetuned(ckpt, "base")
    assert cli("apply", CTC_RULES, ckpt, "-o", out).code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Wav2Vec2ForCTC"]
    assert (config["hidden_size"], config["conv_dim"], config["vocab_size"]) == (32, [24] * 4, len(LETTERS))
    # index 0 (fairseq's <s>) is the CTC blank: transformers' pad; fairseq's <pad> (1) becomes bos
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (0, 1, 2)
    assert (config["final_dropout"], config["hidden_dropout"], config["layerdrop"]) == (0.1, 0.0, 0.05)
    assert config["ctc_zero_infinity"] is True and config["apply_spec_augment"] is True


@pytest.mark.parametrize("layout", ["fairseq", "fairseq-args", "s3prl"])
def test_pretrained_checkpoint_is_not_a_ctc_checkpoint(layout: str, cli, tmp_path: Path) -> None:
    ckpt = tmp_path / "pretrained.pt"
    write(layout, "base", ckpt)
    result = cli("apply", CTC_RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert ("matches none of the rule file's layouts (fairseq-finetuned needs cfg.model.w2v_args.model, task_state, "
            "model; fairseq-args-finetuned needs args.w2v_args, model (and no cfg, args.w2v_args.model); "
            "fairseq-args-finetuned-hydra needs args.w2v_args.model, model (and no cfg))") in result.err


@pytest.mark.parametrize("era", ["hydra", "args"])
def test_finetuned_checkpoint_is_not_a_pretrained_one(era: str, cli, tmp_path: Path) -> None:
    """wav2vec2.yaml's fairseq layouts refuse a fine-tuned file (w2v_args / w2v_path), in one line."""
    ckpt = tmp_path / "finetuned.pt"
    if era == "hydra":
        save_finetuned(ckpt, "base")
    else:
        save_finetuned_args(ckpt, "base")
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert ("matches none of the rule file's layouts (fairseq needs cfg, model (and no cfg.model.w2v_args, "
            "cfg.model.w2v_path); fairseq-args needs args, model (and no cfg, args.w2v_args, args.w2v_path); "
            "s3prl needs model_cfg, model_weight)") in result.err
    assert not (tmp_path / "out").exists()


def ctc_outputs(model: Wav2Vec2Model, proj: torch.nn.Linear, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """s3prl's encoder (the in-memory model the checkpoint was written from) and fairseq's proj on it."""
    from remap.verify.adapters.wav2vec2 import hiddens

    out = hiddens(model.eval(), wave)
    with torch.no_grad():
        out["logits"] = proj(out["final"])
    return out


@pytest.mark.parametrize("w2v_args", ["namespace", "omegaconf"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_argparse_era_finetuned_ctc_matches_s3prl(variant: str, w2v_args: str, cli, tmp_path: Path) -> None:
    """The 2020 argparse releases: no target dictionary, so the LibriSpeech letter dictionary's 32 entries."""
    import json

    from remap.verify import converted

    ckpt, out = tmp_path / "finetuned.pt", tmp_path / "out"
    model, proj = save_finetuned_args(ckpt, variant, omegaconf_w2v_args=w2v_args == "omegaconf")
    result = cli("apply", CTC_RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    report = verify(compile_file(CTC_RULES), ckpt, out)
    assert set(report.diffs) == {"final", "logits", "layer1", "layer2"}, report.diffs
    assert report.worst <= 1e-5, report.diffs
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1))
    want, got = ctc_outputs(model, proj, wave), converted(out, wave)
    direct = {k: float((want[k] - got[k]).abs().max()) for k in report.diffs}
    assert max(direct.values()) <= 1e-5, direct
    config = json.loads((out / "config.json").read_text())
    assert (config["vocab_size"], config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (
        32, 0, 1, 2)
    # the pretrained config wins for the architecture; the fine-tuning args give final_dropout and masking
    assert (config["hidden_size"], config["conv_dim"], config["do_stable_layer_norm"]) == (
        32, [24] * 4, variant == "large")
    assert (config["final_dropout"], config["hidden_dropout"], config["layerdrop"]) == (0.1, 0.0, 0.05)
    assert config["ctc_zero_infinity"] is True and config["apply_spec_augment"] is True
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["do_normalize"] is (variant == "large")
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as f:
        layout = f.metadata()["remap.layout"]
    assert layout == ("fairseq-args-finetuned-hydra" if w2v_args == "omegaconf" else "fairseq-args-finetuned")


def test_argparse_era_vocabulary_size_comes_from_the_ctc_head(cli, tmp_path: Path) -> None:
    """No dictionary in the file: vocab_size is the head's rows (40 here), not an assumed 32; no tokenizer."""
    import json

    from remap.verify import converted

    ckpt, out = tmp_path / "finetuned.pt", tmp_path / "out"
    model, proj = save_finetuned_args(ckpt, "base", vocab=40)
    result = cli("apply", CTC_RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 40
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(2))
    assert float((ctc_outputs(model, proj, wave)["logits"] - converted(out, wave)["logits"]).abs().max()) <= 1e-5
    assert not (out / "vocab.json").exists() and not (out / "tokenizer_config.json").exists()
    assert json.loads((out / "remap-provenance.json").read_text())["tokenizer"] is None


def test_ctc_tokenizer_swaps_fairseqs_pad_and_bos_and_decodes_letters(cli, tmp_path: Path) -> None:
    """vocab.json from task_state.target_dictionary: index 0 (the blank) is <pad>, 1 is <s>, '|' is a space."""
    import json

    from transformers import AutoTokenizer

    ckpt, out = tmp_path / "finetuned.pt", tmp_path / "out"
    save_finetuned(ckpt, "base")
    assert cli("apply", CTC_RULES, ckpt, "-o", out).code == 0
    vocab = json.loads((out / "vocab.json").read_text())
    want = {s: i for i, s in enumerate(LETTERS)}
    want["<pad>"], want["<s>"] = 0, 1
    assert vocab == want
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(tokenizer).__name__ == "Wav2Vec2CTCTokenizer" and tokenizer.pad_token_id == 0
    ids = [0, *(want[c] for c in "TTEN|N"), 0, *(want[c] for c in "NET"), 0]  # blanks, a repeat, a real double
    assert tokenizer.decode(ids) == "TEN NNET"


def test_a_dictionary_that_does_not_fit_the_ctc_head_is_refused(cli, tmp_path: Path) -> None:
    ckpt, out = tmp_path / "finetuned.pt", tmp_path / "out"
    save_finetuned(ckpt, "base", symbols=[*LETTERS, "EXTRA"])
    result = cli("apply", CTC_RULES, ckpt, "-o", out)
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "the target dictionary's size differs from the CTC head's rows" in result.err
    assert not out.exists()


def test_seq2seq_checkpoint_is_refused(cli, tmp_path: Path) -> None:
    ckpt, out = tmp_path / "finetuned.pt", tmp_path / "out"
    save_finetuned(ckpt, "base", model_extra={"_name": "wav2vec_seq2seq", "decoder_layers": 6})
    result = cli("apply", CTC_RULES, ckpt, "-o", out)
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "only fairseq's wav2vec_ctc models have a CTC head" in result.err


def test_args_and_cfg_together_are_read_through_cfg(tmp_path: Path) -> None:
    """fairseq converts args to cfg on load; a file re-saved with both is read through cfg, not refused."""
    from omegaconf import OmegaConf

    from remap.io import select_source
    from remap.io.readers import read_checkpoint

    model, model_cfg = build(VARIANTS["base"])
    ckpt = tmp_path / "both.pt"
    torch.save({"args": argparse.Namespace(**{**TASK, **model_cfg, "conv_pos": 999}),
                "cfg": OmegaConf.create({"model": model_cfg, "task": TASK}), "model": model.state_dict()}, ckpt)
    source = select_source(read_checkpoint(ckpt), compile_file(RULES).source)
    assert (source.layout, source.config["conv_pos"]) == ("fairseq", 16)


def test_a_file_in_two_layouts_is_refused(cli, tmp_path: Path) -> None:
    model, model_cfg = build(VARIANTS["base"])
    ckpt = tmp_path / "both.pt"
    torch.save({"cfg": {"model": model_cfg, "task": TASK}, "model": model.state_dict(),
                "model_cfg": model_cfg, "task_cfg": TASK, "model_weight": model.state_dict()}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "matches several of the rule file's layouts (fairseq and s3prl)" in result.err


def test_a_config_without_any_wav2vec2_field_is_refused(cli, tmp_path: Path) -> None:
    model, _ = build(VARIANTS["base"])
    ckpt = tmp_path / "other.pt"
    torch.save({"cfg": {"model": {"_name": "transformer_lm", "decoder_layers": 6},
                        "task": {"_name": "language_modeling", "data": "/data"}},
                "model": model.state_dict()}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "the config at 'cfg.task', 'cfg.model' holds none of the fields the rule file declares" in result.err
    assert "(layout 'fairseq')" in result.err


def test_conv_width_equal_to_model_width_gets_an_identity_projection(cli, tmp_path: Path) -> None:
    """No post_extract_proj in fairseq: Wav2Vec2Model's projection is initialised to the identity."""
    ckpt, out = tmp_path / "checkpoint.pt", tmp_path / "out"
    model, model_cfg = build({**VARIANTS["base"], "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 3"})
    assert model.post_extract_proj is None
    save_fairseq(ckpt, model.state_dict(), model_cfg, TASK)
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    assert "2 initialised" in result.out
    assert verify(compile_file(RULES), ckpt, out).worst <= 1e-5


def test_conformer_layers_are_refused(cli, tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    model, model_cfg = build(VARIANTS["base"])
    save_fairseq(ckpt, model.state_dict(), {**model_cfg, "layer_type": "conformer"}, TASK)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1
    assert "only layer_type 'transformer' exists in Wav2Vec2Model" in result.err


def test_parity_check_catches_a_same_shape_mix_up(cli, tmp_path: Path) -> None:
    """Swapping the two per-layer layer norms keeps every shape; parity against s3prl must fail."""
    swapped = tmp_path / "wav2vec2.yaml"
    swapped.write_text(swap_layer_norm_targets(RULES.read_text()))
    ckpt, out = tmp_path / "checkpoint.pt", tmp_path / "out"
    write("fairseq", "base", ckpt)
    assert cli("apply", swapped, ckpt, "-o", out).code == 0
    assert verify(compile_file(swapped), ckpt, out).worst > 1e-2


@pytest.mark.parametrize("layout", ["fairseq", "fairseq-args", "s3prl"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_preprocessor_normalizes_like_the_task(variant: str, layout: str, cli, tmp_path: Path) -> None:
    import json

    ckpt, out = tmp_path / "checkpoint.pt", tmp_path / "out"
    write(layout, variant, ckpt)
    assert cli("apply", RULES, ckpt, "-o", out).code == 0
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert (pre["do_normalize"], pre["return_attention_mask"]) == (variant == "large",) * 2


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ctc_preprocessor_normalizes_like_the_fine_tuning_task(variant: str, cli, tmp_path: Path) -> None:
    import json

    ckpt, out = tmp_path / "finetuned.pt", tmp_path / "out"
    save_finetuned(ckpt, variant)
    assert cli("apply", CTC_RULES, ckpt, "-o", out).code == 0
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["do_normalize"] is (variant == "large")
