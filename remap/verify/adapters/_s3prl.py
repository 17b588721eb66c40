"""Shared by the adapters: s3prl's config helper, and the guard on config values s3prl evaluates.

s3prl's reference models call Python's ``eval()`` on one config string each, the conv layer spec:

- ``DistillerModel`` (``distiller/model.py``): ``extractor_conv_feature_layers``;
- ``Wav2Vec2Model`` (``wav2vec2/wav2vec2_model.py``, in ``__init__`` and again in
  ``_get_feat_extract_output_lengths``), ``HubertModel`` (``hubert/hubert_model.py``),
  ``Data2VecAudioModel`` (``data2vec/data2vec_model.py``, in ``__init__`` and
  ``_get_feat_extract_output_lengths``) and ``WavLM`` (``wavlm/WavLM.py``): ``conv_feature_layers``.

A checkpoint's config is data from the file, so a conv spec such as
``__import__('os').system(...) or [(512, 10, 5)]`` would run. The adapters never hand s3prl that
text: `conv_layers_literal` parses it with remap's own `list_expr` (literal lists, tuples, numbers
and strings with ``+`` and ``*``, nothing else) and gives s3prl a canonical literal re-rendered from
the parsed value, so what s3prl evaluates is always a plain list of integer triples.

Also checked (not code execution, but canonicalised the same way): ``Wav2Vec2Model``'s quantizer
passes a string ``latent_temp`` to ``ast.literal_eval``; `temperature_literal` turns it into a
tuple first. s3prl's other ``eval`` calls (``MultiheadAttention``'s ``xformers_att_config``, the
upstream experts' hook names) never see config values from a checkpoint in the models built here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ...errors import SourceError
from ...rules.expr import list_expr

MAX_SHOWN = 80  # characters of an offending value shown in an error


def merge_with_parent(dc: Any, cfg: Mapping[str, Any], where: str = "checkpoint") -> Any:
    """s3prl.upstream.utils.merge_with_parent: drop unknown keys, then build the dataclass.

    Re-stated because ``s3prl.upstream.utils`` cannot be imported here: it imports
    ``s3prl.util.download`` (``requests``; it exists to download) and
    ``s3prl.util.pseudo_data``, which imports torchaudio at module level, and the
    torchaudio on offer breaks transformers' imports. Values are not coerced, as in s3prl.
    """
    known = {f.name for f in fields(dc)}
    kept = {k: v for k, v in copy.deepcopy(dict(cfg)).items() if k in known}
    if not kept:
        raise SourceError(f"the checkpoint's config has none of the fields of s3prl's {dc.__name__}", where)
    return dc(**kept)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def conv_layers_literal(value: Any, field: str, where: str) -> str:
    """``value`` (a conv layer spec from the checkpoint) as a canonical literal that is safe to ``eval``.

    The value is read as the rule files read it (``list_expr(str(value))``); it must be a non-empty
    list of (dim, kernel, stride) positive integer triples. Anything else is a one-line SourceError
    naming ``field``; the text itself is never evaluated.
    """
    text = value if isinstance(value, str) else str(value)
    try:
        layers = list_expr(text)
    except ValueError:
        raise SourceError(f"config '{field}' is not a literal list of (dim, kernel, stride) conv layers: "
                          f"{_shown(text)} (s3prl would run it as Python code; remap does not)", where) from None
    triples = [tuple(layer) for layer in layers if isinstance(layer, (list, tuple))]
    if not layers or len(triples) != len(layers) or not all(
            len(t) == 3 and all(type(n) is int and n > 0 for n in t) for t in triples):
        raise SourceError(f"config '{field}' must be a non-empty list of (dim, kernel, stride) positive "
                          f"integer triples, got {_shown(text)}", where)
    return repr(triples)


def with_conv_layers(config: Mapping[str, Any], field: str, where: str) -> dict[str, Any]:
    """A copy of ``config`` whose ``field`` (when present) is replaced by its canonical literal."""
    safe = dict(config)
    if field in safe:
        safe[field] = conv_layers_literal(safe[field], field, where)
    return safe


def temperature_literal(value: Any, field: str, where: str) -> Any:
    """A string ``latent_temp`` as the (max, min, decay) tuple s3prl's ``ast.literal_eval`` would give."""
    if not isinstance(value, str):
        return value
    try:
        parsed = list_expr(value)
    except ValueError:
        parsed = []
    if len(parsed) != 3 or not all(type(v) in (int, float) for v in parsed):
        raise SourceError(f"config '{field}' must be a (max, min, decay) triple of numbers, got {_shown(value)}",
                          where)
    return tuple(float(v) for v in parsed)
