"""s3prl reference helpers: build DistilHuBERT checkpoints and compare against s3prl's own model.

Used by the parity tests, the bundled example's generator and its parity
check. Everything here runs s3prl's reference code
(``s3prl.upstream.distiller.model``), never remap's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch

with contextlib.redirect_stdout(io.StringIO()):
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

from remap.verify.adapters.distilhubert import hiddens

# s3prl builds its positional conv with the old weight-norm API on purpose: that is what its checkpoints hold.
warnings.filterwarnings("ignore", message=r".*torch\.nn\.utils\.weight_norm.*is deprecated", category=FutureWarning)


def build_distiller(config: dict[str, Any], seed: int = 0) -> DistillerModel:
    """s3prl's DistillerModel with every tensor perturbed away from its init."""
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        model = DistillerModel(DistillerConfig(config))
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.state_dict().items():
            if not param.is_floating_point():
                continue
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("weight_g"):
                param.mul_(1.0 + 0.2 * noise.abs())
            else:
                scale = float(param.std()) if param.numel() > 1 and float(param.std()) > 0 else 0.1
                param.add_(noise * 0.2 * scale)
    return model.eval()


def save_s3prl_checkpoint(model: DistillerModel, config: dict[str, Any], path: Path, step: int = 1000,
                          optimizer_state: bool = True) -> None:
    """Write the layout s3prl's pretraining runner saves (optionally without optimizer state)."""
    # lr=0 and no weight decay: one step fills the optimizer state (as in a
    # real checkpoint) without changing the weights.
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.0)
    if optimizer_state:
        for param in model.parameters():
            param.grad = torch.zeros_like(param)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    states = {
        "Distiller": model.state_dict(),
        "Optimizer": optimizer.state_dict(),
        "Step": step,
        "Args": argparse.Namespace(config="config_runner.yaml", upstream="distiller", expdir="result/pretrain",
                                   seed=1337, multi_gpu=False),
        "Config": {"runner": {"total_steps": step, "save_step": step}, "distiller": dict(config)},
    }
    torch.save(states, path)


def reference_hiddens(model: DistillerModel, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """s3prl's conv features, every layer's output and the encoder's final output."""
    return hiddens(model, wave)


@torch.no_grad()
def converted_hiddens(hf_model: Any, wave: torch.Tensor, stable: bool) -> dict[str, torch.Tensor]:
    """The same quantities from a transformers HubertModel.

    HubertModel's hidden_states[i] (i >= 1) is layer i's raw output, and
    last_hidden_state adds the final layer norm (do_stable_layer_norm).
    """
    out = hf_model(wave, output_hidden_states=True)
    result = {"features": hf_model.feature_extractor(wave).transpose(1, 2), "final": out.last_hidden_state}
    result.update({f"layer{i + 1}": h for i, h in enumerate(out.hidden_states[1:])})
    return result


def compare(reference: dict[str, torch.Tensor], converted: dict[str, torch.Tensor]) -> dict[str, float]:
    """Max |diff| per quantity present in both."""
    return {k: float((reference[k] - converted[k]).abs().max()) for k in reference if k in converted}


def check_folder(model: DistillerModel, out_dir: Path, seconds: float = 1.0) -> dict[str, float]:
    """Load the converted folder strictly and compare it with ``model`` on seeded noise."""
    from transformers import HubertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_model, info = HubertModel.from_pretrained(out_dir, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise AssertionError(f"transformers load report is not clean: {problems}")
    hf_model.eval()
    wave = torch.randn(2, int(16000 * seconds), generator=torch.Generator().manual_seed(7))
    ref = reference_hiddens(model, wave)
    got = converted_hiddens(hf_model, wave, stable=hf_model.config.do_stable_layer_norm)
    missing = sorted(set(ref) - set(got))
    if missing:
        raise AssertionError(f"converted model lacks {missing}")
    return compare(ref, got)


def load_reference(ckpt: Path) -> DistillerModel:
    """Rebuild s3prl's model from a checkpoint the way s3prl's builder does."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        states = torch.load(ckpt, map_location="cpu", weights_only=True)
    with contextlib.redirect_stdout(io.StringIO()):
        model = DistillerModel(DistillerConfig(states["Config"]["distiller"]))
    model.load_state_dict(states["Distiller"])
    return model.eval()


@torch.no_grad()
def padded_batch_diffs(model: DistillerModel, out_dir: Path, lengths: tuple[int, ...] = (16000, 9000)) -> dict[str, float]:
    """Max |diff| on the valid frames of a padded batch, with the converted folder's own feature extractor."""
    from transformers import AutoFeatureExtractor, HubertModel

    generator = torch.Generator().manual_seed(11)
    waves = [torch.randn(n, generator=generator) for n in lengths]
    extractor = AutoFeatureExtractor.from_pretrained(out_dir)
    inputs = extractor([w.numpy() for w in waves], sampling_rate=16000, padding=True, return_tensors="pt")
    hf_model = HubertModel.from_pretrained(out_dir).eval()
    out = hf_model(**inputs, output_hidden_states=True)
    frames = hf_model._get_feature_vector_attention_mask(out.last_hidden_state.shape[1], inputs["attention_mask"])

    ref = hiddens(model, inputs["input_values"], inputs["attention_mask"].long())
    _, pad = model.forward_feature(inputs["input_values"], inputs["attention_mask"].long())
    final = ref["final"]
    layers = [ref[f"layer{i + 1}"] for i in range(len(ref) - 2)]
    assert torch.equal(pad.bool(), frames), "s3prl and transformers disagree on which frames are padding"
    valid = frames.bool()
    pairs = {"final": (final, out.last_hidden_state)}
    pairs.update({f"layer{i + 1}": (layers[i], out.hidden_states[i + 1]) for i in range(len(layers))})
    return {k: float((a[valid] - b[valid]).abs().max()) for k, (a, b) in pairs.items()}
