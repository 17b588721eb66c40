"""HuBERT's reference: s3prl's copy of fairseq's ``HubertModel``.

The model is built as s3prl's ``upstream/hubert/convert.py`` does
(``merge_with_parent`` of the checkpoint's model config into s3prl's
``HubertConfig``), from the config and state dict remap selected, whichever
layout the checkpoint has.

Two things are not taken from the checkpoint, and neither changes the outputs:

- The task config (``HubertPretrainingConfig``): ``source`` holds only the
  model config. The model reads ``sample_rate`` from it, and only to align
  pretraining labels, so s3prl's defaults are used. Its ``normalize`` option is
  a preprocessing step outside the model (s3prl's expert applies it to the
  waveform), and the converted model is compared on the same raw waveform.
- The label dictionaries: they only size the pretraining heads
  (``label_embs_concat``, and ``final_proj`` when untied), so stand-ins of the
  sizes the stored tensors have are used, and the state dict still loads
  strictly.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch

from ...io.source import Source
from ._s3prl import merge_with_parent, with_conv_layers


def _dictionaries(source: Source, final_dim: int, untie: bool) -> list[Any]:
    """Stand-in label dictionaries that give the stored heads their shapes."""
    if "label_embs_concat" not in source.tensors:
        return [None]  # s3prl then builds no label embeddings
    total = source.tensors["label_embs_concat"].info.shape[0]
    count = 1
    if untie and "final_proj.weight" in source.tensors:
        count = max(1, source.tensors["final_proj.weight"].info.shape[0] // final_dim)
    sizes = [total - (count - 1)] + [1] * (count - 1)
    return [[f"<{i}>" for i in range(n)] for n in sizes]


def build(source: Source) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

    config = with_conv_layers(source.config, "conv_feature_layers", source.name)  # s3prl evals it (see _s3prl)
    # label_rate has no default in s3prl's HubertConfig and only aligns pretraining
    # labels; a hydra interpolation left unresolved (a string) is replaced too.
    if not isinstance(config.get("label_rate"), (int, float)):
        config["label_rate"] = -1.0
    model_cfg = merge_with_parent(HubertConfig, config, source.name)
    task_cfg = HubertPretrainingConfig()
    final_dim = model_cfg.final_dim if model_cfg.final_dim > 0 else model_cfg.encoder_embed_dim
    model = HubertModel(model_cfg, task_cfg, _dictionaries(source, final_dim, bool(model_cfg.untie_final_proj)))
    model.load_state_dict({key: ref.load() for key, ref in source.tensors.items()})
    return model.eval()


@torch.no_grad()
def hiddens(model: Any, wave: torch.Tensor, padding_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every transformer layer's output and the encoder's final output, from s3prl's own forward.

    ``padding_mask`` is fairseq's: True on padded samples. Layer outputs are the
    ones s3prl's ``TransformerEncoder.extract_features`` returns (time-first,
    before the final layer norm of ``layer_norm_first`` models, padding for
    ``required_seq_len_multiple`` removed); they are made batch-first.
    """
    captured: dict[str, Any] = {}
    encoder = model.encoder
    original = encoder.extract_features

    def capture(*args: Any, **kwargs: Any) -> Any:
        x, layer_results = original(*args, **kwargs)
        captured["layers"] = layer_results
        return x, layer_results

    encoder.extract_features = capture
    try:
        final, _ = model.extract_features(wave, padding_mask=padding_mask, mask=False)
    finally:
        del encoder.extract_features
    out = {"final": final}
    out.update({f"layer{i + 1}": x.transpose(0, 1) for i, (x, _, _) in enumerate(captured["layers"])})
    return out


def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return hiddens(build(source), wave)
