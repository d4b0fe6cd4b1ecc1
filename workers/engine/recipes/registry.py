"""The recipe registry: ``Recipe``, the ``@recipe`` decorator, ``RECIPES``, and the specs users
type. The implementations (``torch_recipes``, ``onnx_recipes``) register themselves here; the
package ``workers.engine.recipes`` imports them and re-exports this module's names (see its
docstring), so the registry itself imports no implementation and there is no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..loaders import LoadedModel


class RecipeSpecError(ValueError):
    """A recipe spec the user typed cannot be understood; str(err) is user-facing."""


@dataclass
class RecipeContext:
    """What a recipe may need beyond the model: where it runs and the data it may train on."""

    device: str = "cpu"
    seq_len: int | None = None
    overrides: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    train_data: Any = None  # evaluation.EvalData (calibration / training split) or None


@dataclass(frozen=True)
class Recipe:
    """``apply(loaded, params[, ctx]) -> LoadedModel`` builds the variant; it may return ``loaded``.

    ``formats`` / ``kinds`` / ``devices``: where it applies (None means everywhere); ``devices``
    holds "cpu" and/or "cuda". ``defaults`` are its parameters, overridable per request through
    ``options["recipe_params"][name]`` or the spec (``name:VALUE``); ``positional`` names the
    parameter a bare ``VALUE`` sets. ``needs_dataset(params)`` says whether it needs the audit's
    dataset; ``check(loaded, device, params)`` returns a reason it cannot run on this machine.
    ``same_flops``: the variant does the same multiply-adds as the model it came from (quantised
    kernels, compiled code), so its FLOPs are the original's.
    """

    name: str
    apply: Callable[..., "LoadedModel"]
    description: str = ""
    formats: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    defaults: dict = field(default_factory=dict)
    positional: str | None = None
    needs_dataset: Callable[[dict], bool] | None = None
    check: Callable[..., str | None] | None = None
    same_flops: bool = False
    takes_context: bool = False

    def not_applicable(self, loaded: "LoadedModel", device: str, params: dict | None = None,
                       has_dataset: bool = True) -> str | None:
        """Why this recipe cannot run on ``loaded`` on ``device``; None when it can."""
        if self.formats is not None and loaded.format not in self.formats:
            return f"recipe {self.name!r} applies to {', '.join(self.formats)} models, not {loaded.format}"
        if self.kinds is not None and loaded.kind not in self.kinds:
            return f"recipe {self.name!r} applies to {', '.join(self.kinds)} models, not {loaded.kind}"
        device_kind = "cuda" if device.startswith("cuda") else "cpu"
        if self.devices is not None and device_kind not in self.devices:
            return f"recipe {self.name!r} runs on {', '.join(self.devices)}, not {device_kind}"
        params = dict(self.defaults if params is None else params)
        if self.needs_dataset is not None and self.needs_dataset(params) and not has_dataset:
            return f"recipe {self.name!r} needs the audit's dataset (calibration / training samples); none was given"
        if self.check is not None:
            return self.check(loaded, device, params)
        return None

    def run(self, loaded: "LoadedModel", params: dict, ctx: RecipeContext) -> "LoadedModel":
        if self.takes_context:
            return self.apply(loaded, params, ctx)
        return self.apply(loaded, params)


RECIPES: dict[str, Recipe] = {}


def recipe(name: str, *, description: str = "", formats=None, kinds=None, devices=None, defaults=None,
           positional: str | None = None, needs_dataset=None, check=None, same_flops: bool = False):
    """Decorator registering ``fn(loaded, params[, ctx]) -> LoadedModel`` as recipe ``name``.

    ``needs_dataset``: True, or a function of the parameters (``distill`` always needs data;
    ``prune-structured`` only when it fine-tunes).
    """

    def decorate(fn):
        import inspect

        n_args = len(inspect.signature(fn).parameters)
        if needs_dataset is True:
            needs = lambda params: True  # noqa: E731
        else:
            needs = needs_dataset or None
        RECIPES[name] = Recipe(
            name=name,
            apply=fn,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            formats=tuple(formats) if formats else None,
            kinds=tuple(kinds) if kinds else None,
            devices=tuple(devices) if devices else None,
            defaults=dict(defaults or {}),
            positional=positional,
            needs_dataset=needs,
            check=check,
            same_flops=same_flops,
            takes_context=n_args >= 3,
        )
        return fn

    return decorate


# --- specs ---------------------------------------------------------------------------------


def _value(text: str):
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def _split_name(spec: str) -> tuple[str, str]:
    """Name and parameter text; a registered name may itself hold a colon (``sparse-2:4``)."""
    for known in sorted(RECIPES, key=len, reverse=True):
        if spec == known or spec.startswith(known + ":"):
            return known, spec[len(known) + 1:]
    name, _, rest = spec.partition(":")
    return name.strip(), rest


def parse_recipe_spec(spec: str) -> tuple[str, dict]:
    """``"prune-unstructured:0.5"`` -> ``("prune-unstructured", {"sparsity": 0.5})``.

    Raises RecipeSpecError for an unknown recipe, an unknown parameter, or a value the recipe
    refuses (e.g. a sparsity outside [0, 1)).
    """
    spec = spec.strip()
    if not spec:
        raise RecipeSpecError("empty recipe name")
    name, rest = _split_name(spec)
    rec = RECIPES.get(name)
    if rec is None:
        raise RecipeSpecError(f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    params: dict = {}
    for i, part in enumerate(p for p in rest.split(";") if p.strip()):
        if "=" in part:
            key, _, val = part.partition("=")
            key = key.strip()
        elif i == 0 and rec.positional:
            key, val = rec.positional, part
        else:
            raise RecipeSpecError(f"{spec!r}: give parameters as key=value (recipe {name!r} takes "
                                  f"{', '.join(rec.defaults) or 'no parameters'})")
        if key not in rec.defaults:
            raise RecipeSpecError(f"{spec!r}: recipe {name!r} has no parameter {key!r}; it takes "
                                  f"{', '.join(rec.defaults) or 'no parameters'}")
        params[key] = _value(val)
    _validate(name, {**rec.defaults, **params}, spec)
    return name, params


def _validate(name: str, params: dict, spec: str) -> None:
    def number(key, lo, hi, lo_open=False, hi_open=True):
        v = params.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise RecipeSpecError(f"{spec!r}: {key} must be a number, got {v!r}")
        if (v < lo or (lo_open and v == lo)) or (v > hi or (hi_open and v == hi)):
            raise RecipeSpecError(f"{spec!r}: {key} must be in {'(' if lo_open else '['}{lo}, {hi}"
                                  f"{')' if hi_open else ']'}, got {v}")

    if name == "prune-unstructured":
        number("sparsity", 0.0, 1.0)
    elif name == "prune-structured":
        number("ratio", 0.0, 1.0, lo_open=True)
        number("finetune_steps", 0, 100_000)
    elif name == "distill":
        number("steps", 1, 100_000, hi_open=False)
        number("layers_fraction", 0.0, 1.0, lo_open=True)


def spec_string(name: str, params: dict) -> str:
    """The canonical spec of a variant: ``name`` or ``name:VALUE`` for its positional parameter."""
    rec = RECIPES.get(name)
    if not params or rec is None:
        return name
    parts = []
    rest = dict(params)
    if rec.positional and rec.positional in rest:
        parts.append(f"{rest.pop(rec.positional)}")
    parts += [f"{k}={v}" for k, v in rest.items()]
    return f"{name}:{';'.join(parts)}"


def parse_recipe_list(text) -> list[tuple[str, dict]]:
    """Comma-separated specs (or a list of specs) -> ``[(name, params), ...]``, duplicates dropped."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[tuple[str, dict]] = []
    for item in items:
        if not str(item).strip():
            continue
        parsed = parse_recipe_spec(str(item))
        if parsed not in out:
            out.append(parsed)
    return out


def canonical_specs(values) -> list[str]:
    """Specs as people type them ("distill", "prune-unstructured: 0.5") -> the canonical
    strings the engine takes ("distill:100", "prune-unstructured:0.5"); RecipeSpecError with
    a message for the first bad one."""
    return [spec_string(name, params) for name, params in parse_recipe_list(values)]


def recipe_names() -> list[str]:
    return list(RECIPES)
