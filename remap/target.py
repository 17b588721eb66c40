"""The target model: its config and its keys and shapes, built on the meta device.

This is the only module that imports transformers. Building on ``meta``
allocates no memory for weights, so checking a 1 GB model costs nothing.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .planner import TensorInfo
from .rules import ConfigField


@dataclass(frozen=True)
class Target:
    name: str  # the model class name, e.g. HubertModel
    config_json: str  # what config.json will hold
    tensors: Mapping[str, TensorInfo]


def _model_class(name: str, where: str) -> Any:
    import transformers

    cls = getattr(transformers, name, None) if name.isidentifier() else None
    if cls is None or not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedModel):
        close = difflib.get_close_matches(name, [n for n in dir(transformers) if n.endswith("Model")], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"target.class '{name}' is not a transformers model class{hint}", where)
    return cls


def build_target(class_name: str, fields: tuple[ConfigField, ...], values: Mapping[str, Any],
                 where: str) -> Target:
    """Make the target config from ``values`` and list the model's keys and shapes."""
    import torch

    cls = _model_class(class_name, where)
    config_cls = cls.config_class
    known = set(config_cls().to_dict())
    for field in fields:
        if field.name not in known:
            close = difflib.get_close_matches(field.name, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"'{field.name}' is not a field of {config_cls.__name__}{hint}", str(field.loc))
    try:
        config = config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config_cls.__name__} rejected the mapped config: {exc}", where) from None
    config.architectures = [cls.__name__]
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with torch.device("meta"), contextlib.redirect_stdout(io.StringIO()):
            model = cls(config)
    except Exception as exc:  # noqa: BLE001 - any model constructor failure is a config problem
        raise ConfigError(f"cannot build {cls.__name__} from the mapped config: "
                          f"{type(exc).__name__}: {exc}", where) from None
    finally:
        logger.setLevel(level)
    tensors = {k: TensorInfo(tuple(v.shape), str(v.dtype).removeprefix("torch."))
               for k, v in model.state_dict().items()}
    config_json = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    return Target(cls.__name__, config_json, tensors)
