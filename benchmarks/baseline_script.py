"""The hand-written conversion approach, as a baseline for benchmarks/bench_io.py.

It does what transformers' DistilHuBERT script does, with its weight-norm
keys fixed so it runs on today's PyTorch: load the whole s3prl checkpoint
(unsafely, as s3prl does), build s3prl's model, build a HubertModel, copy
every weight into it by name, and save_pretrained. Written for this
benchmark; it is not used by remap.

    python benchmarks/baseline_script.py CHECKPOINT OUT_DIR
"""

from __future__ import annotations

import contextlib
import io
import sys

import torch


def main(ckpt_path: str, out_dir: str) -> None:
    from transformers import HubertConfig, HubertModel

    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

        states = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        cfg = DistillerConfig(states["Config"]["distiller"])
        model = DistillerModel(cfg)
    model.load_state_dict(states["Distiller"])
    conv = list(model.conv_layers)
    config = HubertConfig(
        hidden_size=cfg.encoder_embed_dim, num_hidden_layers=cfg.encoder_layers,
        num_attention_heads=cfg.encoder_attention_heads, intermediate_size=cfg.encoder_ffn_embed_dim,
        conv_dim=[c[0] for c in conv], conv_kernel=[c[1] for c in conv], conv_stride=[c[2] for c in conv],
        num_feat_extract_layers=len(conv), conv_bias=False, feat_proj_layer_norm=False,
        feat_extract_norm="layer" if cfg.extractor_mode == "layer_norm" else "group",
        do_stable_layer_norm=cfg.layer_norm_first, num_conv_pos_embeddings=cfg.conv_pos,
        num_conv_pos_embedding_groups=cfg.conv_pos_groups)
    hf = HubertModel(config)
    target = hf.state_dict()
    renames = [("self_attn.", "attention."), ("self_attn_layer_norm", "layer_norm"),
               ("fc1", "feed_forward.intermediate_dense"), ("fc2", "feed_forward.output_dense"),
               ("post_extract_proj", "feature_projection.projection"), ("encoder.pos_conv.0.", "encoder.pos_conv_embed.conv."),
               ("weight_g", "parametrizations.weight.original0"), ("weight_v", "parametrizations.weight.original1"),
               (".0.weight", ".conv.weight"), (".2.weight", ".layer_norm.weight"), (".2.bias", ".layer_norm.bias")]
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.startswith("output_layer"):
                continue
            new = name
            for old, repl in renames:
                new = new.replace(old, repl)
            target[new].copy_(value)
    hf.save_pretrained(out_dir)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
