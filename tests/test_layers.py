"""The package's imports point one way: CLI -> pipeline -> plan/compile -> rules, with IO beside planning.

Every ``import``/``from`` statement in ``remap/`` (module level, inside
functions and under ``TYPE_CHECKING`` alike) is read with ``ast`` and checked
against the parts each part may use. A new module must be placed in a part
here, so the architecture is a decision, not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "remap"

# Each part, and the parts it may import from (besides itself). Leaves first.
ALLOWED: dict[str, set[str]] = {
    "diagnostics": set(),
    "errors": {"diagnostics"},
    "tensors": set(),
    "version": set(),
    "ops": {"errors", "tensors"},
    "rules": {"errors", "tensors", "ops"},
    "io": {"errors", "diagnostics", "tensors", "ops", "rules"},
    "resolve": {"errors", "tensors", "rules"},
    "expand": {"errors", "diagnostics", "tensors", "ops", "rules"},
    "planner": {"errors", "diagnostics", "tensors", "rules", "resolve", "expand"},
    "target": {"errors", "diagnostics", "tensors", "rules", "version"},
    "catalog": {"errors", "diagnostics", "rules"},
    "pipeline": {"errors", "diagnostics", "tensors", "ops", "rules", "io", "planner", "expand", "target",
                 "catalog", "provenance", "tokenizers"},
    "authoring": {"errors", "diagnostics", "tensors", "ops", "rules", "io", "resolve", "expand", "planner",
                  "target"},
    "verify": {"errors", "diagnostics", "tensors", "rules", "io"},
    "report": {"errors", "diagnostics", "tensors", "ops", "rules", "io", "expand", "planner", "catalog"},
    "revert": {"errors", "diagnostics", "tensors", "ops", "rules", "io", "resolve", "expand", "planner",
               "catalog", "target"},
    "provenance": {"errors", "diagnostics", "tensors", "rules", "io", "planner", "expand", "version"},
    "compare": {"errors", "diagnostics", "tensors", "ops", "rules", "io", "resolve", "expand", "planner",
                "catalog", "provenance"},
    "tokenizers": {"errors", "diagnostics", "rules"},
    "cli": {"errors", "diagnostics", "tensors", "rules", "io", "planner", "target", "catalog", "pipeline",
            "authoring", "verify", "report", "version", "compare", "provenance", "revert"},
    "__init__": {"errors", "diagnostics", "tensors", "ops", "rules", "io", "resolve", "expand", "planner",
                 "target", "catalog", "pipeline", "authoring", "verify", "report", "version", "compare",
                 "revert", "provenance", "tokenizers"},
    "__main__": {"cli"},
}
# Inside the rule language, the same idea one level down.
RULES_ALLOWED: dict[str, set[str]] = {
    "yamlnode": set(), "patterns": set(), "expr": set(), "dispatch": {"patterns"}, "schema": {"yamlnode"},
    "model": {"dispatch", "expr", "patterns"},
    "compile_target": {"yamlnode", "schema", "expr", "model"},
    "reversibility": {"model", "patterns", "expr"},
    "compile_rule": {"yamlnode", "schema", "patterns", "expr", "model"},
    "compiler": {"yamlnode", "schema", "patterns", "expr", "model", "compile_rule", "compile_target"},
    "__init__": {"compiler", "model"},
}
# IO may use the rule objects (a layout says where the weights are), never the compiler.
IO_RULES_ALLOWED = {"model"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import of a remap module in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("remap"):
                names = [f"{target}.{alias.name}" for alias in node.names]
                found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("remap")]
    return found


def part(module: str) -> str:
    """The part a module belongs to: remap.io.readers.unpickle -> io."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def resolve_target(module: str) -> str:
    """``remap.io.execute.produce`` names a function; the module is what exists on disk."""
    pieces = module.split(".")
    while pieces:
        candidate = PACKAGE.parent.joinpath(*pieces)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(pieces)
        pieces.pop()
    return module


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_point_down_the_layers(path: Path) -> None:
    here = module_name(path)
    mine = part(here)
    assert mine in ALLOWED, f"{here} is in no part; add '{mine}' to ALLOWED in tests/test_layers.py"
    wrong = []
    for line, raw in imports(path):
        target = resolve_target(raw)
        theirs = part(target)
        if theirs == mine:
            continue
        if theirs not in ALLOWED[mine]:
            wrong.append(f"line {line}: {here} ({mine}) imports {target} ({theirs})")
        elif mine == "io" and theirs == "rules" and target.split(".")[2] not in IO_RULES_ALLOWED:
            wrong.append(f"line {line}: {here} imports {target}; IO may only use the rule objects (rules.model)")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", sorted((PACKAGE / "rules").glob("*.py")), ids=lambda p: p.name)
def test_rule_language_modules_import_in_order(path: Path) -> None:
    here = path.stem
    wrong = []
    for line, raw in imports(path):
        target = resolve_target(raw)
        if part(target) != "rules":
            continue
        used = target.split(".")[2] if target.count(".") >= 2 else "__init__"
        if used != here and used not in RULES_ALLOWED[here]:
            wrong.append(f"line {line}: rules.{here} imports rules.{used}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    """The parser must resolve relative imports, or the test above could pass on anything."""
    source = PACKAGE / "io" / "source.py"
    found = [target for _, target in imports(source)]
    assert "remap.errors.SourceError" in found
    assert part(resolve_target("remap.planner.plan")) == "planner"
    assert "planner" not in ALLOWED["io"]
