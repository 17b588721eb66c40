"""WavLM's reference: s3prl's ``WavLM`` (Microsoft's own inference code, as vendored by s3prl)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch

from ...io.source import Source
from ._s3prl import with_conv_layers


def build(source: Source) -> Any:
    """s3prl's WavLM, built as s3prl's expert.py builds it: ``WavLM(WavLMConfig(cfg))`` plus a strict load.

    ``cfg`` is the config remap selected: the official file's flat ``cfg``, or a fairseq trainer
    file's ``cfg.task`` merged with ``cfg.model``. The conv spec s3prl evals is the canonical literal
    of remap's own parse (see ``_s3prl``).
    """
    config = with_conv_layers(source.config, "conv_feature_layers", source.name)
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

        model = WavLM(WavLMConfig(config))
    model.load_state_dict({key: ref.load() for key, ref in source.tensors.items()})
    return model.eval()


@torch.no_grad()
def hiddens(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every transformer layer's output (batch-first) and the encoder's final output, as s3prl computes them.

    s3prl fills ``layer_results`` only when asked for a target layer; asking for
    the last one runs every layer but skips the final layer norm (layer_norm_first),
    so the final output comes from a second, ordinary pass.
    """
    n = len(model.encoder.layers)
    (_, layer_results), _ = model.extract_features(wave, padding_mask=None, mask=False, output_layer=n,
                                                   ret_layer_results=True)
    final, _ = model.extract_features(wave, padding_mask=None, mask=False)
    # layer_results[0] is the encoder's input to layer 1; each entry is time-first.
    out = {f"layer{i}": x.transpose(0, 1) for i, (x, _) in enumerate(layer_results) if i > 0}
    out["final"] = final
    return out


def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return hiddens(build(source), wave)
