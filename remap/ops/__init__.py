"""Tensor ops: every op is one class in one module of this package, found here by name.

An op holds its YAML schema, what it does to shape and dtype, how it runs on bytes (as a view of
the stored bytes where it can, else on elements in memory), its inverse, its reversibility (exact,
equivalent or none) and the example docs/rules.md shows. The planner, the executor, revert, lint,
explain and the docs read ops from here and never branch on an op's name.

    base        what an op is: TensorOp (an ``ops:`` entry), Structure (a rule's shape), Step and
                Combine (concrete ops a recipe runs), Geometry and Raw (what steps run on)
    recipe      Recipe: how one output tensor is made, and the shape and dtype it will have
    numbers     between raw elements and numbers, for the ops that compute
    <one module per op>   rename (and ties), split, concat, stack (and unstack), dedup, weight_norm,
                permute (and transpose), reshape, squeeze, rope, cast, ...

Adding an op is adding a module here (it registers itself with ``@register``), plus its tests and
its docs entry (docs/rules.md's op reference is generated from the registry).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    STRUCTURES,
    TENSOR_OPS,
    Combine,
    Doc,
    Field,
    Geometry,
    Raw,
    Reversibility,
    ShapeError,
    Single,
    Step,
    Structure,
    TensorOp,
)
from .recipe import Recipe, output_info

_INFRASTRUCTURE = frozenset({"base", "recipe", "numbers", "docs"})
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "STRUCTURES", "TENSOR_OPS", "Combine", "Doc", "Field", "Geometry", "Raw", "Recipe", "Reversibility",
    "ShapeError", "Single", "Step", "Structure", "TensorOp", "output_info",
]
