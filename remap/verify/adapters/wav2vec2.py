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
from typing import Any

import torch

from ...io.source import Source
from ._s3prl import merge_with_parent


def model_config(config: dict[str, Any]) -> Any:
    """s3prl's ``Wav2Vec2Config`` for a checkpoint's model config."""
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Config

    return merge_with_parent(Wav2Vec2Config, dict(config))


def build_model(config: dict[str, Any], state_dict: dict[str, torch.Tensor], finetuned: bool = False) -> Any:
    """s3prl's Wav2Vec2Model with ``state_dict`` loaded strictly.

    ``finetuned``: fairseq's fine-tuning removes the pretraining modules
    (quantizer, project_q, target_glu, final_proj) before training and saving,
    so the model is built the same way.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Model

    model = Wav2Vec2Model(model_config(config))
    if finetuned:
        model.remove_pretraining_modules()
    model.load_state_dict(state_dict)
    return model.eval()


def build(source: Source) -> Any:
    return build_model(dict(source.config), {key: ref.load() for key, ref in source.tensors.items()})


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
