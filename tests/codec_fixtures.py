"""Audio codec fixtures: the reference packages (moshi, encodec, dac), perturbed models, released file layouts.

The reference models are the original projects' own code:

- Mimi: ``moshi`` (``moshi.models.loaders.get_mimi(None, config)`` builds it without weights);
- EnCodec: facebookresearch ``encodec`` (``EncodecModel.encodec_model_24khz(pretrained=False)``, ``_48khz``,
  or ``EncodecModel._get_model`` for other model arguments);
- DAC: ``descript-audio-codec`` (``dac.DAC(**kwargs)``).

``encodec`` and ``dac`` import torchaudio / audiotools / argbind at module level without needing them for
the model. `reference_package` imports them with the test-only stand-ins of ``tests/standins`` on
``sys.path`` (see its README), then takes the stand-ins off ``sys.path`` and out of ``sys.modules`` again,
so ``import torchaudio`` still fails everywhere else (transformers included). Nothing downloads: every
model is built from code with random weights, then every parameter and buffer is perturbed.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors.torch import save_file

STANDINS = Path(__file__).resolve().parent / "standins"

warnings.filterwarnings("ignore", message=r".*torch\.nn\.utils\.weight_norm.*is deprecated", category=FutureWarning)


@contextlib.contextmanager
def _standins() -> Iterator[None]:
    sys.path.insert(0, str(STANDINS))
    try:
        yield
    finally:
        sys.path.remove(str(STANDINS))
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(STANDINS)):
                del sys.modules[name]  # the imported packages keep their references; nothing else can import them


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread while a codec module runs: these small convs gain nothing from a second thread, and
    OpenMP's spin-waiting on a busy 2-core machine costs 5-10x the CPU time (measured). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def reference_package(name: str) -> ModuleType:
    """``moshi``, ``encodec`` or ``dac``: imported once, with the stand-ins only while importing."""
    if name in sys.modules:
        return sys.modules[name]
    with _standins(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def randomize(tensor: torch.Tensor, generator: torch.Generator, low: float | None = None) -> None:
    """Overwrite a buffer whose init is constant (zeros, ones) with values that matter."""
    with torch.no_grad():
        if low is None:
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
        else:
            tensor.copy_(low + torch.rand(tensor.shape, generator=generator))


def wave(channels: int, samples: int, seed: int = 1) -> torch.Tensor:
    """Seeded noise, ``[1, channels, samples]``."""
    return 0.5 * torch.randn(1, channels, samples, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- Mimi (moshi)

def mimi_released_config() -> dict[str, Any]:
    loaders = reference_package("moshi.models.loaders")
    return copy.deepcopy(loaders._mimi_config)


def mimi_config(**changes: Any) -> dict[str, Any]:
    """moshi's mimi config (its JSON format: sample_rate, channels, frame_rate, seanet, quantizer, transformer)."""
    config = mimi_released_config()
    for section in ("seanet", "quantizer", "transformer"):
        config[section].update(changes.pop(section, {}))
    config.update(changes)
    return config


# A small Mimi at 2.4 kHz: 8 filters, ratios [4, 3, 2] (hop 24), 2 transformer layers of width 32 with 4 heads,
# a 5-frame attention window, 6 codebooks of 64 entries 16 wide.
def tiny_mimi_config(**changes: Any) -> dict[str, Any]:
    seanet = {"dimension": 32, "n_filters": 8, "ratios": [4, 3, 2]}
    sections = {
        "seanet": seanet,
        "quantizer": {"dimension": 16, "n_q": 6, "bins": 64, "input_dimension": 32, "output_dimension": 32},
        "transformer": {"d_model": 32, "num_heads": 4, "num_layers": 2, "dim_feedforward": 64, "context": 5,
                        "input_dimension": 32, "output_dimensions": [32]},
    }
    for section, values in changes.pop("sections", {}).items():
        sections[section] = {**sections[section], **values}
    return mimi_config(**{"sample_rate": 2400, "frame_rate": 50, **sections, **changes})


