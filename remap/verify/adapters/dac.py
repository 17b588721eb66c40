"""DAC's reference: ``descript-audio-codec``'s own ``dac.DAC``, built as ``DAC.load`` builds it.

``DAC.load`` (audiotools' ``BaseModel.load``) reads ``{"state_dict", "metadata": {"kwargs"}}``,
calls ``DAC(**kwargs)`` and loads the state dict (weight-normed convs: ``weight_g``/``weight_v``).
Here ``kwargs`` is the config remap read from ``metadata.kwargs``, and the state dict is the
tensors remap located; nothing from the file is executed.

Compared, on one second of audio right-padded to a multiple of the hop length (as
``DAC.preprocess`` pads it):

- ``codes``: ``DAC.encode``'s codebook indices (integers: must be identical);
- ``latents``: the encoder's output, before the quantizer;
- ``projected_latents``: each codebook's input projection, concatenated (``DAC.encode``'s ``latents``);
- ``quantized``: the quantized representation ``z``;
- ``audio``: the decoder's output from the codes (``quantizer.from_codes``, then ``decode``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ...io.source import Source

OUTPUTS = ("codes", "latents", "projected_latents", "quantized", "audio")


def sample_format(source: Source) -> tuple[int, int]:
    """DAC models are mono, at the ``sample_rate`` of their kwargs (44.1 kHz by default)."""
    return int(source.config.get("sample_rate", 44100)), 1


def _mono_batch(wave: torch.Tensor, hop: int) -> torch.Tensor:
    """``[1, samples]`` -> ``[1, 1, samples]``, right-padded with zeros to a multiple of ``hop``."""
    audio = wave if wave.dim() == 3 else wave[:, None]
    return torch.nn.functional.pad(audio, (0, math.ceil(audio.shape[-1] / hop) * hop - audio.shape[-1]))


def build(source: Source) -> Any:
    import dac  # descript-audio-codec: needs its audiotools dependency importable

    model = dac.DAC(**dict(source.config))
    model.load_state_dict({key: ref.load() for key, ref in source.tensors.items()})
    return model.eval()


@torch.no_grad()
def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return outputs(build(source), wave)


@torch.no_grad()
def outputs(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """The compared quantities from a ``dac.DAC``."""
    audio = model.preprocess(_mono_batch(wave, int(model.hop_length)), model.sample_rate)
    latents = model.encoder(audio)
    quantized, codes, projected, _, _ = model.quantizer(latents, None)
    from_codes, _, _ = model.quantizer.from_codes(codes)
    return {"codes": codes, "latents": latents, "projected_latents": projected, "quantized": quantized,
            "audio": model.decode(from_codes)}


@torch.no_grad()
def converted(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same quantities from a transformers ``DacModel``."""
    audio = _mono_batch(wave, int(model.config.hop_length))
    encoded = model.encode(audio)
    return {"codes": encoded.audio_codes, "latents": model.encoder(audio),
            "projected_latents": encoded.projected_latents, "quantized": encoded.quantized_representation,
            "audio": model.decode(audio_codes=encoded.audio_codes).audio_values[:, None]}
