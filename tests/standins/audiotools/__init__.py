"""Test-only stand-in for descript-audiotools (see tests/standins/README.md).

dac imports, at module level: ``audiotools.ml.BaseModel`` (the base class of ``DAC``, whose
``INTERN``/``EXTERN`` lists ``dac/__init__.py`` extends for torch.package export),
``audiotools.ml.Accelerator`` (``dac.utils``), ``AudioSignal`` and ``STFTParams`` (type hints and
calls inside the losses, the discriminator and ``CodecMixin.compress``, none of which the tests
run). ``DAC``'s own layers, ``encode``, ``decode`` and ``quantizer`` need only ``BaseModel`` to be
an ``nn.Module``. The real ``BaseModel.save``/``load`` (torch.package archives, or
``{"state_dict", "metadata": {"kwargs"}}`` files) are not needed: the tests write that file
layout themselves (tests/codec_fixtures.py).
"""

from __future__ import annotations

from typing import Any, NoReturn

from . import ml


class _Unavailable:
    """A name dac imports but the tests never call: constructing it raises."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"audiotools.{type(self).__name__}: this is the test-only stand-in in tests/standins "
                           "(descript-audiotools is not installed; the codec tests use dac's model code only)")


class AudioSignal(_Unavailable):
    """Stand-in for ``audiotools.AudioSignal`` (audio files, resampling, loudness)."""


class STFTParams(_Unavailable):
    """Stand-in for ``audiotools.STFTParams`` (used by dac's losses and discriminator)."""


def __getattr__(name: str) -> NoReturn:
    raise AttributeError(f"audiotools.{name}: not provided by the test-only stand-in in tests/standins")


__all__ = ["AudioSignal", "STFTParams", "ml"]
