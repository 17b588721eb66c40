"""Error types. Every error remap raises on purpose is a `RemapError`.

Each carries a location (``file:line`` of a rule, or a file name and key) so the
CLI can print it as one line: ``error: LOCATION: MESSAGE``. Like glom's errors,
they also inherit the matching built-in exception, so callers that catch
``ValueError`` or ``OSError`` keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .diagnostics import Diagnostic


@dataclass(frozen=True)
class Loc:
    """A place in a rule file (1-based line)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class RemapError(Exception):
    """Base class: a message that is safe to show a user in one line."""

    def __init__(self, message: str, where: str | Loc | None = None) -> None:
        self.message = message
        self.where = str(where) if where is not None else None
        self.loc = where if isinstance(where, Loc) else None
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class RuleError(RemapError, ValueError):
    """A rule file is malformed (YAML syntax, schema, pattern or expression)."""


class SourceError(RemapError, ValueError):
    """A checkpoint cannot be read, or does not have the layout a rule file expects."""


class ConfigError(RemapError, ValueError):
    """The source config cannot be mapped to the target config."""


class PlanError(RemapError, ValueError):
    """The plan has problems (unmapped, missing, duplicate, shape). Carries all of them."""

    def __init__(self, problems: Sequence[Diagnostic]) -> None:
        self.problems = tuple(problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"the conversion has {len(problems)} {noun}:\n" + "\n".join(map(str, problems)))


class OutputError(RemapError, OSError):
    """The output folder cannot be written."""


class FetchError(RemapError, OSError):
    """A default checkpoint cannot be fetched from the hub."""
