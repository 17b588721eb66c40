"""Regenerate examples/distilhubert-tiny.ckpt: a small DistilHuBERT in s3prl's checkpoint layout.

Random (perturbed) weights from s3prl's own DistillerModel, so the example
exercises every rule: group-norm extractor, post_extract_proj (conv width 24
!= model width 32), weight-normed positional conv, distillation heads.

    python examples/make_example.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reference import build_distiller, save_s3prl_checkpoint  # noqa: E402

CONFIG = {
    "extractor_mode": "default",
    "extractor_conv_feature_layers": "[(24,10,5)] + [(24,3,2)] * 4 + [(24,2,2)] * 2",
    "feature_grad_mult": 0.1,
    "conv_pos": 16,
    "conv_pos_groups": 4,
    "encoder_layers": 2,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 4,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "final_dim": 32,
    "out_layer_type": "expand-last",
    "n_tasks": 3,
    "task_emb_type": "expand-last",
    "pred_layer_id": [4, 8, 12],
}


def main() -> None:
    path = ROOT / "examples" / "distilhubert-tiny.ckpt"
    save_s3prl_checkpoint(build_distiller(CONFIG, seed=2026), CONFIG, path)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
