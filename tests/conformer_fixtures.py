"""Tiny wav2vec 2.0 conformer checkpoints from s3prl's own ``Wav2Vec2Model``, in fairseq's and s3prl's layouts.

The model is s3prl's copy of fairseq's model with ``layer_type: conformer`` and ``attn_type: espnet``,
as fairseq's wav2vec2_conformer_{rel_pos,rope}_large were trained (``layer_norm_first``, a layer-norm
conv extractor with conv bias). Every parameter and buffer is moved away from its init:
weights and biases, the batch norms' running statistics and counters, and the rotary tables (one
perturbed table, the same in every layer, as fairseq's layers hold identical copies).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from tests.layouts import perturb, save_fairseq, save_s3prl_converted

# conv width 24 != model width 32, so post_extract_proj exists; 2 layers; depthwise kernel 7;
# a quantizer with small codebooks, so every pretraining head is in the file (and dropped).
TINY: dict[str, Any] = {
    "conv_feature_layers": "[(24,10,5)] + [(24,3,2)] * 2 + [(24,2,2)]",
    "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
    "conv_pos": 16, "conv_pos_groups": 4, "depthwise_conv_kernel_size": 7,
    "layer_type": "conformer", "attn_type": "espnet", "layer_norm_first": True,
    "extractor_mode": "layer_norm", "conv_bias": True,
    "quantize_targets": True, "latent_vars": 8, "latent_groups": 2, "latent_dim": 16, "final_dim": 12,
}
TASK = {"_name": "audio_pretraining", "data": "/data/librispeech", "sample_rate": 16000, "normalize": True,
        "enable_padding": False, "max_sample_size": 250000, "min_sample_size": 32000, "labels": None}


def s3prl_classes() -> tuple[Any, Any]:
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Config, Wav2Vec2Model
    return Wav2Vec2Config, Wav2Vec2Model


def build(config: dict[str, Any], seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """s3prl's Wav2Vec2Model (conformer), every tensor of its state dict perturbed, and fairseq's model config."""
    config_cls, model_cls = s3prl_classes()
    torch.manual_seed(seed)
    cfg = config_cls(**config)
    model = perturb(model_cls(cfg), seed)
    generator = torch.Generator().manual_seed(seed + 100)
    rotary = None
    with torch.no_grad():
        for i, layer in enumerate(model.encoder.layers):
            bn = layer.conv_module.batch_norm
            bn.running_mean.add_(0.5 * torch.randn(bn.running_mean.shape, generator=generator))
            bn.running_var.mul_(1.0 + 0.5 * torch.randn(bn.running_var.shape, generator=generator).abs())
            bn.num_batches_tracked.fill_(40000 + i)
            inv_freq = getattr(getattr(layer.self_attn, "rotary_emb", None), "inv_freq", None)
            if inv_freq is not None:
                if rotary is None:
                    rotary = inv_freq * (1.0 + 0.1 * torch.randn(inv_freq.shape, generator=generator))
                inv_freq.copy_(rotary)
    # fairseq's omegaconf (2.0/2.1) stores tuples as lists
    return model, {"_name": "wav2vec2", **dataclasses.asdict(cfg), "latent_temp": list(cfg.latent_temp)}


def write(layout: str, config: dict[str, Any], path: Path, seed: int = 0) -> Any:
    """``path`` in one of the layouts rules/wav2vec2.yaml reads; returns the model."""
    model, model_cfg = build(config, seed)
    if layout == "fairseq":
        save_fairseq(path, model.state_dict(), model_cfg, TASK)
    elif layout == "fairseq-args":
        save_fairseq(path, model.state_dict(), model_cfg, TASK, old_args=True)
    else:
        save_s3prl_converted(path, model.state_dict(), model_cfg, TASK)
    return model
