"""wav2vec 2.0 conformer's reference: s3prl's copy of fairseq's ``Wav2Vec2Model`` with conformer layers.

The model is built exactly as for plain wav2vec 2.0 (``adapters.wav2vec2.build_model``:
``merge_with_parent`` of the checkpoint's model config into s3prl's ``Wav2Vec2Config``, the conv spec
re-rendered from remap's own parse, a strict ``load_state_dict``); with ``layer_type: conformer`` and
``pos_enc_type`` ``rel_pos`` or ``rope`` s3prl builds its ``ConformerEncoder``.

That encoder returns no per-layer results unless asked for one target layer, so each layer's output is
taken with a forward hook on the layer (time-first, made batch-first). ``final`` is the encoder's output:
after the final layer norm, which fairseq applies after the layers when ``layer_norm_first`` is set
(the only setting the rule file accepts).
"""

from __future__ import annotations

from typing import Any

import torch

from ...io.source import Source
from .wav2vec2 import build_model


def build(source: Source) -> Any:
    return build_model(source.config, {key: ref.load() for key, ref in source.tensors.items()}, where=source.name)


@torch.no_grad()
def hiddens(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every conformer layer's output (batch-first) and the encoder's final output, from s3prl's forward."""
    outputs: list[torch.Tensor] = []

    def keep(_module: Any, _args: Any, output: Any) -> None:
        outputs.append(output[0].transpose(0, 1))

    handles = [layer.register_forward_hook(keep) for layer in model.encoder.layers]
    try:
        res = model.extract_features(wave, padding_mask=None, mask=False)
    finally:
        for handle in handles:
            handle.remove()
    out = {f"layer{i + 1}": x for i, x in enumerate(outputs)}
    out["final"] = res["x"]
    return out


def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return hiddens(build(source), wave)
