"""A sweep's space: a grid (Cartesian product), paired lists (zip), a seeded random search, K training seeds per
point, and ties (values derived from other swept keys with + - * /), from the command line or a sweep file.

Values are read as YAML scalars and lists (numbers written 1e-4 included), distributions and ties through tiny
grammars (never `eval`).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import itertools
import json
import math
import operator
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swinctl import recipes, trust
from swinctl.recipes import RecipeError
from swinctl.yaml_io import YamlError, read_yaml_file


class SweepError(RecipeError):
    """A sweep space, file or option is wrong; the message says what and how to fix it (exit code 2)."""


# ---------------------------------------------------------------------------------------------- values


def format_value(value: Any) -> str:
    """A value as `--set` reads it back (floats keep a dot or exponent YAML recognises: 1.0e-05)."""
    if type(value) in (int, float, str, bool, type(None)):  # (a sweep formats each value thousands of times)
        return _format_scalar(type(value), repr(value), value)
    return _format(value)


@functools.lru_cache(maxsize=65536)
def _format_scalar(kind: type, text: str, value: Any) -> str:  # keyed by type and repr: 1, 1.0, True, -0.0 differ
    return _format(value)


def _format(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20)
    return text.removesuffix("\n...\n").strip()


def _flow_list(text: str, what: str) -> list:
    try:
        values = recipes.load_yaml(f"[{text}]")
    except yaml.YAMLError:
        raise SweepError(f"{what}: cannot read '{text}' as comma-separated values (YAML flow list)") from None
    if any(isinstance(v, dict) for v in values):
        raise SweepError(f"{what}: values are scalars or [lists], not mappings")
    return values


def _key_and_text(item: str, option: str) -> tuple[str, str]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SweepError(f"{option} '{item}' is not of the form dotted.key=... (e.g. {option} optimizer.lr=1e-4,2e-4)")
    return key, text.strip()


def parse_values(item: str, option: str = "--grid") -> tuple[str, list]:
    """`key=v1,v2,...` (values YAML: `[2,2,6,2],[2,2,18,2]` works) -> (key, [values])."""
    key, text = _key_and_text(item, option)
    values = _flow_list(text, f"{option} {key}") if text else []
    if not values:
        raise SweepError(f"{option} {key}: no values given (write {option} {key}=V1,V2,...)")
    return key, values


# ---------------------------------------------------------------------------------------------- distributions


@dataclass(frozen=True)
class Distribution:
    """`uniform(a,b)`, `loguniform(a,b)`, `randint(a,b)` (both ends included) or `choice(x,y,...)`."""

    kind: str
    args: tuple

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return self.args[rng.randrange(len(self.args))]
        low, high = self.args
        if self.kind == "randint":
            return rng.randint(low, high)
        if self.kind == "uniform":
            value = rng.uniform(low, high)
        else:
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        return float(f"{value:.4g}")  # 4 significant digits: readable names and tags, still reproducible

    def text(self) -> str:
        return f"{self.kind}({', '.join(format_value(a) for a in self.args)})"


_DISTRIBUTION = re.compile(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*", re.S)
GRAMMAR = "uniform(a,b), loguniform(a,b), randint(a,b) or choice(x,y,...)"


def parse_distribution(key: str, text: str) -> Distribution:
    where = f"--param {key}={text}"
    match = _DISTRIBUTION.fullmatch(str(text))
    if not match:
        raise SweepError(f"{where}: not a distribution; write {GRAMMAR}")
    kind, inner = match.group(1), match.group(2)
    if kind not in ("uniform", "loguniform", "randint", "choice"):
        raise SweepError(f"{where}: unknown distribution '{kind}'; write {GRAMMAR}")
    args = tuple(_flow_list(inner, where)) if inner.strip() else ()
    if kind == "choice":
        if not args:
            raise SweepError(f"{where}: choice() needs at least one value")
        return Distribution(kind, args)
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise SweepError(f"{where}: {kind} takes two numbers, low and high")
    low, high = args
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise SweepError(f"{where}: randint takes two integers")
    if low > high or (kind != "randint" and low == high):
        raise SweepError(f"{where}: low ({low}) must be below high ({high})")
    if kind == "loguniform" and low <= 0:
        raise SweepError(f"{where}: loguniform needs 0 < low < high")
    return Distribution(kind, (low, high))


# ---------------------------------------------------------------------------------------------- ties


_REF = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.\w+)*")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class Tie:
    """KEY = an arithmetic expression (+ - * /, parentheses, numbers) over other swept keys."""

    key: str
    expr: str
    refs: tuple[str, ...]
    tree: ast.Expression = field(compare=False, repr=False)

    def evaluate(self, values: dict[str, Any]) -> int | float:
        def walk(node: ast.AST) -> int | float:
            if isinstance(node, ast.Expression):
                return walk(node.body)
            if isinstance(node, ast.Constant):
                return node.value
            if isinstance(node, ast.Name):
                ref = self.refs[int(node.id[2:])]
                value = values[ref]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise SweepError(f"--tie {self.key}={self.expr}: {ref} is {value!r}, not a number")
                return value
            if isinstance(node, ast.UnaryOp):
                operand = walk(node.operand)
                return -operand if isinstance(node.op, ast.USub) else operand
            left, right = walk(node.left), walk(node.right)
            try:
                return _OPS[type(node.op)](left, right)
            except ZeroDivisionError:
                raise SweepError(f"--tie {self.key}={self.expr}: division by zero at {values}") from None

        result = walk(self.tree)
        return float(f"{result:.12g}") if isinstance(result, float) else result


def parse_tie(item: str) -> Tie:
    key, text = _key_and_text(item, "--tie")
    where = f"--tie {key}={text}"
    refs: list[str] = []

    def name(match: re.Match) -> str:
        refs.append(match.group(0))
        return f"_r{len(refs) - 1}"

    try:
        tree = ast.parse(_REF.sub(name, text), mode="eval")
    except SyntaxError:
        raise SweepError(f"{where}: not an arithmetic expression (swept keys, numbers, + - * /, parentheses)") from None
    for node in ast.walk(tree):
        allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div,
                   ast.USub, ast.UAdd)
        is_number = isinstance(node, ast.Constant) and type(node.value) in (int, float)
        if not (is_number or isinstance(node, allowed)):
            raise SweepError(f"{where}: only swept keys, numbers, + - * / and parentheses are allowed "
                             f"(found {type(node).__name__})")
    if not refs:
        raise SweepError(f"{where}: refers to no swept key; a constant belongs in --set {key}={text}")
    return Tie(key=key, expr=text, refs=tuple(refs), tree=tree)


# ---------------------------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Space:
    """What a sweep varies, over which recipe and base overrides."""

    recipe: str
    name: str | None = None
    sets: tuple[str, ...] = ()
    smoke: bool = False
    grid: dict[str, list] = field(default_factory=dict)
    zip: dict[str, list] = field(default_factory=dict)
    random_n: int | None = None
    random_seed: int | None = None
    params: dict[str, Distribution] = field(default_factory=dict)
    seeds: int | list[int] | None = None
    ties: dict[str, Tie] = field(default_factory=dict)
    max_parallel: int | None = None

    def swept_keys(self) -> list[str]:
        return [*self.grid, *self.zip, *self.params, *(["seed"] if self.seeds else []), *self.ties]

    def canonical(self, recipe_name: str) -> dict:
        """What defines the points (and so the default name): not where or how they run."""
        return {
            "recipe": recipe_name, "smoke": self.smoke, "set": list(self.sets), "grid": self.grid, "zip": self.zip,
            "random": None if self.random_n is None else {
                "n": self.random_n, "seed": self.random_seed, "params": {k: d.text() for k, d in self.params.items()}},
            "seeds": self.seeds, "tie": {k: t.expr for k, t in self.ties.items()},
        }

    def default_name(self, recipe_name: str) -> str:
        payload = json.dumps(self.canonical(recipe_name), sort_keys=True, default=str)
        return f"{recipe_name}-{hashlib.sha256(payload.encode()).hexdigest()[:6]}"

    def seed_values(self, recipe_seed: int | None) -> list[int]:
        if self.seeds is None:
            return []
        if isinstance(self.seeds, list):
            return list(self.seeds)
        base = recipe_seed or 0
        return [base + i for i in range(self.seeds)]

    def points(self, recipe_seed: int | None = None) -> list[dict[str, Any]]:
        """Every point as {key: value}, in a stable order (grid, then zip, random draws, seeds innermost)."""
        grid_rows = [dict(zip(self.grid, combo, strict=True)) for combo in itertools.product(*self.grid.values())]
        zip_rows = [dict(zip(self.zip, row, strict=True)) for row in zip(*self.zip.values(), strict=True)]
        rng = random.Random(self.random_seed)
        random_rows = [{key: dist.sample(rng) for key, dist in self.params.items()}
                       for _ in range(self.random_n or 0)]
        seed_rows = [{"seed": s} for s in self.seed_values(recipe_seed)]
        points = [{**g, **z, **r, **s} for g in grid_rows or [{}] for z in zip_rows or [{}]
                  for r in random_rows or [{}] for s in seed_rows or [{}]]
        order = _tie_order(self.ties)
        for point in points:
            for tie in order:
                point[tie.key] = tie.evaluate(point)
        return points


def _tie_order(ties: dict[str, Tie]) -> list[Tie]:
    """Ties in dependency order (a tie may use another tie); a cycle is an error."""
    order: list[Tie] = []
    state: dict[str, str] = {}

    def visit(key: str, chain: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            raise SweepError(f"conflicting ties: {' -> '.join(chain + [key])} is a cycle")
        state[key] = "visiting"
        for ref in ties[key].refs:
            if ref in ties:
                visit(ref, chain + [key])
        state[key] = "done"
        order.append(ties[key])

    for key in ties:
        visit(key, [])
    return order


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _RandomSection(_Strict):
    n: int = Field(gt=0)
    seed: int | None = None
    params: dict[str, str]


class SweepFile(_Strict):
    """A sweep written as YAML (`swinctl sweep sweeps/lr.yaml`)."""

    recipe: str
    name: str | None = None
    description: str = ""
    smoke: bool = False
    set: dict[str, Any] | list[str] = {}
    grid: dict[str, list[Any]] = {}
    zip: dict[str, list[Any]] = {}
    random: _RandomSection | None = None
    seeds: int | list[int] | None = None
    tie: dict[str, str] = {}
    max_parallel: int | None = Field(None, gt=0)


def is_sweep_file(ref: str) -> bool:
    """A YAML file with a top-level `recipe:` key is a sweep; anything else is a recipe."""
    path = Path(ref).expanduser()
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        data = read_yaml_file(path, "sweep")
    except YamlError as exc:  # a recipe file or a sweep file, it cannot be read: say why
        raise SweepError(str(exc).replace("sweep file", "sweep or recipe file")) from None
    return isinstance(data, dict) and "recipe" in data and "codebase" not in data


def _read_sweep_file(path: Path) -> SweepFile:
    try:
        data = read_yaml_file(path, "sweep")
    except YamlError as exc:
        raise SweepError(str(exc)) from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep file is a YAML mapping (recipe, grid, ...), found {type(data).__name__}")
    try:
        return SweepFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            valid = ", ".join(SweepFile.model_fields)
            raise SweepError(f"{path}: unknown key '{key}' (a sweep file has: {valid})") from None
        raise SweepError(f"{path}: key '{key}': {first['msg']} (got {first.get('input')!r})") from None


@dataclass
class _Given:
    """What a sweep file and the command line say, read but not yet checked as a whole."""

    recipe: str
    name: str | None
    smoke: bool
    random_n: int | None
    random_seed: int | None
    seeds: int | list[int] | None
    max_parallel: int | None
    file_sets: list[str] = field(default_factory=list)
    # grid, zip, param (distribution texts), tie (expression texts): key -> what was given
    sections: dict[str, dict[str, Any]] = field(default_factory=lambda: {s: {} for s in ("grid", "zip", "param",
                                                                                          "tie")})
    origin: dict[str, dict[str, str]] = field(default_factory=dict)  # section -> key -> the file that gave it

    def add(self, section: str, key: str, value: Any, option: str) -> None:
        if key in self.sections[section]:
            where = self.origin.get(section, {}).get(key) or option
            raise SweepError(f"{option} {key}: given twice (also in {where}); give each key once")
        self.sections[section][key] = value


def _read_given(ref: str, *, random_n: int | None, random_seed: int | None, seeds: int | None, smoke: bool,
                name: str | None, max_parallel: int | None) -> _Given:
    """The sweep file's sections (when `ref` is one) under the command line's options, which win where both give
    a value; a random section and --random together are an error."""
    if not is_sweep_file(ref):
        return _Given(ref, name, smoke, random_n, random_seed, seeds, max_parallel)
    path = Path(ref).expanduser()
    spec = _read_sweep_file(path)
    recipe = spec.recipe
    if recipe.endswith((".yaml", ".yml")) and not Path(recipe).is_absolute() and (path.parent / recipe).is_file():
        recipe = str(path.parent / recipe)
    given = _Given(recipe, name or spec.name, smoke or spec.smoke, random_n, random_seed,
                   spec.seeds if spec.seeds is not None and seeds is None else seeds,
                   max_parallel or spec.max_parallel)
    given.file_sets = ([f"{k}={format_value(v)}" for k, v in spec.set.items()] if isinstance(spec.set, dict)
                       else list(spec.set))
    given.sections["grid"].update((key, list(values)) for key, values in spec.grid.items())
    given.sections["zip"].update((key, list(values)) for key, values in spec.zip.items())
    if spec.random is not None:
        if random_n is not None:
            raise SweepError(f"{path} has a random section; drop --random or the section")
        given.random_n = spec.random.n
        given.random_seed = spec.random.seed if random_seed is None else random_seed
        given.sections["param"].update(spec.random.params)
    given.sections["tie"].update(spec.tie)
    given.origin = {s: {k: str(path) for k in keys} for s, keys in given.sections.items()}
    return given


def _add_options(given: _Given, grid: list[str], zip_: list[str], params: list[str], ties: list[str]) -> None:
    for item in grid:
        given.add("grid", *parse_values(item, "--grid"), "--grid")
    for item in zip_:
        given.add("zip", *parse_values(item, "--zip"), "--zip")
    for item in params:
        given.add("param", *_key_and_text(item, "--param"), "--param")
    for item in ties:
        tie = parse_tie(item)
        given.add("tie", tie.key, tie.expr, "--tie")


def _check_lists(grid: dict[str, list], zips: dict[str, list]) -> None:
    for key, values in [*grid.items(), *zips.items()]:
        if not values:
            raise SweepError(f"{key}: empty list of values; a swept key needs at least one value")
    if len({len(v) for v in zips.values()}) > 1:
        lengths = ", ".join(f"{k} has {len(v)}" for k, v in zips.items())
        raise SweepError(f"zip lists must have the same length ({lengths})")


def _check_random(distributions: dict[str, Distribution], random_n: int | None, random_seed: int | None) -> None:
    if distributions and random_n is None:
        raise SweepError("--param needs --random N (how many points to draw)")
    if random_seed is not None and random_n is None:
        raise SweepError("--seed S seeds the random search and needs --random N; to repeat points with training seeds "
                         "use --seeds K, to fix the training seed --set seed=S")
    if random_n is None:
        return
    if random_n <= 0:
        raise SweepError(f"--random {random_n}: draw at least one point")
    if not distributions:
        raise SweepError("--random needs at least one --param KEY=DIST, "
                         "e.g. --param optimizer.lr=loguniform(1e-5,1e-3)")
    if random_seed is None:
        raise SweepError("a random search needs --seed S (random: seed: in a file) so the same points are drawn "
                         "again on the next invocation")


def _check_seeds(seeds: int | list[int] | None) -> None:
    if isinstance(seeds, int) and seeds <= 0:
        raise SweepError(f"--seeds {seeds}: repeat every point at least once")
    if isinstance(seeds, list) and (not seeds or len(set(seeds)) != len(seeds)):
        raise SweepError(f"seeds {seeds}: give distinct seeds")


def _owners(grid: dict, zips: dict, distributions: dict, seeds, ties: dict[str, Tie]) -> dict[str, str]:
    """Each swept key -> the option that sweeps it; a key swept (or tied) by two is an error."""
    owners: dict[str, str] = {}
    for section, keys in (("--grid", grid), ("--zip", zips), ("--param", distributions),
                          ("--seeds", ["seed"] if seeds else []), ("--tie", ties)):
        for key in keys:
            if key in owners and section == "--tie":
                raise SweepError(f"conflicting ties: {key} is swept by {owners[key]} and tied by --tie "
                                 f"{key}={ties[key].expr}; give it one source")
            if key in owners:
                raise SweepError(f"{key} is swept twice ({owners[key]} and {section}); give it one source")
            owners[key] = section
    return owners


def _check_sources(owners: dict[str, str], sets: list[str], ties: dict[str, Tie]) -> None:
    """No key both set and swept; every tie reads swept keys, without a cycle; something is swept."""
    for text in sets:
        key = text.partition("=")[0].strip()
        if key in owners:
            raise SweepError(f"{key} is both --set and swept ({owners[key]}); drop one")
    for tie in ties.values():
        for ref in tie.refs:
            if ref not in owners:
                known = ", ".join(owners) or "none"
                raise SweepError(f"--tie {tie.key}={tie.expr}: '{ref}' is not a swept key (swept: {known})")
    _tie_order(ties)
    if not owners or set(owners.values()) == {"--tie"}:
        raise SweepError("nothing to sweep: give --grid, --zip, --random with --param, or --seeds "
                         "(or grid/zip/random/seeds sections in a sweep file)")


def _check_options(name: str | None, max_parallel: int | None) -> None:
    if name is not None and not trust.SAFE_NAME.fullmatch(name):
        raise SweepError(f"sweep name '{name}': {trust.SAFE_NAME_RULE}")
    if max_parallel is not None and max_parallel <= 0:
        raise SweepError(f"--max-parallel {max_parallel}: allow at least one point at a time")


def load_space(
    ref: str,
    *,
    grid: list[str] = (),
    zip_: list[str] = (),
    random_n: int | None = None,
    random_seed: int | None = None,
    params: list[str] = (),
    seeds: int | None = None,
    ties: list[str] = (),
    sets: list[str] = (),
    smoke: bool = False,
    name: str | None = None,
    max_parallel: int | None = None,
) -> Space:
    """The space from a sweep file and/or command-line options, checked for everything that needs no recipe."""
    given = _read_given(ref, random_n=random_n, random_seed=random_seed, seeds=seeds, smoke=smoke, name=name,
                        max_parallel=max_parallel)
    _add_options(given, grid, zip_, params, ties)
    sections = given.sections
    _check_lists(sections["grid"], sections["zip"])
    distributions = {k: parse_distribution(k, v) for k, v in sections["param"].items()}
    _check_random(distributions, given.random_n, given.random_seed)
    _check_seeds(given.seeds)
    tie_objects = {k: parse_tie(f"{k}={v}") for k, v in sections["tie"].items()}
    owners = _owners(sections["grid"], sections["zip"], distributions, given.seeds, tie_objects)
    all_sets = [*given.file_sets, *sets]
    _check_sources(owners, all_sets, tie_objects)
    _check_options(given.name, given.max_parallel)
    return Space(recipe=given.recipe, name=given.name, sets=tuple(all_sets), smoke=given.smoke, grid=sections["grid"],
                 zip=sections["zip"], random_n=given.random_n, random_seed=given.random_seed, params=distributions,
                 seeds=given.seeds, ties=tie_objects, max_parallel=given.max_parallel)


def point_overrides(values: dict[str, Any]) -> list[str]:
    return [f"{key}={format_value(value)}" for key, value in values.items()]


def point_tags(values: dict[str, Any]) -> list[str]:
    """Short `key=value` W&B tags: the last part of each key, unless two keys share it."""
    tails = [key.rsplit(".", 1)[-1] for key in values]
    tags = []
    for key, tail in zip(values, tails, strict=True):
        label = tail if tails.count(tail) == 1 else key
        tags.append(f"{label}={format_value(values[key])}"[:64])
    return tags
