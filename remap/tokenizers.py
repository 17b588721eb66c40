"""Writing the tokenizer a rule file declares (``target.tokenizer``), with transformers' own classes.

Two kinds of vocabulary, neither taken on trust from Python code in a file:

- ``vocab``: a mapping token -> id computed by the rule file's expressions, usually from a
  dictionary stored in the checkpoint (fairseq's ``Dictionary`` symbols for a CTC head);
- ``tiktoken``: a BPE rank file that an installed package ships (openai-whisper's
  ``assets/*.tiktoken``), turned into a vocabulary and merges by transformers' TikTokenConverter.

``special_tokens`` are then added in order, so their ids follow the vocabulary's, and ``added_tokens``
after them (ordinary tokens, which decoding does not skip). The tokenizer is
saved with ``save_pretrained`` into the output folder. Imports transformers (only when a rule file
declares a tokenizer).
"""

from __future__ import annotations

import importlib.resources
import inspect
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from .diagnostics import first_line
from .errors import ConfigError
from .rules.model import JsonValue, TokenizerSpec


def wanted(spec: TokenizerSpec, env: Mapping[str, Any]) -> bool:
    """Whether the source has what the tokenizer needs (its ``when``; true without one)."""
    if spec.when is None:
        return True
    value = spec.when.value(env)
    if not isinstance(value, bool):
        raise ConfigError(f"tokenizer 'when' must be true or false, not {type(value).__name__}", str(spec.loc))
    return value


def write_tokenizer(spec: TokenizerSpec, env: Mapping[str, Any], folder: Path) -> None:
    """Build the tokenizer ``spec`` describes and save it into ``folder``."""
    import transformers

    cls = getattr(transformers, spec.class_name, None) if spec.class_name.isidentifier() else None
    if not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedTokenizerBase):
        raise ConfigError(f"tokenizer class '{spec.class_name}' is not a transformers tokenizer class",
                          str(spec.loc))
    options = spec.options.value(env)
    if not isinstance(options, dict):
        raise ConfigError("tokenizer options must be a mapping", str(spec.loc))
    with tempfile.TemporaryDirectory(prefix="remap-tokenizer-") as tmp:
        vocab, merges = _vocabulary(spec, env)
        tokenizer = _construct(cls, vocab, merges, options, Path(tmp), spec)
        special, added = _tokens(spec.special_tokens, env, spec), _tokens(spec.added_tokens, env, spec)
        if special:
            tokenizer.add_special_tokens({"additional_special_tokens": special}, replace_extra_special_tokens=False)
        if added:
            tokenizer.add_tokens(added)
        tokenizer.save_pretrained(folder)


def _tokens(value: JsonValue | None, env: Mapping[str, Any], spec: TokenizerSpec) -> list[str]:
    tokens = value.value(env) if value is not None else []
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ConfigError("tokenizer special_tokens and added_tokens must be lists of strings", str(spec.loc))
    return tokens


def _vocabulary(spec: TokenizerSpec, env: Mapping[str, Any]) -> tuple[dict[str, int], list[Any] | None]:
    if spec.vocab is not None:
        vocab = spec.vocab.value(env)
        if not isinstance(vocab, dict) or not all(isinstance(k, str) and type(v) is int for k, v in vocab.items()):
            raise ConfigError("tokenizer vocab must map token strings to integer ids", str(spec.loc))
        if len(set(vocab.values())) != len(vocab):
            raise ConfigError("tokenizer vocab gives two tokens the same id", str(spec.loc))
        return vocab, None
    from transformers.convert_slow_tokenizer import TikTokenConverter

    assert spec.tiktoken_package is not None and spec.tiktoken_path is not None
    path = _resource(spec.tiktoken_package, spec.tiktoken_path.value(env), spec)
    try:
        converter = TikTokenConverter(vocab_file=str(path))  # type: ignore[no-untyped-call]
        vocab, merges = converter.extract_vocab_merges_from_model(str(path))
    except Exception as exc:  # noqa: BLE001 - tiktoken's and the file's errors, whatever they are
        raise ConfigError(f"cannot read the tiktoken file {path.name}: {first_line(exc)}", str(spec.loc)) from None
    return vocab, merges


def _resource(package: str, relative: Any, spec: TokenizerSpec) -> Path:
    """A file an installed package ships, which must lie inside that package."""
    if not isinstance(relative, str) or PurePosixPath(relative).is_absolute() or ".." in PurePosixPath(relative).parts:
        raise ConfigError(f"tiktoken path must be a relative path inside package '{package}'", str(spec.loc))
    try:
        root = Path(str(importlib.resources.files(package))).resolve()
    except ModuleNotFoundError:
        raise ConfigError(f"the tokenizer's vocabulary comes with the package '{package}', which is not installed; "
                          f"install it (see the README)", str(spec.loc)) from None
    path = (root / relative).resolve()
    if root not in path.parents or not path.is_file():
        raise ConfigError(f"package '{package}' has no file '{relative}'", str(spec.loc))
    return path


def _construct(cls: type, vocab: dict[str, int], merges: list[Any] | None, options: dict[str, Any], tmp: Path,
               spec: TokenizerSpec) -> Any:
    """The class built from files (``vocab_file``/``merges_file``) or in memory (``vocab``/``merges``)."""
    params = inspect.signature(cls).parameters
    kwargs = dict(options)
    if "vocab_file" in params:
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        kwargs["vocab_file"] = str(tmp / "vocab.json")
        if merges is not None:
            (tmp / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
            kwargs["merges_file"] = str(tmp / "merges.txt")
    else:
        kwargs["vocab"] = vocab
        if merges is not None:
            kwargs["merges"] = merges
    try:
        return cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - each tokenizer class validates in its own way
        raise ConfigError(f"{cls.__name__} rejected the tokenizer options: {first_line(exc, with_type=True)}",
                          str(spec.loc)) from None
