"""Rule files of the test rule pack (see pyproject.toml's `remap.rules` entry point)."""
