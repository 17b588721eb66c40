"""A source config given as a file (``--source-config``): the original project's own JSON or YAML.

Released Mimi and EnCodec weights carry no config, and some other configurations live beside the
checkpoint (moshi's JSON, encodec's model arguments). The file's mapping overlays the config the
rule file's layout found in the checkpoint (the file wins). It is read as data only: JSON, or YAML
with the safe loader and no aliases, and at most MAX_BYTES.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from ..diagnostics import first_line
from ..errors import SourceError

MAX_BYTES: Final = 4 * 1024 * 1024


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a JSON or YAML file; one-line SourceError otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SourceError(f"cannot read the source config: {exc.strerror}", str(path)) from None
    if len(data) > MAX_BYTES:
        raise SourceError(f"the source config is larger than {MAX_BYTES // (1024 * 1024)} MiB", str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError("the source config is not UTF-8 text", str(path)) from None
    value = _parse(text, path)
    if not isinstance(value, dict):
        raise SourceError("the source config must be a mapping (a JSON object)", str(path))
    return value


def _parse(text: str, path: Path) -> Any:
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise SourceError(f"the source config is not valid JSON: {first_line(exc)}", str(path)) from None
    import yaml

    if "&" in text and "*" in text:
        _refuse_aliases(text, path)
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise SourceError(f"the source config is not valid YAML: {first_line(exc)}", str(path)) from None


def _refuse_aliases(text: str, path: Path) -> None:
    """YAML aliases could expand a small file into a huge value; a config has no use for them."""
    import yaml

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise SourceError("the source config uses a YAML alias (*name); write the values out",
                                  str(path))
    except yaml.YAMLError as exc:
        raise SourceError(f"the source config is not valid YAML: {first_line(exc)}", str(path)) from None
