"""``remap verify``: run the original implementation and the converted model on the same audio.

The original comes from the rule file's adapter (``remap.verify.adapters``); the
converted model is loaded with transformers, strictly (any missing,
unexpected or mismatched key fails). Both see the same waveform: a WAV file
(16 kHz, mono, 16-bit PCM) or seeded noise.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
import wave as wavefile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import RemapError, SourceError
from ..io import read_checkpoint, select_source
from ..io.configfile import read_config_file
from ..io.source import Source
from ..rules.model import RuleSet


@dataclass(frozen=True)
class Report:
    diffs: dict[str, float]
    tolerance: float
    exact: frozenset[str] = frozenset()  # integer outputs (codes): any difference fails

    @property
    def worst(self) -> float:
        return max(self.diffs.values())

    @property
    def ok(self) -> bool:
        return all(d == 0 if k in self.exact else d <= self.tolerance for k, d in self.diffs.items())


ADAPTER_GROUP = "remap.adapters"


def adapter(ruleset: RuleSet) -> Any:
    """The rule file's adapter module: a rule pack's (entry point ``remap.adapters``), else remap's own."""
    name = ruleset.name.replace("-", "_")
    module = f"remap.verify.adapters.{name}"
    for entry in importlib.metadata.entry_points(group=ADAPTER_GROUP):
        if entry.name == ruleset.name:
            module = entry.value
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise RemapError(f"no verify adapter for rule file '{ruleset.name}' (write remap/verify/adapters/"
                             f"{name}.py, or register one under the entry point group {ADAPTER_GROUP})",
                             ruleset.path) from None
        raise RemapError(f"the reference implementation needs '{exc.name}', which is not installed; see the "
                         "README's set-up notes", ruleset.path) from None


def load_audio(path: Path, want_rate: int = 16000, want_channels: int = 1) -> Any:
    """A 16-bit PCM WAV file as a float tensor: [1, samples] for mono, [1, channels, samples] otherwise."""
    import numpy as np
    import torch

    try:
        with wavefile.open(str(path), "rb") as f:
            rate, channels, width, frames = f.getframerate(), f.getnchannels(), f.getsampwidth(), f.readframes(-1)
    except (OSError, EOFError, wavefile.Error) as exc:
        raise SourceError(f"cannot read WAV file: {exc}", str(path)) from None
    if (rate, channels, width) != (want_rate, want_channels, 2):
        kind = "mono" if want_channels == 1 else f"{want_channels}-channel"
        raise SourceError(f"need {want_rate // 1000 if want_rate % 1000 == 0 else want_rate / 1000} kHz {kind} "
                          f"16-bit PCM; this is {rate} Hz, {channels} channel(s), {8 * width}-bit", str(path))
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    wave = torch.from_numpy(samples.reshape(-1, channels).T.copy()).unsqueeze(0)
    return wave[:, 0] if channels == 1 else wave


def load_model(out_dir: Path) -> Any:
    """The converted model, loaded strictly: any missing, unexpected or mismatched key is an error."""
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if not (out_dir / "config.json").is_file():
        raise RemapError("not a converted model folder (no config.json); pass the folder `remap apply` wrote",
                         str(out_dir))
    config = transformers.AutoConfig.from_pretrained(out_dir, local_files_only=True)
    cls = getattr(transformers, (config.architectures or ["AutoModel"])[0], None)
    if cls is None:
        raise RemapError(f"config.json names an unknown architecture {config.architectures}", str(out_dir))
    model, info = cls.from_pretrained(out_dir, output_loading_info=True, local_files_only=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise RemapError(f"transformers' load report is not clean: {problems}", str(out_dir))
    return model.eval()


def hidden_states(model: Any, wave: Any) -> dict[str, Any]:
    """The default comparison for speech encoders: every layer's output, the final one, and any logits."""
    import torch

    with torch.no_grad():  # hidden states from the base model: a head model (CTC) has no last_hidden_state
        base = model.base_model(wave, output_hidden_states=True)
        head = model(wave) if model.base_model is not model else None
    # hidden_states[i] (i >= 1) is layer i's raw output; last_hidden_state adds any final layer norm.
    result = {f"layer{i + 1}": h for i, h in enumerate(base.hidden_states[1:])}
    result["final"] = base.last_hidden_state
    if head is not None and getattr(head, "logits", None) is not None:
        result["logits"] = head.logits
    return result


def converted(out_dir: Path, wave: Any) -> dict[str, Any]:
    """The converted model's layer outputs, named like the adapters' (see remap.verify.adapters)."""
    return hidden_states(load_model(out_dir), wave)


def _input(module: Any, source: Source, audio: Path | None, seed: int) -> Any:
    """The audio both models see: a WAV file, or one second of seeded noise at the adapter's rate."""
    import torch

    rate = int(getattr(module, "SAMPLE_RATE", 16000))
    channels = int(getattr(module, "CHANNELS", 1))
    if hasattr(module, "sample_format"):
        rate, channels = module.sample_format(source)
    if audio is not None:
        return load_audio(audio, rate, channels)
    noise = torch.randn(1, channels, rate, generator=torch.Generator().manual_seed(seed))
    return noise if channels > 1 or getattr(module, "KEEP_CHANNEL_DIM", False) else noise[:, 0]


def verify(ruleset: RuleSet, source_path: Path, out_dir: Path, audio: Path | None = None,
           tolerance: float = 1e-4, seed: int = 0, source_config: str | Path | None = None) -> Report:
    """Run the original and the converted model on the same audio; compare every output both give.

    An adapter may define ``converted(model, wave)`` (default: hidden states), ``SAMPLE_RATE`` and
    ``CHANNELS`` (default 16 kHz mono), or ``sample_format(source) -> (rate, channels)``. Integer
    outputs (codec codes) must be identical; float outputs within ``tolerance``.
    """
    module = adapter(ruleset)
    source = select_source(read_checkpoint(source_path), ruleset.source)
    if source_config is not None:
        source = replace(source, config={**source.config, **read_config_file(source_config)})
    wave = _input(module, source, audio, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # reference code uses deprecated torch APIs on purpose
        reference = module.reference(source, wave)
        model = load_model(out_dir)
        got = module.converted(model, wave) if hasattr(module, "converted") else hidden_states(model, wave)
    shared = [k for k in got if k in reference]
    if not shared:
        raise RemapError("the reference and the converted model share no outputs to compare", str(out_dir))
    for k in shared:
        if tuple(reference[k].shape) != tuple(got[k].shape):
            raise RemapError(f"'{k}' is {list(reference[k].shape)} in the original but {list(got[k].shape)} in the "
                             f"converted model; was this folder converted from {source_path.name}?", str(out_dir))
    diffs = {k: float((reference[k].double() - got[k].double()).abs().max()) if reference[k].numel() else 0.0
             for k in shared}
    exact = frozenset(k for k in shared if not reference[k].is_floating_point())
    return Report(diffs, tolerance, exact)
