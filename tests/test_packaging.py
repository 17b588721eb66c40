"""What the wheel ships: every subpackage, the bundled rule files and py.typed.

The full check (build the wheel, install it in a fresh venv, convert the bundled
example by name from outside the repository) is scripts/check_wheel.sh, run by CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def setuptools_config() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]  # type: ignore[no-any-return]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(setuptools_config()["packages"])  # type: ignore[call-overload]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "remap").rglob("__init__.py")}
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
    assert "remap._rules" in listed


def test_bundled_rule_files_and_py_typed_are_package_data() -> None:
    config = setuptools_config()
    assert config["package-dir"]["remap._rules"] == "rules"  # type: ignore[index]
    assert config["package-data"] == {"remap": ["py.typed"], "remap._rules": ["*.yaml"]}
    assert (ROOT / "remap" / "py.typed").is_file() and (ROOT / "rules" / "__init__.py").is_file()
