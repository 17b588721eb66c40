"""DistilHuBERT's reference: s3prl's ``DistillerModel``."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch

from ...io.source import Source
from ._s3prl import with_conv_layers


def build(source: Source) -> Any:
    """s3prl's DistillerModel; the conv spec it evals is the canonical literal of remap's parse (see _s3prl)."""
    config = with_conv_layers(source.config, "extractor_conv_feature_layers", source.name)
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

        model = DistillerModel(DistillerConfig(config))
    model.load_state_dict({key: ref.load() for key, ref in source.tensors.items()})
    return model.eval()


@torch.no_grad()
def hiddens(model: Any, wave: torch.Tensor, pad_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every layer's output and the encoder's final output, as s3prl computes them."""
    pad_mask = torch.ones(wave.shape, dtype=torch.long) if pad_mask is None else pad_mask
    feat, pad = model.forward_feature(wave, pad_mask)
    x = model.post_extract_proj(feat) if model.post_extract_proj is not None else feat
    final, layers = model.encoder(x.clone(), ~pad.bool(), get_hidden=True)
    out = {"features": feat, "final": final}
    out.update({f"layer{i + 1}": h for i, h in enumerate(layers)})
    return out


def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return hiddens(build(source), wave)
