"""Test-only stand-in for argbind (see tests/standins/README.md).

``dac.utils`` decorates its weight downloader with ``@argbind.bind(group=..., positional=True,
without_prefix=True)`` at import time; argbind binds function arguments to command-line flags
for dac's scripts. The model code never uses it, so ``bind`` returns the function unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def bind(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """``@argbind.bind(...)``: a no-op decorator (no command-line binding in tests)."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]  # type: ignore[no-any-return]
    return lambda fn: fn
