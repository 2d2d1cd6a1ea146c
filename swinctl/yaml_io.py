"""YAML as swinctl reads it from recipes, sweep files and `--set` values: safe, strict and bounded.

PyYAML's SafeLoader builds no Python objects, but it accepts duplicate keys (the last silently wins) and aliases
that share one list many times over (a few hundred bytes that expand to billions of values once pydantic or mmengine
copy them). This loader refuses both, caps the file size, and reads numbers and times as researchers write them.
Only yaml is imported here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from swinctl.errors import UserError

MAX_FILE_BYTES = 1 << 20  # a recipe or sweep file is a few KiB; a megabyte is not a recipe
MAX_EXPANDED_VALUES = 200_000  # values once aliases are expanded; the largest recipe has a few hundred


class YamlError(UserError):
    """A YAML text or file swinctl will not read; the message is one line that says why."""


class YamlLoader(yaml.SafeLoader):
    """Safe YAML as researchers write it: `2e-4` is a float (YAML 1.1 wants `2.0e-4` and reads a string) and
    `12:00:00` stays a string (YAML 1.1 reads base-60 numbers: 43200, a very different time limit). Duplicate keys
    are an error and aliases may not expand beyond MAX_EXPANDED_VALUES values."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    break
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first at line {first.line + 1}); keep one",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_VALUES:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand to more than {MAX_EXPANDED_VALUES:,} values (an alias bomb?); "
                "write the values out", node.start_mark)
        return node


_IN_PROGRESS = -1


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values `node` stands for with every alias expanded; linear in the node graph (memoised)."""
    known = memo.get(id(node))
    if known == _IN_PROGRESS:  # SafeLoader would build a list that contains itself: no config is that
        raise yaml.composer.ComposerError(None, None, "a recursive alias (a value that contains itself)",
                                          node.start_mark)
    if known is not None:
        return known
    memo[id(node)] = _IN_PROGRESS
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(  # checked before the float pattern, which also matches plain integers
    _INT, re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"))
YamlLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                       r"|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse `text`; raises yaml.YAMLError (callers add where the text came from)."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader


def read_yaml_file(path: Path, what: str = "recipe") -> Any:
    """A YAML file's data; every way it can be unreadable is one YamlError naming the file."""
    try:
        if path.is_dir():
            raise YamlError(f"{path}: is a directory, not a {what} file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise YamlError(f"{path}: {size:,} bytes is too large for a {what} file (at most {MAX_FILE_BYTES:,})")
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlError(f"{path}: cannot read the {what} file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                        f"save the {what} as UTF-8") from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise YamlError(f"{path}: not valid YAML: {_one_line(exc)}") from None


def _one_line(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())
