"""Rule files by name: the ones remap ships, and rule packs that other projects install.

Every command that takes RULES accepts a path or a name. A name is looked up
among:

- the bundled rule files (the repository's ``rules/`` folder, installed as the
  package ``remap._rules``);
- rule packs: any installed distribution that registers a package of ``*.yaml``
  rule files under the entry-point group ``remap.rules``::

      [project.entry-points."remap.rules"]
      mypack = "mypack.rules"        # a package (folder with __init__.py) holding *.yaml

A rule file is known by its ``name:`` field. ``PACK:NAME`` picks one pack's
file when two packs ship the same name; an unqualified name that two packs
ship is refused rather than guessed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .diagnostics import first_line
from .errors import RemapError, RuleError
from .rules.compiler import compile_file
from .rules.model import RuleSet

GROUP: Final = "remap.rules"
BUNDLED_PACKAGE: Final = "remap._rules"
BUNDLED: Final = "remap"
SUFFIXES: Final = (".yaml", ".yml")


@dataclass(frozen=True)
class RuleFile:
    """One rule file that can be named: which pack ships it, and what it converts."""

    name: str  # the file's `name:` (its stem when it does not compile)
    pack: str  # "remap" for the bundled files, else the entry point's name
    path: Path
    target: str = ""  # the transformers class
    description: str = ""
    error: str = ""  # why it does not compile, if it does not

    @property
    def qualified(self) -> str:
        return f"{self.pack}:{self.name}"


def _bundled_folder() -> Path | None:
    try:
        folder = importlib.resources.files(BUNDLED_PACKAGE)
    except ModuleNotFoundError:  # running from a checkout that was never installed
        checkout = Path(__file__).resolve().parent.parent / "rules"
        return checkout if checkout.is_dir() else None
    return Path(str(folder))


def _packs() -> list[tuple[str, Path]]:
    """(pack name, folder) for the bundled files and every installed rule pack."""
    found: list[tuple[str, Path]] = []
    bundled = _bundled_folder()
    if bundled is not None:
        found.append((BUNDLED, bundled))
    for entry in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
        try:
            folder = importlib.resources.files(entry.module)
        except Exception as exc:  # noqa: BLE001 - a broken pack must not break every command
            raise RemapError(f"rule pack '{entry.name}' ({entry.value}) cannot be loaded: "
                             f"{first_line(exc, with_type=True)}", f"entry point {GROUP}") from None
        found.append((entry.name, Path(str(folder))))
    return found


def _describe(pack: str, path: Path) -> RuleFile:
    try:
        ruleset = compile_file(path)
    except RuleError as exc:
        return RuleFile(path.stem, pack, path, error=str(exc))
    return RuleFile(ruleset.name, pack, path, ruleset.target.model_class, ruleset.description)


def available() -> list[RuleFile]:
    """Every named rule file, bundled first, then by pack and name."""
    files = []
    for pack, folder in _packs():
        found = [_describe(pack, p) for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()]
        files += sorted(found, key=lambda f: (f.name, str(f.path)))
    return files


def _by_stem(name: str, pack: str | None) -> Path | None:
    """The one file named NAME.yaml whose ``name:`` is NAME, when no other pack has a NAME.yaml: a lookup
    that compiles one rule file instead of all of them. Anything less clear falls back to the full scan."""
    found = [(p, folder / f"{name}{suffix}") for p, folder in _packs() for suffix in SUFFIXES
             if (pack is None or p == pack) and (folder / f"{name}{suffix}").is_file()]
    if len(found) != 1:
        return None
    entry = _describe(*found[0])
    return entry.path if entry.name == name and not entry.error else None


def looks_like_path(text: str) -> bool:
    return "/" in text or text.endswith(SUFFIXES)


def find(name: str) -> Path:
    """The rule file called ``name`` (or ``PACK:NAME``), or a path; one-line errors otherwise."""
    if looks_like_path(name):
        return Path(name)
    pack, sep, short = name.rpartition(":")
    quick = _by_stem(short, pack if sep else None)
    if quick is not None:
        return quick
    candidates = [f for f in available() if f.name == short and (not sep or f.pack == pack)]
    if len(candidates) == 1:
        return candidates[0].path
    if len(candidates) > 1:
        where = ", ".join(f"{f.qualified} ({f.path})" for f in candidates)
        raise RemapError(f"rule file name '{name}' is shipped by several packs: {where}; name one as PACK:NAME")
    if Path(name).is_file():
        return Path(name)
    known = ", ".join(sorted({f.name for f in available()})) or "none"
    raise RemapError(f"no rule file named '{name}' (known: {known}); pass a path to a .yaml file, or see "
                     "'remap list'")


def load(rules: RuleSet | str | Path) -> RuleSet:
    """A compiled rule set from a RuleSet, a path, or a name."""
    if isinstance(rules, RuleSet):
        return rules
    return compile_file(rules if isinstance(rules, Path) else find(rules))
