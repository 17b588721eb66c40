"""wav2vec 2.0 fine-tuned with CTC: s3prl's ``Wav2Vec2Model`` plus the checkpoint's own ``proj``.

fairseq's ``Wav2VecCtc`` (``fairseq/models/wav2vec/wav2vec2_asr.py``) is not in
s3prl, and fairseq is not installed. Its inference path is short and is
re-stated here from its parts:

- ``Wav2VecEncoder.w2v_model`` is fairseq's ``Wav2Vec2Model`` built from
  the pretrained config (``cfg.model.w2v_args.model``, or argparse's
  ``args.w2v_args``) with its pretraining modules removed; the
  reference builds s3prl's copy of it the same way (``merge_with_parent``, as
  s3prl's ``upstream/wav2vec2/convert.py`` does, then
  ``remove_pretraining_modules``) and loads the ``w2v_encoder.w2v_model.*``
  weights strictly;
- ``extract_features(mask=False)`` gives the encoder's output (after the final
  layer norm for ``layer_norm_first``); ``final_dropout`` is the identity in
  eval; ``proj`` is a Linear, applied here with
  ``torch.nn.functional.linear`` and the checkpoint's ``w2v_encoder.proj``
  weight and bias, which gives ``logits``. fairseq's ``blank_weight`` (refused
  by the rule file unless 0) would change only the blank logit.

``source.config`` is the merged config rules/wav2vec2-ctc.yaml reads, whichever layout the file
has: hydra's ``cfg.task``, ``cfg.criterion``, ``cfg.model``, then ``cfg.model.w2v_args.model`` (the
pretrained model's config, which wins), or argparse's ``args`` then ``args.w2v_args``. s3prl's
``Wav2Vec2Config`` keeps the fields it knows (``merge_with_parent``), and the conv spec it evals is
the canonical literal of remap's own parse (see ``_s3prl``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...io.source import Source
from .wav2vec2 import build_model, hiddens

PREFIX = "w2v_encoder.w2v_model."


def build(source: Source) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """s3prl's Wav2Vec2Model for ``w2v_encoder.w2v_model``, and the CTC projection's weight and bias."""
    state = {key[len(PREFIX):]: ref.load() for key, ref in source.tensors.items() if key.startswith(PREFIX)}
    model = build_model(source.config, state, finetuned=True, where=source.name)
    return model, source.tensors["w2v_encoder.proj.weight"].load(), source.tensors["w2v_encoder.proj.bias"].load()


@torch.no_grad()
def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    model, weight, bias = build(source)
    out = hiddens(model, wave)
    out["logits"] = F.linear(out["final"], weight, bias)
    return out
