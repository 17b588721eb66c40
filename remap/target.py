"""The target model: its config and its keys and shapes, built on the meta device.

This is the only module that imports transformers. Building on ``meta``
allocates no memory for weights. Importing transformers costs ~3.5 s, so the
result (config.json text, keys, shapes) is cached on disk, keyed by the model
class, the exact mapped config and the installed transformers version; a
later conversion of the same architecture does not import transformers.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .diagnostics import first_line
from .errors import ConfigError
from .rules.model import ConfigField
from .tensors import TensorInfo
from .version import __version__


@dataclass(frozen=True)
class Target:
    name: str  # the model class name, e.g. HubertModel
    config_json: str  # what config.json will hold
    tensors: Mapping[str, TensorInfo]
    # keys from_pretrained fills from another key when the file lacks them (tied weights): {key: source key}
    tied: Mapping[str, str] = field(default_factory=dict)


def cache_dir() -> Path | None:
    """``$REMAP_CACHE``, else ``$XDG_CACHE_HOME/remap`` or ``~/.cache/remap``; None if ``REMAP_CACHE=off``."""
    configured = os.environ.get("REMAP_CACHE")
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "remap"


def _cache_file(class_name: str, values: Mapping[str, Any]) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        transformers_version = version("transformers")
    except PackageNotFoundError:
        return None
    try:
        key = json.dumps({"class": class_name, "config": values, "transformers": transformers_version,
                          "remap": __version__, "schema": 2}, sort_keys=True)
    except TypeError:
        return None  # a config value JSON cannot hold: don't cache
    return folder / "targets" / f"{hashlib.sha256(key.encode()).hexdigest()}.json"


def _load_cached(path: Path | None) -> Target | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        tensors = {k: TensorInfo(tuple(shape), dtype) for k, (shape, dtype) in data["tensors"].items()}
        tied = {str(k): str(v) for k, v in data["tied"].items()}
        return Target(data["name"], data["config_json"], tensors, tied)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable cache entries are rebuilt


def _store(path: Path | None, target: Target) -> None:
    if path is None:
        return
    data = {"name": target.name, "config_json": target.config_json,
            "tensors": {k: [list(v.shape), v.dtype] for k, v in target.tensors.items()}, "tied": dict(target.tied)}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


def build_target(class_name: str, fields: tuple[ConfigField, ...], values: Mapping[str, Any],
                 where: str) -> Target:
    """The target's config.json and its keys and shapes (from the cache when possible)."""
    cache = _cache_file(class_name, values)
    cached = _load_cached(cache)
    if cached is not None:
        return cached
    target = _build(class_name, fields, values, where)
    _store(cache, target)
    return target


def _model_class(name: str, where: str) -> Any:
    import transformers

    cls = getattr(transformers, name, None) if name.isidentifier() else None
    if cls is None or not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedModel):
        close = difflib.get_close_matches(name, [n for n in dir(transformers) if n.endswith("Model")], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"target.class '{name}' is not a transformers model class{hint}", where)
    return cls


def _build(class_name: str, fields: tuple[ConfigField, ...], values: Mapping[str, Any], where: str) -> Target:
    import torch

    cls = _model_class(class_name, where)
    config_cls = cls.config_class
    known = set(config_cls().to_dict())
    for spec in fields:
        if spec.name not in known:
            close = difflib.get_close_matches(spec.name, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"'{spec.name}' is not a field of {config_cls.__name__}{hint}", str(spec.loc))
    try:
        config = config_cls(**values)
    except Exception as exc:  # noqa: BLE001 - transformers raises its own validation error types
        raise ConfigError(f"{config_cls.__name__} rejected the mapped config: {first_line(exc)}", where) from None
    config.architectures = [cls.__name__]
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with torch.device("meta"), contextlib.redirect_stdout(io.StringIO()):
            model = cls(config)
    except Exception as exc:  # noqa: BLE001 - any model constructor failure is a config problem
        raise ConfigError(f"cannot build {cls.__name__} from the mapped config: "
                          f"{first_line(exc, with_type=True)}", where) from None
    finally:
        logger.setLevel(level)
    tensors = {k: TensorInfo(tuple(v.shape), str(v.dtype).removeprefix("torch."))
               for k, v in model.state_dict().items()}
    config_json = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    return Target(cls.__name__, config_json, tensors, {str(k): str(v) for k, v in dict(tied).items()})


TARGET_SIZE_FLOOR: Final = 1 << 17


def check_target_size(values: Mapping[str, Any], sources: Iterable[TensorInfo], where: str) -> None:
    """Refuse a mapped config whose numbers the checkpoint's tensors cannot justify, before building it.

    A config from a stranger's checkpoint could ask for 10**9 layers or a width of 4e8: building that
    model, even on the meta device, takes minutes or gigabytes. No integer in a real model's config
    exceeds twice its largest tensor dimension (or a floor for sample rates and similar counts), so a
    larger one is an inconsistent config, refused in one line.
    """
    largest = max((n for info in sources for n in info.shape), default=0)
    bound = max(TARGET_SIZE_FLOOR, 2 * largest)
    for name, value in values.items():
        for number in _integers(value, 0):
            if abs(number) > bound:
                raise ConfigError(f"target config '{name}' is {number}, more than the checkpoint's tensors justify "
                                  f"(largest dimension {largest}); the checkpoint's config does not describe its "
                                  "weights", where)


def _integers(value: Any, depth: int) -> Iterator[int]:
    if depth > 8:
        return
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, (list, tuple)):
        if len(value) > TARGET_SIZE_FLOOR:
            yield len(value)
        for item in value[:TARGET_SIZE_FLOOR]:
            yield from _integers(item, depth + 1)
    elif isinstance(value, Mapping):
        for item in list(value.values())[:TARGET_SIZE_FLOOR]:
            yield from _integers(item, depth + 1)
