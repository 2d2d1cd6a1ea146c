"""One render for many values of a recipe's numeric fields (a sweep's recipe variants).

A full render costs milliseconds (MMEngine's ConfigDict copies and merges), too much for a 10,000-point sweep where
every point is a recipe variant of its own (`--grid optimizer.lr=...`). So the swept fields are rendered once as
*symbols*: numbers of the field's own type that refuse to be used -- compared, formatted, hashed, converted or
computed with -- and may only be carried into the config. A render (and reproduction guard) that completes with
them has carried each symbol to the config leaves it fills and decided nothing on its value, so every variant's
config is that config with the symbols replaced by the variant's values. Where anything uses a value (the LR
rule, `if warmup_iters:`, `batch_size * gpus`), the symbol refuses, `Escaped` is raised, and the caller renders
each variant in full, as before. Signatures are the same hash `render.signature` computes, from a JSON template.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# What a symbol keeps of its number type: being built, asked its type, and having attributes looked up.
_KEEP = {"__class__", "__new__", "__init__", "__getattribute__", "__setattr__", "__delattr__", "__init_subclass__",
         "__subclasshook__", "__doc__", "__dir__", "__getattr__"}
_TYPES = (float, int)  # bool cannot be subclassed, and a string has too many ways to be read


class Escaped(BaseException):
    """A symbol was used, not only carried: its value decides something, so each variant renders in full. (A
    BaseException, which `except Exception` does not swallow; `used` catches a bare `except:` as well.)"""


used = False  # set by any use of any symbol


def _refuse(self, *args, **kwargs):
    global used
    used = True
    raise Escaped


@functools.cache
def symbol_type(base: type) -> type:
    """A subclass of `base` (float, int) whose every operation raises Escaped; copies are the symbol itself."""
    names = {name for name in dir(base) if callable(getattr(base, name, None))} - _KEEP
    namespace: dict[str, Any] = dict.fromkeys(names, _refuse)
    namespace["__deepcopy__"] = lambda self, memo: self
    namespace["__copy__"] = lambda self: self
    return type(f"Symbolic{base.__name__.title()}", (base,), namespace)


def is_symbol(value: Any) -> bool:
    return type(value) in (symbol_type(float), symbol_type(int))


def field_value(recipe: BaseModel, key: str) -> Any:
    node: Any = recipe
    for part in key.split("."):
        node = getattr(node, part)
    return node


def eligible(recipe: BaseModel, key: str) -> bool:
    """A field of the recipe's own models (not of a free-form mapping) holding an int or a float."""
    node: Any = recipe
    for part in key.split("."):
        if not (isinstance(node, BaseModel) and part in type(node).model_fields):
            return False
        node = getattr(node, part)
    return type(node) in _TYPES


def with_fields(model: BaseModel, values: dict[str, Any]) -> BaseModel:
    """`model` with the fields at these dotted keys replaced, unvalidated (symbols are no valid input)."""
    for key, value in values.items():
        model = _replace(model, key.split("."), value)
    return model


def _replace(model: BaseModel, parts: list[str], value: Any) -> BaseModel:
    inner = value if len(parts) == 1 else _replace(getattr(model, parts[0]), parts[1:], value)
    return model.model_copy(update={parts[0]: inner})


def _find(node: Any, path: tuple = ()) -> dict[tuple, Any]:
    """path -> symbol, for every symbol in a config dict (any other place a symbol hides -- a key -- is Escaped)."""
    found: dict[tuple, Any] = {}
    if is_symbol(node):
        found[path] = node
    elif isinstance(node, dict):
        for key, value in node.items():
            if is_symbol(key):
                raise Escaped
            found.update(_find(value, (*path, key)))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found.update(_find(value, (*path, i)))
    return found


