"""wav2vec 2.0's reference: s3prl's copy of fairseq's ``Wav2Vec2Model``.

The model is built as s3prl's ``upstream/wav2vec2/convert.py`` does
(``merge_with_parent`` of the checkpoint's model config into s3prl's
``Wav2Vec2Config``), from the config and state dict remap selected, whichever
layout the checkpoint has (fairseq's ``cfg.model``, the flat ``args`` of older
fairseq, or s3prl's ``model_cfg``).

The task config (``AudioPretrainingConfig``) is not used: the model does not
read it. Its ``normalize`` option is a preprocessing step outside the model, and
the converted model is compared on the same raw waveform.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import Any

import torch

from ...io.source import Source
from ._s3prl import merge_with_parent, temperature_literal, with_conv_layers


def model_config(config: Mapping[str, Any], where: str = "checkpoint") -> Any:
    """s3prl's ``Wav2Vec2Config`` for a checkpoint's model config.

    ``conv_feature_layers`` (which s3prl evals) becomes the canonical literal of remap's own parse,
    and a string ``latent_temp`` a tuple (see ``_s3prl``).
    """
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Config

    safe = with_conv_layers(config, "conv_feature_layers", where)
    if "latent_temp" in safe:
        safe["latent_temp"] = temperature_literal(safe["latent_temp"], "latent_temp", where)
    return merge_with_parent(Wav2Vec2Config, safe, where)


def build_model(config: Mapping[str, Any], state_dict: dict[str, torch.Tensor], finetuned: bool = False,
                where: str = "checkpoint") -> Any:
    """s3prl's Wav2Vec2Model with ``state_dict`` loaded strictly.

    ``finetuned``: fairseq's fine-tuning removes the pretraining modules
    (quantizer, project_q, target_glu, final_proj) before training and saving,
    so the model is built the same way.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Model

    model = Wav2Vec2Model(model_config(config, where))
    if finetuned:
        model.remove_pretraining_modules()
    model.load_state_dict(state_dict)
    return model.eval()


def build(source: Source) -> Any:
    return build_model(source.config, {key: ref.load() for key, ref in source.tensors.items()}, where=source.name)


@torch.no_grad()
def hiddens(model: Any, wave: torch.Tensor, padding_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every transformer layer's output and the encoder's final output, from s3prl's own forward.

    ``padding_mask`` is fairseq's: True on padded samples. ``extract_features``
    returns the layer outputs time-first, before the final layer norm of
    ``layer_norm_first`` models, with the padding for
    ``required_seq_len_multiple`` removed; they are made batch-first. ``final``
    is the encoder's output (after that final layer norm for
    ``layer_norm_first``).
    """
    res = model.extract_features(wave, padding_mask=padding_mask, mask=False)
    out = {"final": res["x"]}
    out.update({f"layer{i + 1}": x.transpose(0, 1) for i, (x, _, _) in enumerate(res["layer_results"])})
    return out


def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return hiddens(build(source), wave)
