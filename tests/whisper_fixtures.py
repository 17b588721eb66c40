"""Tiny openai-whisper checkpoints, written the way openai-whisper's released ``.pt`` files are.

A released file is ``torch.save({"dims": asdict(ModelDimensions), "model_state_dict": state_dict})``;
``whisper.load_model`` reads exactly that. The models here are openai-whisper's own ``Whisper`` with
tiny dimensions and every persistent tensor perturbed, so a wrong mapping shows in the outputs.

Dimensions, and why:

- ``n_audio_ctx`` 50: the mel input is ``2 * n_audio_ctx`` = 100 frames, one second of 16 kHz audio;
  the output folder's feature extractor pads to ``n_audio_ctx / 50`` seconds (1 s here, 30 s for every
  released model, whose ``n_audio_ctx`` is 1500);
- width 64 with 4 heads and 2 layers on each side: every kind of block, twice;
- ``n_text_ctx`` 16: whisper's greedy decoding samples at most ``n_text_ctx // 2`` = 8 tokens (each
  step of transformers' generate costs ~0.1 s on a CPU, in its suppress-tokens ``torch.isin``);
- the real vocabularies (51864 English-only, 51865 multilingual with 99 languages, 51866 with 100 as
  large-v3): the token ids of the special tokens follow from ``n_vocab``, which is what is tested.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

# n_vocab of each vocabulary whisper has shipped
VOCABS = {"multilingual": 51865, "english": 51864, "v3": 51866}
TINY: dict[str, int] = {"n_audio_ctx": 50, "n_audio_state": 64, "n_audio_head": 4, "n_audio_layer": 2,
                        "n_text_ctx": 16, "n_text_state": 64, "n_text_head": 4, "n_text_layer": 2}


def dims(n_mels: int = 80, vocab: str = "multilingual", **extra: int) -> dict[str, int]:
    return {"n_mels": n_mels, "n_vocab": VOCABS[vocab], **TINY, **extra}


def build(model_dims: dict[str, int], seed: int = 0) -> Any:
    """openai-whisper's ``Whisper`` for ``model_dims``, every parameter and persistent buffer perturbed.

    The decoder's causal ``mask`` and ``alignment_heads`` are non-persistent buffers: they are not in
    the state dict (nor in a released file) and stay as whisper builds them. The decoder's positional
    embedding is ``torch.empty`` in whisper's constructor (its values come from the checkpoint), so it
    is drawn first.
    """
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**model_dims))
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0.0, 0.02, generator=generator)
        # trained-like scale: with nn.Embedding's N(0, 1) the residual stream is the current token's
        # own embedding, and greedy decoding repeats it forever
        model.decoder.token_embedding.weight.normal_(0.0, 0.02, generator=generator)
        for name, tensor in model.state_dict().items():
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("ln.weight") or name.endswith("ln_post.weight") or name.endswith("_ln.weight"):
                tensor.mul_(1.0 + 0.2 * noise)  # layer norm gains: keep them near 1
            else:
                scale = float(tensor.std()) if tensor.numel() > 1 and float(tensor.std()) > 0 else 0.1
                tensor.add_(noise * 0.2 * scale)
    return model.eval()


def save(path: Path, model: Any) -> None:
    """The released layout: ``{"dims": asdict(dims), "model_state_dict": state_dict}``."""
    torch.save({"dims": dataclasses.asdict(model.dims), "model_state_dict": model.state_dict()}, path)


def write(path: Path, model_dims: dict[str, int], seed: int = 0) -> Any:
    model = build(model_dims, seed)
    save(path, model)
    return model
