"""data2vec audio's reference: s3prl's ``Data2VecAudioModel`` (a copy of fairseq's)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch

from ...io.source import Source
from ._s3prl import merge_with_parent, with_conv_layers


def build(source: Source) -> Any:
    """s3prl's model, configured as s3prl's convert.py does (merge_with_parent), with the source's weights.

    The conv spec s3prl evals is the canonical literal of remap's own parse (see ``_s3prl``).
    """
    config = with_conv_layers(source.config, "conv_feature_layers", source.name)
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.data2vec.data2vec_model import Data2VecAudioConfig, Data2VecAudioModel

        model = Data2VecAudioModel(merge_with_parent(Data2VecAudioConfig, config, source.name))
    state = {key: ref.load() for key, ref in source.tensors.items()}
    # convert.py drops the EMA teacher and the pretraining head; keep final_proj only if the file has it,
    # so that load_state_dict stays strict either way.
    state = {key: value for key, value in state.items() if not key.startswith("_ema")}
    if not any(key.startswith("final_proj.") for key in state):
        model.remove_pretraining_modules()
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def hiddens(model: Any, wave: torch.Tensor, padding_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Each transformer layer's output (batch-first) and the encoder's final output, as s3prl computes them."""
    res = model.extract_features(wave, padding_mask, mask=False)
    out = {"final": res["x"]}
    out.update({f"layer{i + 1}": x.transpose(0, 1) for i, (x, _, _) in enumerate(res["layer_results"])})
    return out


def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return hiddens(build(source), wave)