def _at(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def _contains_symbol(node: Any) -> bool:
    if is_symbol(node):
        return True
    if isinstance(node, dict):
        return any(_contains_symbol(k) or _contains_symbol(v) for k, v in node.items())
    if isinstance(node, (list, tuple)):
        return any(_contains_symbol(v) for v in node)
    return False


def _swap(node: Any, symbols: dict[int, str]) -> Any:
    """A copy of a config dict with each symbol replaced by its placeholder text."""
    if is_symbol(node):
        return symbols[id(node)]
    if isinstance(node, dict):
        return {k: _swap(v, symbols) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_swap(v, symbols) for v in node]
    return node


@dataclass(repr=False)  # (its recipe holds symbols, which refuse to be shown)
class Symbolic:
    """The base recipe rendered (and guarded, where the guard only carried the values too) with its swept fields
    as symbols. `fits(recipe)`: whether a validated variant is this one with other values."""

    keys: tuple[str, ...]  # the swept recipe fields (dotted)
    recipe: BaseModel  # the first variant, its swept fields symbols
    cfg: Any  # the rendered Config, symbols at the leaves they fill
    paths: dict[str, tuple]  # field -> the config paths its symbol fills
    signature_text: str  # render.signature's JSON payload, each symbol a placeholder
    placeholders: dict[str, str]  # field -> its placeholder in signature_text (JSON-quoted)
    deviations: list[dict] | None  # the guard's, when it ran on the symbols; None: guard each variant
    types: dict[str, type]
    flat_leaves: dict[str, Any]  # the config's leaves (dotted key -> value), symbols among them
    leaf_keys: dict[str, list[str]]  # field -> the leaves its symbol is
    resources: Any = None  # the job's resources (swept fields are no resources): one object for every variant

    def values(self, recipe: BaseModel) -> dict[str, Any] | None:
        """The variant's swept values when it is this recipe with other values of the same types; else None."""
        values = {key: field_value(recipe, key) for key in self.keys}
        if any(type(v) is not self.types[k] for k, v in values.items()):
            return None
        symbols = {key: field_value(self.recipe, key) for key in self.keys}
        return values if with_fields(recipe, symbols) == self.recipe else None  # validation changed nothing else

    def leaves(self, values: dict[str, Any]) -> dict[str, Any]:
        out = dict(self.flat_leaves)
        for key, value in values.items():
            for leaf in self.leaf_keys[key]:
                out[leaf] = value
        return out

    def signature(self, values: dict[str, Any], digest: Callable[[str], str]) -> str:
        text = self.signature_text
        for key, value in values.items():
            text = text.replace(self.placeholders[key], json.dumps(value))
        return digest(text)

    def config(self, values: dict[str, Any]):
        """The variant's own Config (a copy; the symbols replaced)."""
        cfg = copy.deepcopy(self.cfg)
        for key, value in values.items():
            for path in self.paths[key]:
                node = cfg
                for part in path[:-1]:
                    node = node[part]
                node[path[-1]] = value
        return cfg


def build(first: BaseModel, keys: tuple[str, ...], render: Callable, guard: Callable | None,
          payload: Callable[[dict], str], leaves: Callable[[dict], dict]) -> Symbolic:
    """Render `first` (a validated variant) with `keys` as symbols: `render(recipe) -> Config`, `guard(recipe, cfg)
    -> deviations` (None: not guarded here), `payload(dict) -> signature JSON`, `leaves(dict) -> {dotted: leaf}`.
    Raises Escaped where a value was used, or a field is not a plain number."""
    if not keys or not all(eligible(first, key) for key in keys) or any(k.startswith("resources.") for k in keys):
        raise Escaped  # (a resources field changes the job, not only the config)
    global used
    types = {key: type(field_value(first, key)) for key in keys}
    symbols = {key: symbol_type(types[key])(field_value(first, key)) for key in keys}
    recipe = with_fields(first, symbols)
    used = False
    try:
        cfg = render(recipe)
        flat = cfg.to_dict()
        deviations = None
        if guard is not None:
            guarded = copy.deepcopy(cfg)
            deviations = guard(recipe, guarded)
            if _contains_symbol(deviations):
                raise Escaped
            cfg, flat = guarded, guarded.to_dict()
    except (Escaped, Exception):  # (any error: the full render of each variant says what is wrong)
        raise Escaped from None
    if used:
        raise Escaped  # a use that something caught and went on from
    found = _find(flat)
    owner = {id(symbol): key for key, symbol in symbols.items()}
    paths: dict[str, list[tuple]] = {key: [] for key in keys}
    for path, symbol in found.items():
        if any(isinstance(_at(flat, path[:i]), tuple) for i in range(len(path))):
            raise Escaped  # (in a tuple, which cannot be set in place)
        paths[owner[id(symbol)]].append(path)
    flat_leaves = leaves(flat)
    leaf_keys = {key: [leaf for leaf, value in flat_leaves.items() if value is symbol]
                 for key, symbol in symbols.items()}
    if any(len(leaf_keys[key]) != len(paths[key]) for key in keys):
        raise Escaped  # (inside a list of numbers: a leaf of its own is replaced, not a part of one)
    placeholders = {key: f"\u0000swinctl-symbol-{i}\u0000" for i, key in enumerate(keys)}
    text = payload(_swap(flat, {id(symbols[k]): p for k, p in placeholders.items()}))
    return Symbolic(keys=keys, recipe=recipe, cfg=cfg, paths={k: tuple(v) for k, v in paths.items()},
                    signature_text=text, placeholders={k: json.dumps(p) for k, p in placeholders.items()},
                    deviations=deviations, types=types, flat_leaves=flat_leaves, leaf_keys=leaf_keys)
