"""Compression recipes: named, parameterised transformations of a loaded model.

This package is imported by the web process to list recipe names and to validate what a user
typed, so importing it must not import torch, transformers or onnx: the implementations
(``torch_recipes``, ``onnx_recipes``) import them inside their functions.

A recipe is ``fn(loaded, params) -> LoadedModel`` or ``fn(loaded, params, ctx)`` (``ctx`` a
``RecipeContext``: device, sequence length, the dataset's training split, options), registered
with ``@recipe(name, formats=, kinds=, devices=, defaults=, positional=, needs_dataset=, check=,
same_flops=)``. ``not_applicable`` says why a recipe cannot run on a model (format, kind, device,
missing dataset, or its own ``check``); the run then records the variant as skipped with that
reason.

Specs as users type them: ``name`` or ``name:VALUE`` (the recipe's positional parameter, e.g.
``prune-unstructured:0.5``) or ``name:VALUE;key=value;key=value``. ``parse_recipe_list`` turns
``"baseline, int8-dynamic, prune-unstructured:0.5"`` into ``[(name, params), ...]``.
"""

from __future__ import annotations

from .registry import (  # noqa: F401 - the package's public names
    RECIPES,
    Recipe,
    RecipeContext,
    RecipeSpecError,
    canonical_specs,
    parse_recipe_list,
    parse_recipe_spec,
    recipe,
    recipe_names,
    spec_string,
)


# Registration: these modules import torch / onnx only inside their functions.
from . import torch_recipes, onnx_recipes  # noqa: E402,F401
