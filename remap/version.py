"""remap's version: one place, read by the package, the CLI, the target cache and pyproject.toml."""

__version__ = "0.1.0"
