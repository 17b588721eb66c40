"""pytest plugin: every inline example of every rule file is a test item.

Registered through the ``pytest11`` entry point, so ``pytest rules/`` collects
``*.yaml`` files whose first key is ``remap:``. Item ids read
``distilhubert.yaml::<rule pattern>[<example key>]``; a failure prints the
same text as ``remap test``. Other YAML files are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..diagnostics import Diagnostic
from ..errors import RuleError
from ..rules.compiler import compile_file
from ..rules.model import Example, RuleSet
from .examples import run_example

_RULE_FILE = re.compile(r"^remap:\s*\d", re.MULTILINE)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    try:
        head = file_path.read_text(errors="replace")[:4096]
    except OSError:
        return None
    if not _RULE_FILE.search(head):
        return None
    return RuleFile.from_parent(parent, path=file_path)


class ExampleFailed(Exception):
    def __init__(self, failure: Diagnostic) -> None:
        super().__init__(str(failure))
        self.failure = failure


class RuleFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            ruleset = compile_file(self.path)
        except RuleError as exc:
            raise self.CollectError(str(exc)) from None
        seen: set[str] = set()
        for example in ruleset.examples:
            label = example.rule.label if example.rule is not None else "examples"
            name = f"{label}[{example.key}]"
            n = 2
            while name in seen:
                name, n = f"{label}[{example.key}#{n}]", n + 1
            seen.add(name)
            yield ExampleItem.from_parent(self, name=name, ruleset=ruleset, example=example)


class ExampleItem(pytest.Item):
    def __init__(self, *, ruleset: RuleSet, example: Example, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ruleset = ruleset
        self.example = example

    def runtest(self) -> None:
        failure = run_example(self.ruleset, self.example)
        if failure is not None:
            raise ExampleFailed(failure)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ExampleFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)  # type: ignore[return-value]

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.example.loc.line - 1, f"{self.path.name}::{self.name}"
