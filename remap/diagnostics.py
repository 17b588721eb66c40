"""One diagnostic type for everything remap reports: plan problems, lint findings, failed examples.

A `Diagnostic` has a location (a rule file's ``file:line``, a checkpoint's
name, or ``SOURCE``), a severity, the key it is about (if any) and a one-line
message. The CLI prints it as text or JSON; nothing else formats it.

`escape` is the one place that makes text from files safe to print: every
control character (newlines, ANSI/OSC escapes, bidi overrides) becomes a
visible escape, so one line stays one line.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Final, Literal

Severity = Literal["error", "warning", "note"]
SEVERITIES: Final = ("error", "warning", "note")
_UNSAFE: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@dataclass(frozen=True)
class Diagnostic:
    """Something remap found, with where it is and how bad it is."""

    file: str  # a rule file, a checkpoint's name, or a label such as SOURCE
    message: str
    severity: Severity = "error"
    key: str = ""  # the tensor key it is about, if any
    line: int = 0  # 1-based line in ``file``; 0 when it is not about a line

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        if self.severity == "error":
            return f"{self.where}: {self.message}"
        return f"{self.where}: {self.severity}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"where": self.where, "file": self.file, "line": self.line or None, "severity": self.severity,
                "key": self.key or None, "message": self.message}

    def by_key(self) -> tuple[str, str, str]:
        """Sort order for plan problems: by key, then place."""
        return self.key, self.where, self.message

    def by_line(self) -> tuple[str, int, int, str]:
        """Sort order for lint findings: by file and line, errors and warnings before notes."""
        return self.file, self.line, SEVERITIES.index(self.severity), self.message


def first_line(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if not first:
        return type(exc).__name__
    return f"{type(exc).__name__}: {first}" if with_type else first


def escape(text: str) -> str:
    """``text`` with every control, format or separator character shown as an escape (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == " " or unicodedata.category(ch) not in _UNSAFE:
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)
