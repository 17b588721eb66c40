"""EnCodec's reference: facebookresearch ``encodec``'s own ``EncodecModel``.

encodec builds its models in code: ``EncodecModel.encodec_model_24khz()`` and ``_48khz()`` call
``EncodecModel._get_model`` with fixed arguments, then load a bare state dict. The reference does
the same, with ``pretrained=False`` and the tensors remap located:

- a config (``--source-config``: ``_get_model``'s arguments) -> ``EncodecModel._get_model(**config)``;
- no config -> the released model the weights are: weight norm and one input channel is the 24 kHz
  model, time group norm and two channels the 48 kHz one. Anything else is refused, as the rule file
  refuses it.

Compared, at the largest target bandwidth (every codebook), on the audio ``verify`` passes (one
second at the model's rate and channel count):

- ``codes``: every frame's codes, concatenated along time (integers: must be identical);
- ``scales``: each frame's normalisation scale, for models that normalise;
- ``latents``: the encoder's output for every frame, concatenated (the continuous latents);
- ``audio``: the decoder's output from those codes (overlap-added across frames).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ...errors import SourceError
from ...io.source import Source

GET_MODEL_ARGS = ("target_bandwidths", "sample_rate", "channels", "causal", "model_norm", "audio_normalize", "segment")
RELEASED = {"24khz": (24000, 1), "48khz": (48000, 2)}


def _given(source: Source) -> dict[str, Any]:
    return {k: source.config[k] for k in GET_MODEL_ARGS if source.config.get(k) is not None}


def released_style(source: Source) -> str:
    """Which of encodec's released constructors builds the model these weights belong to."""
    tensors = source.tensors
    if "encoder.model.0.conv.conv.weight_g" in tensors:
        style, first = "24khz", "encoder.model.0.conv.conv.weight_v"
    elif "encoder.model.0.conv.norm.weight" in tensors:
        style, first = "48khz", "encoder.model.0.conv.conv.weight"
    else:
        style, first = "", ""
    if not style or first not in tensors or tensors[first].info.shape[1] != RELEASED[style][1]:
        raise SourceError("the weights match neither released EnCodec model and the file has no config; pass "
                          "EncodecModel._get_model's arguments with --source-config", source.name)
    return style


def sample_format(source: Source) -> tuple[int, int]:
    given = _given(source)
    if given:
        return int(given.get("sample_rate", 24000)), int(given.get("channels", 1))
    return RELEASED[released_style(source)]


def build(source: Source) -> Any:
    from encodec.model import EncodecModel  # facebookresearch encodec: needs its torchaudio import to succeed

    given = _given(source)
    if given:
        model = EncodecModel._get_model(**given)
    elif released_style(source) == "24khz":
        model = EncodecModel.encodec_model_24khz(pretrained=False)
    else:
        model = EncodecModel.encodec_model_48khz(pretrained=False)
    model.load_state_dict({key: ref.load() for key, ref in source.tensors.items()})
    return model.eval()


@contextmanager
def _captured(module: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Every output of ``module`` while the block runs (the encoder runs once per frame)."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        yield seen
    finally:
        handle.remove()


def _batch(wave: torch.Tensor) -> torch.Tensor:
    return wave if wave.dim() == 3 else wave[:, None]


@torch.no_grad()
def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return outputs(build(source), wave)


@torch.no_grad()
def outputs(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """The compared quantities from an ``encodec.EncodecModel``."""
    model.set_target_bandwidth(max(model.target_bandwidths))
    with _captured(model.encoder) as latents:
        frames = model.encode(_batch(wave))
    result = {"codes": torch.cat([codes for codes, _ in frames], dim=-1), "latents": torch.cat(latents, dim=-1),
              "audio": model.decode(frames)}
    if frames[0][1] is not None:
        result["scales"] = torch.stack([scale for _, scale in frames])
    return result


@torch.no_grad()
def converted(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same quantities from a transformers ``EncodecModel``."""
    with _captured(model.encoder) as latents:
        encoded = model.encode(_batch(wave), bandwidth=max(model.config.target_bandwidths))
    codes, scales, pad = encoded.audio_codes, encoded.audio_scales, encoded.last_frame_pad_length
    frames = [codes[i, ..., : codes.shape[-1] - pad] if i == len(codes) - 1 else codes[i] for i in range(len(codes))]
    result = {"codes": torch.cat(frames, dim=-1), "latents": torch.cat(latents, dim=-1),
              "audio": model.decode(codes, scales, last_frame_pad_length=pad).audio_values}
    if scales[0] is not None:
        result["scales"] = torch.stack(list(scales))
    return result
