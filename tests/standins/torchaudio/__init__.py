"""Test-only stand-in for torchaudio (see tests/standins/README.md).

``encodec.utils`` runs ``import torchaudio`` at module level, for ``convert_audio``
(``torchaudio.transforms.Resample``) and ``save_audio`` (``torchaudio.save``). The codec tests
never call those: they feed tensors to ``EncodecModel`` directly. Any attribute of this module
raises, so a test that reaches for real torchaudio fails loudly instead of getting a fake.
"""

from __future__ import annotations

from typing import NoReturn


def __getattr__(name: str) -> NoReturn:
    raise AttributeError(f"torchaudio.{name}: this is the test-only stand-in in tests/standins (torchaudio is not "
                         "installed; the codec tests use encodec's model code only)")
