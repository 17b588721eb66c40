"""Compiling a rule file's ``target`` section: the model class, its config, and the files beside it.

- ``class``, ``config`` (each value an expression string, a literal, or ``{value: ...}``);
- ``preprocessor``: preprocessor_config.json, verbatim except ``{expr: ...}`` values;
- ``files``: more JSON files (generation_config.json, ...), with ``{expr: ...}`` at any depth;
- ``tokenizer``: a transformers tokenizer class and where its vocabulary comes from.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, Final

from ..errors import RuleError
from .expr import compile_expr
from .model import ConfigField, JsonValue, Namespace, ReverseSpec, TargetSpec, TokenizerSpec
from .schema import check_fields, string
from .yamlnode import Node

TARGET_FIELDS: Final = ("class", "config", "preprocessor", "files", "tokenizer")
TOKENIZER_FIELDS: Final = ("class", "when", "vocab", "tiktoken", "special_tokens", "added_tokens", "options")
FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.json\Z")
RESERVED: Final = frozenset({"config.json", "preprocessor_config.json", "model.safetensors.index.json",
                             "remap-provenance.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
                             "special_tokens_map.json", "added_tokens.json"})


class TargetCompiler:
    """Compiles ``target``; ``names`` are the names expressions may use."""

    def __init__(self, names: frozenset[str], namespaces: bool = False) -> None:
        self.names = names
        self.namespaces = namespaces  # {namespace: ...} values (argparse.Namespace) are allowed

    def target(self, node: Node) -> TargetSpec:
        check_fields(node, TARGET_FIELDS, "target")
        c = node.children
        model_class = string(c.get("class", node), "target.class")
        fields = tuple(self._config_field(name, child) for name, child in self._mapping(c.get("config"),
                                                                                         "target.config"))
        pre = c.get("preprocessor")
        preprocessor = None
        if pre is not None:
            preprocessor = tuple(self._preprocessor_field(name, child)
                                 for name, child in self._mapping(pre, "target.preprocessor"))
        files = tuple((self._file_name(name, child), self.json(child, f"file '{name}'"))
                      for name, child in self._mapping(c.get("files"), "target.files"))
        tokenizer = self._tokenizer(c["tokenizer"]) if "tokenizer" in c else None
        class_loc = c["class"].loc if "class" in c else node.loc
        return TargetSpec(model_class, fields, preprocessor, class_loc, files, tokenizer)

    def _mapping(self, node: Node | None, what: str) -> list[tuple[str, Node]]:
        if node is None:
            return []
        if not node.is_map:
            raise RuleError(f"{what} must be a mapping", node.loc)
        return list(node.children.items())

    def _config_field(self, name: str, node: Node) -> ConfigField:
        if isinstance(node.value, str):
            return ConfigField(name, node.loc, compile_expr(node.value, node.loc, self.names,
                                                            f"target config '{name}'"))
        if node.is_map and set(node.children) == {"value"}:
            return ConfigField(name, node.loc, None, node.value["value"])
        if node.is_map:
            raise RuleError(f"target config '{name}': use an expression string or {{value: ...}}", node.loc)
        return ConfigField(name, node.loc, None, node.value)

    def _preprocessor_field(self, name: str, node: Node) -> ConfigField:
        """Written verbatim, except ``{expr: EXPRESSION}`` values, computed like target.config."""
        if node.is_map and set(node.children) == {"expr"}:
            child = node.children["expr"]
            return ConfigField(name, node.loc, compile_expr(child.value, child.loc, self.names,
                                                            f"preprocessor '{name}'"))
        return ConfigField(name, node.loc, None, node.value)

    def json(self, node: Node, what: str) -> JsonValue:
        return JsonValue(self._json(node, what))

    def _json(self, node: Node, what: str) -> Any:
        if node.is_map and set(node.children) == {"expr"}:
            child = node.children["expr"]
            return compile_expr(child.value, child.loc, self.names, what)
        if node.is_map and set(node.children) == {"namespace"} and self.namespaces:
            return Namespace(self._json(node.children["namespace"], what))
        if node.is_map:
            return MappingProxyType({k: self._json(v, what) for k, v in node.children.items()})
        if node.is_seq:
            return tuple(self._json(item, what) for item in node.items)
        return node.value

    def _file_name(self, name: str, node: Node) -> str:
        if not FILE_NAME.match(name) or name in RESERVED:
            raise RuleError(f"target file name '{name}' must be a plain *.json name, not one remap writes "
                            f"itself ({', '.join(sorted(RESERVED))})", node.loc)
        return name

    def _tokenizer(self, node: Node) -> TokenizerSpec:
        check_fields(node, TOKENIZER_FIELDS, "target.tokenizer")
        c = node.children
        class_name = string(c.get("class", node), "target.tokenizer.class")
        if ("vocab" in c) == ("tiktoken" in c):
            raise RuleError("a tokenizer needs exactly one of 'vocab' (token -> id) or 'tiktoken' (a BPE file "
                            "an installed package ships)", node.loc)
        package = path = None
        if "tiktoken" in c:
            check_fields(c["tiktoken"], ("package", "path"), "tokenizer tiktoken")
            tik = c["tiktoken"].children
            if "package" not in tik or "path" not in tik:
                raise RuleError("tiktoken needs 'package' and 'path'", c["tiktoken"].loc)
            package = string(tik["package"], "tiktoken package")
            path = self.json(tik["path"], "tiktoken path")
        return TokenizerSpec(
            class_name, node.loc, self.json(c["vocab"], "tokenizer vocab") if "vocab" in c else None, package,
            path, self.json(c["special_tokens"], "special tokens") if "special_tokens" in c else None,
            self.json(c["options"], "tokenizer options") if "options" in c else JsonValue(MappingProxyType({})),
            self.json(c["added_tokens"], "added tokens") if "added_tokens" in c else None,
            self.json(c["when"], "tokenizer when") if "when" in c else None)


REVERSE_FIELDS: Final = ("layout", "format", "entries")
REVERSE_NAMES: Final = frozenset({"config", "tensors"})


def compile_reverse(node: Node, layouts: tuple[str, ...]) -> ReverseSpec:
    """The ``reverse`` section: the checkpoint entries ``remap revert`` writes without --like.

    Expressions see ``config`` (the transformers config.json) and ``tensors`` (its weights' shapes).
    """
    check_fields(node, REVERSE_FIELDS, "reverse")
    c = node.children
    layout = string(c["layout"], "reverse.layout") if "layout" in c else None
    if layout is not None and layout not in layouts:
        raise RuleError(f"reverse.layout '{layout}' is not one of the source layouts ({', '.join(layouts)})",
                        c["layout"].loc)
    fmt = string(c["format"], "reverse.format") if "format" in c else "torch"
    if fmt not in ("torch", "safetensors"):
        raise RuleError("reverse.format must be 'torch' or 'safetensors'", c["format"].loc)
    compiler = TargetCompiler(REVERSE_NAMES, namespaces=True)
    entries = tuple((path, compiler.json(child, f"reverse entry '{path}'"))
                    for path, child in compiler._mapping(c.get("entries"), "reverse.entries"))
    return ReverseSpec(node.loc, layout, fmt, entries)
