"""Mimi's reference: Kyutai's ``moshi`` package, built as ``moshi.models.loaders.get_mimi`` builds it.

``get_mimi(filename, mimi_config)`` builds the SEANet encoder/decoder, the two projected
transformers and the split quantizer from the config (moshi's JSON format: ``sample_rate``,
``channels``, ``frame_rate``, ``seanet``, ``quantizer``, ``transformer``), then loads the state
dict; moshi's own load hook reads both attention layouts (the released fused ``in_proj_weight`` and
moshi 0.2.13's ``in_projs.0.weight``). Here the config is moshi's ``_mimi_config`` (the released
model) overlaid by the config remap read (``--source-config``), section by section as the rule file
reads it, and the state dict is the tensors remap located; nothing from the file is executed.

Compared on the audio ``verify`` passes, right-padded to a whole number of Mimi frames (as
``MimiModel.encode`` pads it), with every codebook in use:

- ``codes``: the codes of ``encode`` (integers: must be identical);
- ``latents``: the continuous latents before quantization (``encode_to_latent(quantize=False)``);
- ``dequantized``: the quantizer's reconstruction of the latents from the codes (``decode_latent``);
- ``audio``: the decoder's output from the codes (``decode``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from ...io.source import Source

OUTPUTS = ("codes", "latents", "dequantized", "audio")


def mimi_config(source: Source) -> dict[str, Any]:
    """moshi's released config, each top-level entry replaced by the source config's (as the rule file does)."""
    from moshi.models import loaders

    config: dict[str, Any] = copy.deepcopy(loaders._mimi_config)
    config.update({k: copy.deepcopy(v) for k, v in source.config.items() if k in config})
    return config


def sample_format(source: Source) -> tuple[int, int]:
    config = mimi_config(source)
    return int(config["sample_rate"]), int(config["seanet"].get("channels", 1))


def build(source: Source) -> Any:
    from moshi.models import loaders

    config = mimi_config(source)
    model = loaders.get_mimi(None, config, device="cpu", num_codebooks=int(config["quantizer"].get("n_q", 8)))
    model.load_state_dict({key: ref.load() for key, ref in source.tensors.items()})
    return model.eval()


def _frames(wave: torch.Tensor, frame_size: int) -> torch.Tensor:
    """``[1, samples]`` or ``[1, channels, samples]`` -> ``[1, channels, whole frames]`` (zero-padded on the right)."""
    audio = wave if wave.dim() == 3 else wave[:, None]
    return torch.nn.functional.pad(audio, (0, math.ceil(audio.shape[-1] / frame_size) * frame_size - audio.shape[-1]))


@torch.no_grad()
def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return outputs(build(source), wave)


@torch.no_grad()
def outputs(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """The compared quantities from moshi's ``MimiModel`` (torch.compile off, as on CPU)."""
    from moshi.utils.compile import no_compile

    with no_compile():
        audio = _frames(wave, int(model.frame_size))
        codes = model.encode(audio)
        return {"codes": codes, "latents": model.encode_to_latent(audio, quantize=False),
                "dequantized": model.decode_latent(codes), "audio": model.decode(codes)}


@torch.no_grad()
def converted(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same quantities from a transformers ``MimiModel``."""
    audio = _frames(wave, int(model.config.frame_size))
    codes = model.encode(audio).audio_codes
    return {"codes": codes, "latents": model.encoder(audio).latents, "dequantized": model.quantizer.decode(codes),
            "audio": model.decode(codes).audio_values}