def build_mimi(config: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """moshi's own MimiModel for ``config``, every parameter and buffer moved off its init."""
    loaders = reference_package("moshi.models.loaders")
    torch.manual_seed(seed)
    model = loaders.get_mimi(None, copy.deepcopy(config), device="cpu", num_codebooks=config["quantizer"]["n_q"])
    generator = torch.Generator().manual_seed(seed + 7)
    for name, buf in model.named_buffers():
        if name.endswith("_initialized"):
            buf.fill_(1.0)
        elif name.endswith("cluster_usage"):
            randomize(buf, generator, low=0.5)
        elif name.endswith("embedding_sum"):
            usage = model.get_buffer(name.removesuffix("embedding_sum") + "cluster_usage")
            with torch.no_grad():
                buf.copy_(torch.randn(buf.shape, generator=generator) * usage[:, None])
    perturb_params(model, seed)
    for module in model.modules():  # the centroids are cached on first use
        if hasattr(module, "_embedding"):
            module._embedding = None
    return model.eval()


def perturb_params(model: torch.nn.Module, seed: int) -> None:
    """Parameters only (codebook buffers are set by the builders)."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("weight_g"):
                param.mul_(1.0 + 0.2 * noise.abs())
            elif name.endswith("scale"):  # layer scales start at 0.01: make the residual branches count
                param.copy_(0.2 + 0.3 * noise.abs())
            else:
                scale = float(param.std()) if param.numel() > 1 and float(param.std()) > 0 else 0.1
                param.add_(noise * 0.2 * scale)


def save_mimi_released(model: torch.nn.Module, path: Path, fused: bool = True) -> None:
    """The released safetensors layout: flat, attention as fused ``in_proj_weight`` and ``out_proj.weight``.

    ``fused=False`` keeps moshi 0.2.13's own names (``in_projs.0.weight``, ``out_projs.0.weight``).
    """
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fused:
        state = {k.replace("self_attn.in_projs.0.weight", "self_attn.in_proj_weight")
                 .replace("self_attn.out_projs.0.weight", "self_attn.out_proj.weight"): v for k, v in state.items()}
    save_file(state, path)


# ---------------------------------------------------------------- EnCodec (facebookresearch encodec)

def build_encodec(style: str, seed: int = 0, **model_args: Any) -> torch.nn.Module:
    """encodec's own EncodecModel: the released 24 kHz or 48 kHz architecture, or ``_get_model(**model_args)``."""
    encodec = reference_package("encodec")
    torch.manual_seed(seed)
    if style == "24khz":
        model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    elif style == "48khz":
        model = encodec.EncodecModel.encodec_model_48khz(pretrained=False)
    else:
        model = encodec.EncodecModel._get_model(**model_args)
    generator = torch.Generator().manual_seed(seed + 7)
    for name, buf in model.named_buffers():
        if name.endswith("inited"):
            buf.fill_(1.0)
        elif name.endswith("cluster_size"):
            randomize(buf, generator, low=0.5)
        elif name.endswith("embed") or name.endswith("embed_avg"):
            randomize(buf, generator)
    perturb_params(model, seed)
    return model.eval()


def save_encodec_released(model: torch.nn.Module, path: Path) -> None:
    """The released ``encodec_24khz-d7cc33bc.th`` layout: ``torch.save(model.state_dict())``."""
    torch.save(model.state_dict(), path)


# ---------------------------------------------------------------- DAC (descript-audio-codec)

DAC_TINY: dict[str, Any] = {"encoder_dim": 4, "encoder_rates": [2, 3], "decoder_dim": 16, "decoder_rates": [3, 2],
                            "n_codebooks": 3, "codebook_size": 16, "codebook_dim": 4, "sample_rate": 8000}


def build_dac(kwargs: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    dac = reference_package("dac")
    torch.manual_seed(seed)
    model = dac.DAC(**kwargs)
    perturb_params(model, seed)
    generator = torch.Generator().manual_seed(seed + 7)
    for name, param in model.named_parameters():
        if name.endswith("alpha"):  # snake's alpha starts at ones
            randomize(param.data, generator, low=0.5)
        elif name.endswith("codebook.weight"):
            randomize(param.data, generator)
    return model.eval()


def dac_kwargs(model: torch.nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What audiotools' ``BaseModel.save`` records: every __init__ default, overwritten by the model's attribute."""
    import inspect

    saved = {name: p.default for name, p in inspect.signature(type(model)).parameters.items()
             if p.default is not inspect.Parameter.empty}
    saved.update(kwargs)
    for name in list(saved):
        if hasattr(model, name):
            saved[name] = getattr(model, name)
    return {k: (int(v) if hasattr(v, "item") and not isinstance(v, (list, tuple)) else v) for k, v in saved.items()}


def save_dac_released(model: torch.nn.Module, kwargs: dict[str, Any], path: Path) -> None:
    """audiotools ``BaseModel.save(path, package=False)``: ``{"state_dict", "metadata": {"kwargs"}}``."""
    torch.save({"state_dict": model.state_dict(), "metadata": {"kwargs": dac_kwargs(model, kwargs)}}, path)


# ---------------------------------------------------------------- shared checks

def write_wav(path: Path, audio: torch.Tensor, rate: int) -> Path:
    """``[channels, samples]`` in [-1, 1] as 16-bit PCM (what ``remap verify --audio`` reads)."""
    import wave as wavefile

    pcm = (audio.clamp(-1, 1) * 32767).round().to(torch.int16).T.contiguous().numpy().astype("<i2")
    with wavefile.open(str(path), "wb") as f:
        f.setnchannels(audio.shape[0])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return path


def apply(rules: Path | str, source: Path, out: Path, source_config: Path | None = None) -> None:
    """``remap apply`` through the CLI (with ``--source-config`` when given)."""
    from remap.cli import main

    args = ["apply", str(rules), str(source), "-o", str(out)]
    if source_config is not None:
        args += ["--source-config", str(source_config)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(args)
    assert code == 0, err.getvalue()


def load_strictly(class_name: str, out: Path) -> Any:
    """The converted model; transformers' raw load report must be empty, and the file must hold exactly its keys.

    The key check matters for MimiModel: its ``_keys_to_ignore_on_load_unexpected`` drops every unexpected
    key under ``encoder.``/``decoder.`` from the report, so a stray tensor there would load "cleanly".
    """
    import transformers
    from safetensors import safe_open

    cls = getattr(transformers, class_name)
    model, info = cls.from_pretrained(out, output_loading_info=True, local_files_only=True)
    assert {k: v for k, v in info.items() if v} == {}, info
    assert {"missing_keys", "unexpected_keys", "mismatched_keys"} <= set(info)
    with safe_open(out / "model.safetensors", "pt") as f:
        written = set(f.keys())
    assert written == set(model.state_dict()), (written ^ set(model.state_dict()))
    return model.eval()


def worst(diffs: dict[str, float], exact: tuple[str, ...] = ("codes",)) -> float:
    """The largest float difference; integer outputs must be identical."""
    for name in exact:
        assert diffs[name] == 0, diffs
    return max(v for k, v in diffs.items() if k not in exact)
