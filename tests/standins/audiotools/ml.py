"""Test-only stand-in for ``audiotools.ml`` (see tests/standins/README.md): ``BaseModel`` and ``Accelerator``."""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn

from torch import nn


class BaseModel(nn.Module):
    """``audiotools.ml.BaseModel``, reduced to what ``DAC`` needs: an ``nn.Module`` with the
    ``INTERN``/``EXTERN`` lists that ``dac/__init__.py`` extends at import time. The real class adds
    ``save``/``load`` (torch.package) and a ``device`` property, none of which the tests use."""

    INTERN: ClassVar[list[str]] = []
    EXTERN: ClassVar[list[str]] = []


class Accelerator:
    """Stand-in for ``audiotools.ml.Accelerator`` (multi-GPU training helper); never constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("audiotools.ml.Accelerator: this is the test-only stand-in in tests/standins")


def __getattr__(name: str) -> NoReturn:
    raise AttributeError(f"audiotools.ml.{name}: not provided by the test-only stand-in in tests/standins")
