"""Sweeps: a space of overrides on one recipe -> one run per point, submitted as job arrays, deduplicated, resumable.

A sweep space is a grid (Cartesian product), paired lists (zip), a seeded random search, K training seeds per point,
and ties (values derived from other swept keys with + - * /). Every point becomes an ordinary run (`runs.prepare`'s
spec, `runs.materialize`'s run dir and ledger row, `jobs.CodebaseJob` as the job) with the stable signature of its
resolved config (`render.signature`), so a point that already ran -- in this sweep or any other -- is shared, not
trained again.

Submission is crash safe: under a per-runs-root lock the sweep records its points, then a submission row naming the
SLURM job (`swinctl:sweep:NAME:TOKEN`), then the run rows, then calls sbatch once per group of points that share
resources (one job array, `--max-parallel` as its `%` limit), then records the job ids. An invocation killed anywhere
in between leaves a submission row without a job id; the next invocation (holding the lock, so nobody else is mid-
submission) asks SLURM for that job name and either adopts the array it finds or cancels the runs it never submitted,
so no point is lost or submitted twice. Locally, one runner job (submitit's LocalExecutor) starts the points with at
most `--max-parallel` at a time.

Values are read as YAML scalars and lists (numbers written 1e-4 included), distributions and ties through tiny
grammars (never `eval`).
"""

from __future__ import annotations

import ast
import copy
import fcntl
import hashlib
import itertools
import json
import math
import operator
import os
import random
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swinctl import recipes, trust
from swinctl.recipes import RecipeError
from swinctl.yaml_io import YamlError, read_yaml_file

SWEEPS_DIR = "sweeps"  # RUNS_ROOT/sweeps/<name>/submitit holds a sweep's array logs
# Tests: SIGKILL this process right before sbatch (points recorded, nothing submitted) or right after it returns
# (job submitted, its ids not recorded): the two windows crash recovery must close.
KILL_BEFORE_SBATCH = "SWINCTL_TEST_KILL_BEFORE_SBATCH"
KILL_AFTER_SBATCH = "SWINCTL_TEST_KILL_AFTER_SBATCH"
_TEMPLATE_ID = "__swinctl_sweep_point__"
_TAGS_MARK = "__swinctl_point_tags__"


class SweepError(RecipeError):
    """A sweep space, file or option is wrong; the message says what and how to fix it (exit code 2)."""


# ---------------------------------------------------------------------------------------------- values


def format_value(value: Any) -> str:
    """A value as `--set` reads it back (floats keep a dot or exponent YAML recognises: 1.0e-05)."""
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
    sections: dict[str, dict[str, Any]] = {"grid": {}, "zip": {}, "param": {}, "tie": {}}
    file_sets: list[str] = []
    recipe = ref
    if is_sweep_file(ref):
        path = Path(ref).expanduser()
        spec = _read_sweep_file(path)
        recipe = spec.recipe
        if recipe.endswith((".yaml", ".yml")) and not Path(recipe).is_absolute() and (path.parent / recipe).is_file():
            recipe = str(path.parent / recipe)
        name = name or spec.name
        smoke = smoke or spec.smoke
        file_sets = ([f"{k}={format_value(v)}" for k, v in spec.set.items()] if isinstance(spec.set, dict)
                     else list(spec.set))
        for key, values in spec.grid.items():
            sections["grid"][key] = list(values)
        for key, values in spec.zip.items():
            sections["zip"][key] = list(values)
        if spec.random is not None:
            if random_n is not None:
                raise SweepError(f"{path} has a random section; drop --random or the section")
            random_n, random_seed = spec.random.n, spec.random.seed if random_seed is None else random_seed
            sections["param"].update(spec.random.params)
        if spec.seeds is not None and seeds is None:
            seeds = spec.seeds
        sections["tie"].update(spec.tie)
        max_parallel = max_parallel or spec.max_parallel
        origin = {s: {k: str(path) for k in sections[s]} for s in sections}
    else:
        origin = {s: {} for s in sections}

    def add(section: str, key: str, value: Any, option: str) -> None:
        if key in sections[section]:
            where = origin[section].get(key) or option
            raise SweepError(f"{option} {key}: given twice (also in {where}); give each key once")
        sections[section][key] = value

    for item in grid:
        add("grid", *parse_values(item, "--grid"), "--grid")
    for item in zip_:
        add("zip", *parse_values(item, "--zip"), "--zip")
    for item in params:
        add("param", *_key_and_text(item, "--param"), "--param")
    for item in ties:
        tie = parse_tie(item)
        add("tie", tie.key, tie.expr, "--tie")

    for key, values in [*sections["grid"].items(), *sections["zip"].items()]:
        if not values:
            raise SweepError(f"{key}: empty list of values; a swept key needs at least one value")
    zips = sections["zip"]
    if len({len(v) for v in zips.values()}) > 1:
        lengths = ", ".join(f"{k} has {len(v)}" for k, v in zips.items())
        raise SweepError(f"zip lists must have the same length ({lengths})")
    distributions = {k: parse_distribution(k, v) for k, v in sections["param"].items()}
    if distributions and random_n is None:
        raise SweepError("--param needs --random N (how many points to draw)")
    if random_seed is not None and random_n is None:
        raise SweepError("--seed S seeds the random search and needs --random N; to repeat points with training seeds "
                         "use --seeds K, to fix the training seed --set seed=S")
    if random_n is not None:
        if random_n <= 0:
            raise SweepError(f"--random {random_n}: draw at least one point")
        if not distributions:
            raise SweepError("--random needs at least one --param KEY=DIST, "
                             "e.g. --param optimizer.lr=loguniform(1e-5,1e-3)")
        if random_seed is None:
            raise SweepError("a random search needs --seed S (random: seed: in a file) so the same points are drawn "
                             "again on the next invocation")
    if isinstance(seeds, int) and seeds <= 0:
        raise SweepError(f"--seeds {seeds}: repeat every point at least once")
    if isinstance(seeds, list) and (not seeds or len(set(seeds)) != len(seeds)):
        raise SweepError(f"seeds {seeds}: give distinct seeds")
    tie_objects = {k: parse_tie(f"{k}={v}") for k, v in sections["tie"].items()}

    owners: dict[str, str] = {}
    for section, keys in (("--grid", sections["grid"]), ("--zip", zips), ("--param", distributions),
                          ("--seeds", ["seed"] if seeds else []), ("--tie", tie_objects)):
        for key in keys:
            if key in owners and section == "--tie":
                raise SweepError(f"conflicting ties: {key} is swept by {owners[key]} and tied by --tie "
                                 f"{key}={tie_objects[key].expr}; give it one source")
            if key in owners:
                raise SweepError(f"{key} is swept twice ({owners[key]} and {section}); give it one source")
            owners[key] = section
    all_sets = [*file_sets, *sets]
    for text in all_sets:
        key = text.partition("=")[0].strip()
        if key in owners:
            raise SweepError(f"{key} is both --set and swept ({owners[key]}); drop one")
    for tie in tie_objects.values():
        for ref in tie.refs:
            if ref not in owners:
                known = ", ".join(owners) or "none"
                raise SweepError(f"--tie {tie.key}={tie.expr}: '{ref}' is not a swept key (swept: {known})")
    _tie_order(tie_objects)
    if not owners or set(owners.values()) == {"--tie"}:
        raise SweepError("nothing to sweep: give --grid, --zip, --random with --param, or --seeds "
                         "(or grid/zip/random/seeds sections in a sweep file)")
    if name is not None and not trust.SAFE_NAME.fullmatch(name):
        raise SweepError(f"sweep name '{name}': {trust.SAFE_NAME_RULE}")
    if max_parallel is not None and max_parallel <= 0:
        raise SweepError(f"--max-parallel {max_parallel}: allow at least one point at a time")
    return Space(recipe=recipe, name=name, sets=tuple(all_sets), smoke=smoke, grid=sections["grid"], zip=zips,
                 random_n=random_n, random_seed=random_seed, params=distributions, seeds=seeds, ties=tie_objects,
                 max_parallel=max_parallel)


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


# ---------------------------------------------------------------------------------------------- sweep tables


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sweeps (
        name TEXT PRIMARY KEY, recipe TEXT NOT NULL, spec_json TEXT NOT NULL, created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS sweep_points (
        sweep TEXT NOT NULL, point_index INTEGER NOT NULL, overrides_json TEXT NOT NULL, signature TEXT NOT NULL,
        run_id TEXT, PRIMARY KEY (sweep, point_index))""",
    "CREATE INDEX IF NOT EXISTS sweep_points_run ON sweep_points (run_id)",
    # One row per sbatch (or local runner) a sweep makes, written before it: the crash-recovery record.
    """CREATE TABLE IF NOT EXISTS sweep_submissions (
        token TEXT PRIMARY KEY, sweep TEXT NOT NULL, executor TEXT NOT NULL, job_name TEXT NOT NULL,
        run_ids_json TEXT NOT NULL, created_at REAL NOT NULL, job_id TEXT, state TEXT NOT NULL)""",
)


def ensure_tables(ledger) -> None:
    with ledger.transaction() as db:
        for statement in _SCHEMA:
            db.execute(statement)


@dataclass(frozen=True)
class SweepInfo:
    name: str
    recipe: str
    spec: dict
    created_at: float


def get_sweep(ledger, name: str) -> SweepInfo | None:
    ensure_tables(ledger)
    with ledger.transaction() as db:
        row = db.execute("SELECT * FROM sweeps WHERE name = ?", (name,)).fetchone()
    return None if row is None else SweepInfo(row["name"], row["recipe"], json.loads(row["spec_json"]),
                                               row["created_at"])


def sweep_dir(root: Path, name: str) -> Path:
    return Path(root) / SWEEPS_DIR / name


@contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    """One sweep at a time plans and submits on a runs root (the kernel drops the lock of a killed process)."""
    path = Path(root) / SWEEPS_DIR / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- reconciling


def _slurm_array_id(job_name: str, since: float) -> str | None:
    """The job SLURM holds under `job_name` (queued: squeue; ended: sacct), as its base/array job id."""
    found: set[str] = set()
    queued = subprocess.run(["squeue", "--noheader", "--name", job_name, "--format", "%F"], capture_output=True,
                            text=True)
    found.update(line.strip() for line in queued.stdout.split() if line.strip().isdigit())
    if not found:
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - 120))
        ended = subprocess.run(["sacct", "--noheader", "--parsable2", "-X", "--name", job_name, "-S", start,
                                "--format", "JobID"], capture_output=True, text=True)
        for line in ended.stdout.split():
            match = re.match(r"(\d+)", line)
            if match:
                found.add(match.group(1))
    if len(found) > 1:
        raise SweepError(f"SLURM holds {len(found)} jobs named {job_name} ({', '.join(sorted(found))}); "
                         "cancel the extra ones with scancel and run the sweep again")
    return found.pop() if found else None


def _task_ids(array_id: str, n: int) -> list[str]:
    return [array_id] if n == 1 else [f"{array_id}_{i}" for i in range(n)]


def _cancel_unsubmitted(ledger, run_ids: list[str], why: str) -> None:
    for run_id in run_ids:
        try:
            record = ledger.get(run_id)
        except KeyError:
            continue  # killed before its row was written: nothing to undo
        if record.state == "PENDING" and record.job_id is None:
            ledger.update(run_id, event="state", state="CANCELLED", finished_at=time.time(), error=why)


def _pid_alive(pid: int) -> bool:
    from swinctl import status

    return status._pid_alive(pid)


def reconcile(ledger, root: Path) -> list[str]:
    """Settle every submission an earlier invocation left half-done. Call with the root lock held."""
    ensure_tables(ledger)
    with ledger.transaction() as db:
        rows = [dict(r) for r in db.execute(
            "SELECT * FROM sweep_submissions WHERE state = 'submitting' OR (executor = 'local' AND state = 'running')"
        ).fetchall()]
    notes = []
    for row in rows:
        run_ids = json.loads(row["run_ids_json"])
        if row["executor"] == "slurm":
            array_id = _slurm_array_id(row["job_name"], row["created_at"])
            if array_id is None:
                _cancel_unsubmitted(ledger, run_ids, "never submitted: swinctl was interrupted before sbatch")
                _set_submission(ledger, row["token"], state="lost")
                notes.append(f"{row['sweep']}: submission {row['token']} never reached SLURM; its points will be "
                             "submitted again")
                continue
            folder = sweep_dir(root, row["sweep"]) / "submitit"
            tasks = _task_ids(array_id, len(run_ids))
            if not all((folder / f"{task}_submitted.pkl").is_file() for task in tasks):
                # Killed inside submitit between sbatch and writing the tasks' inputs: those tasks cannot run.
                subprocess.run(["scancel", array_id], capture_output=True)
                _cancel_unsubmitted(ledger, run_ids, f"job {array_id} lost its inputs (swinctl was killed during "
                                    "sbatch); cancelled it")
                _set_submission(ledger, row["token"], state="lost", job_id=array_id)
                notes.append(f"{row['sweep']}: job {array_id} was submitted without its inputs; cancelled, its points "
                             "will be submitted again")
                continue
            _record_job_ids(ledger, dict(zip(run_ids, tasks, strict=True)), "reconciled")
            _set_submission(ledger, row["token"], state="submitted", job_id=array_id)
            notes.append(f"{row['sweep']}: adopted SLURM job {array_id} ({len(run_ids)} points) submitted by an "
                         "interrupted invocation")
        else:
            _settle_local(ledger, row)
    return notes


def recover(root: Path) -> list[str]:
    """`reconcile` under the runs root's lock (waits for a sweep that is submitting right now): for `status`."""
    from swinctl.ledger import Ledger

    with _root_lock(root):
        return reconcile(Ledger(root), root)


def _settle_local(ledger, row) -> None:
    """A local runner that is gone leaves its unstarted points PENDING: cancel them so they are submitted again."""
    pid = int(row["job_id"]) if row["job_id"] else None
    if pid is not None and _pid_alive(pid):
        return
    if pid is None and time.time() - row["created_at"] < 30:
        return  # a runner being started right now records its pid within seconds
    _cancel_unsubmitted(ledger, json.loads(row["run_ids_json"]), "not started: the local sweep runner ended first")
    _set_submission(ledger, row["token"], state="ended")


def reconcile_local(ledger, name: str) -> None:
    """`_settle_local` for one sweep's runners (no lock needed: it only cancels what no runner will start)."""
    with ledger.transaction() as db:
        rows = db.execute("SELECT * FROM sweep_submissions WHERE sweep = ? AND executor = 'local' "
                          "AND state IN ('submitting', 'running')", (name,)).fetchall()
    for row in rows:
        _settle_local(ledger, dict(row))


def _set_submission(ledger, token: str, **changes) -> None:
    with ledger.transaction() as db:
        db.execute(f"UPDATE sweep_submissions SET {', '.join(f'{k} = ?' for k in changes)} WHERE token = ?",
                   [*changes.values(), token])


def _record_job_ids(ledger, job_ids: dict[str, str], event: str) -> None:
    for run_id, job_id in job_ids.items():  # a job that already started has written this very id itself
        ledger.update(run_id, event=event, job_id=job_id)


# ---------------------------------------------------------------------------------------------- planning


@dataclass
class PointPlan:
    index: int
    values: dict[str, Any]
    prepared: Any  # runs.PreparedRun: a new run for this point, materialized only if it is submitted
    current: Any = None  # ledger.RunRecord already serving this signature, if any
    action: str = "submit"  # submit | skip
    note: str = "new"

    @property
    def signature(self) -> str:
        return self.prepared.signature

    @property
    def overrides(self) -> list[str]:
        return point_overrides(self.values)


@dataclass
class Plan:
    name: str
    space: Space
    recipe: Any  # the base recipe (smoke and --set applied)
    root: Path
    executor: str
    max_parallel: int | None
    points: list[PointPlan]
    renders: int = 0
    existing_sweep: SweepInfo | None = None

    @property
    def to_submit(self) -> list[PointPlan]:
        return [p for p in self.points if p.action == "submit"]

    def groups(self) -> list[list[PointPlan]]:
        """Points to submit, grouped by the resources they ask for (one job array each)."""
        groups: dict[str, list[PointPlan]] = {}
        for point in self.to_submit:
            groups.setdefault(_resources_key(point.prepared.spec.resources), []).append(point)
        return list(groups.values())

    def parallelism(self, group_size: int) -> int:
        if self.max_parallel:
            return min(self.max_parallel, group_size)
        return 1 if self.executor == "local" else group_size


def _resources_key(resources) -> str:
    return json.dumps(asdict(resources), sort_keys=True, default=str)


def _placeholder(index: int) -> str:
    return f"__swinctl_sweep_value_{index}__"


class _Variant:
    """Points that share their recipe-side overrides: one recipe, rendered once, points applied on copies.

    The variant's config is rendered once with placeholders for the run's name, folder and tags and for every swept
    config key; each point's config text is that text with the placeholders replaced by the point's values (as
    Python literals), and its signature is `render.signature` of the rendered config with the point's overrides
    applied -- the same config `run --set ...` would write, without formatting 100 configs.
    """

    def __init__(self, space: Space, name: str, recipe_items: list[str], config_keys: list[str], *, executor: str,
                 wandb: str, root: Path, scale_lr: bool = True):
        from swinctl import guard, render, runs

        overrides = [*space.sets, *recipe_items]
        # The checks `runs.prepare` makes, once per variant (rendering twice would double the sweep's start-up).
        runs.check_wandb_mode(wandb)
        recipe, config_items = runs.resolve_recipe(space.recipe, overrides, space.smoke)
        if not space.smoke:
            runs.check_data(recipe)
        self.recipe, self.name, self.smoke, self.root = recipe, name, space.smoke, root
        self.space_recipe = space.recipe
        self.resources = runs.resources_of(recipe)
        self.executor = runs.resolve_executor(executor)
        self.sets = tuple(space.sets)
        self.template_dir = root / _TEMPLATE_ID
        ctx = render.RunContext(run_id=_TEMPLATE_ID, run_dir=self.template_dir, group=name,
                                tags=(("smoke",) if space.smoke else ()) + (_TAGS_MARK,), wandb=wandb)
        self.config = render.render(recipe, ctx, config_items)
        runs.check_checkpoints(runs.checkpoint_refs(self.config))
        # the points vs the published setting (swinctl/guard): renders the LR scaling rule into the template
        self.guard = dict(smoke=space.smoke, scale_lr=scale_lr, published=guard.published_of(space.recipe, recipe))
        self.config_items = list(config_items)
        self.deviations = guard.check(space.recipe, recipe, self.config, self.resources, **self.guard,
                                      config_overrides=self.config_items)
        self.config_keys = config_keys
        marked = copy.deepcopy(self.config)
        if config_keys:
            render.apply_config_overrides(marked, [(k, _placeholder(i)) for i, k in enumerate(config_keys)])
        self.text = render.to_text(marked)
        self.tags_in_recipe = {*recipe.tracking.tags, "smoke"}

    def _text(self, text: str, config_values: list[tuple[str, Any]], run_id: str, run_dir: Path,
              tags: list[str]) -> str:
        for key, value in config_values:
            mark = repr(_placeholder(self.config_keys.index(key)))
            if mark not in text:
                raise LookupError(mark)
            text = text.replace(mark, repr(value))
        text = text.replace(repr(_TEMPLATE_ID), repr(run_id)).replace(repr(str(self.template_dir)), repr(str(run_dir)))
        return text.replace(repr(_TAGS_MARK), ", ".join(repr(t) for t in tags if t not in self.tags_in_recipe))

    def point(self, run_id: str, values: dict[str, Any], config_values: list[tuple[str, Any]]):
        from swinctl import guard, render, runs

        cfg, deviations = self.config, self.deviations
        if config_values:
            cfg = copy.deepcopy(self.config)
            render.apply_config_overrides(cfg, config_values)
            deviations = guard.check(self.space_recipe, self.recipe, cfg, self.resources, **self.guard,
                                     config_overrides=[*self.config_items, *config_values])
        run_dir = self.root / run_id
        tags = point_tags(values)
        try:
            text = self._text(self.text, config_values, run_id, run_dir, tags)
        except LookupError:  # a value the formatter did not write as a plain literal: format this config fully
            text = self._text(render.to_text(cfg), [], run_id, run_dir, tags)
        return runs.PreparedRun(recipe=self.recipe, run_id=run_id, smoke=self.smoke,
                                overrides=(*self.sets, *point_overrides(values)), config_text=text,
                                signature=render.signature(cfg, self.resources.world_size),
                                spec=self.spec(run_id), sweep=self.name, deviations=deviations)

    def spec(self, run_id: str):
        from swinctl import runs

        return runs.job_spec(self.recipe, run_id, self.root, self.resources, self.executor)


def plan(space: Space, *, executor: str = "auto", wandb: str = "auto", root: Path | None = None,
         retry_failed: bool = False, force: bool = False, split_arrays: bool = False, ledger=None,
         scale_lr: bool = True) -> Plan:
    """Render and check every point; with a ledger, also decide which to submit. Writes nothing."""
    from swinctl import runs

    root = runs.runs_root(root)
    base, _ = runs.resolve_recipe(space.recipe, list(space.sets), space.smoke)
    name = space.name or space.default_name(base.name)
    if not trust.SAFE_NAME.fullmatch(name):
        raise SweepError(f"sweep name '{name}': {trust.SAFE_NAME_RULE}")
    values_list = space.points(base.seed)
    run_ids: set[str] = set()

    def new_run_id() -> str:  # the ids `run` gives (the report parses them), distinct within the sweep
        while (run_id := runs.new_run_id(base, space.smoke)) in run_ids:
            pass
        run_ids.add(run_id)
        return run_id

    # Sort each point's overrides into recipe fields (a recipe variant, rendered once) and config keys.
    sides: dict[str, str | None] = {}  # swept key -> its config key, or None for a recipe field (same every point)
    for key, value in values_list[0].items():
        on_recipe, on_config = recipes.split_overrides(base, [f"{key}={format_value(value)}"])
        sides[key] = None if on_recipe else on_config[0][0]
    split: list[tuple[tuple[str, ...], list[tuple[str, Any]]]] = []
    for values in values_list:
        recipe_texts = tuple(f"{k}={format_value(v)}" for k, v in values.items() if sides[k] is None)
        split.append((recipe_texts, [(sides[k], v) for k, v in values.items() if sides[k] is not None]))
    config_keys = list(dict.fromkeys(k for _, config_values in split for k, _ in config_values))

    variants: dict[tuple[str, ...], _Variant] = {}
    points: list[PointPlan] = []
    for index, (values, (recipe_texts, config_values)) in enumerate(zip(values_list, split, strict=True)):
        if recipe_texts not in variants:
            variants[recipe_texts] = _Variant(space, name, list(recipe_texts), config_keys, executor=executor,
                                              wandb=wandb, root=root, scale_lr=scale_lr)
        prepared = variants[recipe_texts].point(new_run_id(), values, config_values)
        points.append(PointPlan(index=index, values=values, prepared=prepared))

    groups: dict[str, list[PointPlan]] = {}
    for point in points:
        groups.setdefault(_resources_key(point.prepared.spec.resources), []).append(point)
    if len(groups) > 1 and not split_arrays:
        first, other = (asdict(g[0].prepared.spec.resources) for g in list(groups.values())[:2])
        differ = "; ".join(f"resources.{k}: {first[k]!r} vs {other[k]!r}" for k in first if first[k] != other[k])
        raise SweepError(f"points ask for different resources ({differ}), which would split the sweep into "
                         f"{len(groups)} job arrays; sweep resources in separate sweeps, or pass --split-arrays")

    seen: dict[str, int] = {}
    for point in points:
        if point.signature in seen:
            first = points[seen[point.signature]]
            raise SweepError(f"points {first.index} ({', '.join(first.overrides)}) and {point.index} "
                             f"({', '.join(point.overrides)}) resolve to the same config: a swept key that does not "
                             "change what is trained, or a repeated value?")
        seen[point.signature] = point.index

    result = Plan(name=name, space=space, recipe=base, root=root, executor=points[0].prepared.spec.executor,
                  max_parallel=space.max_parallel, points=points, renders=len(variants))
    if ledger is not None:
        _check_existing(result, ledger)
        decide(result, ledger, retry_failed=retry_failed, force=force)
    return result


def _check_existing(plan_: Plan, ledger) -> None:
    plan_.existing_sweep = get_sweep(ledger, plan_.name)
    wanted = _spec_json(plan_.space, plan_.recipe.name)
    if plan_.existing_sweep and plan_.existing_sweep.spec != wanted:
        had = plan_.existing_sweep.spec
        differ = "; ".join(f"{k}: {json.dumps(had.get(k))} before, {json.dumps(wanted.get(k))} now"
                           for k in sorted(set(had) | set(wanted)) if had.get(k) != wanted.get(k))
        raise SweepError(f"a sweep named '{plan_.name}' already exists with a different space ({differ}); give this "
                         "one another --name (or name: in the sweep file)")


def _spec_json(space: Space, recipe_name: str) -> dict:
    return json.loads(json.dumps(space.canonical(recipe_name), sort_keys=True, default=str))


def _serving(ledger, records: list, live_local: set[str]) -> tuple[Any, Any]:
    """(the run that serves a signature -- completed, or queued/running --, the newest failed one)."""
    from swinctl import status

    serving = failed = None
    for record in sorted(records, key=lambda r: r.created_at, reverse=True):
        if record.job_id is None and not record.is_active:
            continue  # cancelled before it reached a scheduler: it never ran
        if record.is_active and record.job_id is not None:
            record = status.refresh(ledger, record)
        if record.state == "COMPLETED" and (serving is None or serving.state != "COMPLETED"):
            serving = record
        elif record.is_active and (record.job_id is not None or record.id in live_local) and serving is None:
            serving = record
        elif record.state in ("FAILED", "CANCELLED", "TIMEOUT") and failed is None:
            failed = record
    return serving, failed


def decide(plan_: Plan, ledger, *, retry_failed: bool, force: bool) -> None:
    """Mark each point submit or skip, from the runs the ledger holds with the same signature."""
    by_signature: dict[str, list] = {}
    for record in ledger.list_runs():
        if record.kind == "train":
            by_signature.setdefault(record.signature, []).append(record)
    live_local = _live_local_runs(ledger)
    for point in plan_.points:
        serving, failed = _serving(ledger, by_signature.get(point.signature, []), live_local)
        if force:
            point.action, point.current = "submit", serving or failed
            point.note = f"rerun (--force; was {point.current.id})" if point.current else "new"
            continue
        if serving is not None:
            point.action, point.current = "skip", serving
            own = serving.sweep == plan_.name
            verb = "done" if serving.state == "COMPLETED" else serving.state.lower()
            point.note = f"{verb}: {serving.id}" if own else f"shared with {serving.id} ({verb})"
        elif failed is not None and not retry_failed:
            point.action, point.current = "skip", failed
            point.note = f"{failed.state.lower()}: {failed.id} (--retry-failed to rerun)"
        elif failed is not None:
            point.action, point.current, point.note = "submit", failed, f"retry of {failed.id}"
        else:
            point.action, point.note = "submit", "new"


def _live_local_runs(ledger) -> set[str]:
    with ledger.transaction() as db:
        rows = db.execute("SELECT run_ids_json, job_id, created_at FROM sweep_submissions "
                          "WHERE executor = 'local' AND state IN ('submitting', 'running')").fetchall()
    live: set[str] = set()
    for row in rows:
        if (row["job_id"] and _pid_alive(int(row["job_id"]))) or (not row["job_id"]
                                                                   and time.time() - row["created_at"] < 30):
            live.update(json.loads(row["run_ids_json"]))
    return live


# ---------------------------------------------------------------------------------------------- submitting


@dataclass
class Submission:
    executor: str
    job_id: str
    run_ids: list[str]
    parallelism: int


def _register(ledger, plan_: Plan, tokens: list[tuple[str, str, str, list[str]]]) -> None:
    """The sweep, its points (with the runs that serve them) and the coming submissions, in one transaction."""
    spec = _spec_json(plan_.space, plan_.recipe.name)
    now = time.time()
    with ledger.transaction() as db:
        db.execute("INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?, ?)",
                   (plan_.name, plan_.recipe.name, json.dumps(spec, sort_keys=True), now))
        for point in plan_.points:
            run_id = point.prepared.run_id if point.action == "submit" else point.current.id
            db.execute("INSERT OR REPLACE INTO sweep_points VALUES (?, ?, ?, ?, ?)",
                       (plan_.name, point.index, json.dumps(point.overrides), point.signature, run_id))
        for token, executor, job_name, run_ids in tokens:
            db.execute("INSERT INTO sweep_submissions VALUES (?, ?, ?, ?, ?, ?, NULL, 'submitting')",
                       (token, plan_.name, executor, job_name, json.dumps(run_ids), now))


def submit(plan_: Plan, ledger) -> list[Submission]:
    """Record and submit every point marked `submit`: one job array (or local runner) per resource group."""
    from swinctl import runs

    groups = plan_.groups()
    tokens = []
    for group in groups:
        token = secrets.token_hex(4)
        tokens.append((token, plan_.executor, f"swinctl:sweep:{plan_.name}:{token}",
                       [p.prepared.run_id for p in group]))
    _register(ledger, plan_, tokens)
    for group in groups:
        for point in group:
            runs.materialize(point.prepared)
    out = []
    for group, (token, _, job_name, _) in zip(groups, tokens, strict=True):
        if plan_.executor == "slurm":
            out.append(_submit_array(plan_, ledger, group, token, job_name))
        else:
            out.append(_submit_local(plan_, ledger, group, token))
    return out


def array_executor(plan_: Plan, group: list[PointPlan], job_name: str, *, preview: bool = False):
    """The SLURM executor for one group: the points' own resources, the sweep's folder, name and `%` limit."""
    from swinctl import jobs

    template = group[0].prepared.spec
    executor = jobs.make_executor(replace(template, run_dir=sweep_dir(plan_.root, plan_.name)), preview=preview)
    executor.update_parameters(job_name=job_name, comment=f"swinctl sweep {plan_.name} ({len(group)} points)",
                               array_parallelism=plan_.parallelism(len(group)))
    return executor


def _submit_array(plan_: Plan, ledger, group: list[PointPlan], token: str, job_name: str) -> Submission:
    from swinctl import jobs

    executor = array_executor(plan_, group, job_name)
    run_ids = [p.prepared.run_id for p in group]
    if os.environ.get(KILL_BEFORE_SBATCH):
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        with executor.batch():
            submitted = [executor.submit(jobs.CodebaseJob(p.prepared.spec)) for p in group]
    except Exception as exc:
        for run_id in run_ids:
            ledger.update(run_id, event="state", state="FAILED", error=f"submission failed: {exc}")
        _set_submission(ledger, token, state="failed")
        raise jobs.JobError(f"sbatch failed for sweep {plan_.name}: {exc}") from None
    if os.environ.get(KILL_AFTER_SBATCH):
        os.kill(os.getpid(), signal.SIGKILL)
    _record_job_ids(ledger, {rid: str(job.job_id) for rid, job in zip(run_ids, submitted, strict=True)}, "submitted")
    array_id = str(submitted[0].job_id).split("_")[0]
    _set_submission(ledger, token, state="submitted", job_id=array_id)
    return Submission("slurm", array_id, run_ids, plan_.parallelism(len(group)))


class LocalQueue:
    """The local executor's queue: a submitit job that starts the sweep's points, at most `parallel` at a time.

    Each point is still its own submitit job (`jobs.submit`), logged and recorded like a `run`; a point cancelled
    (`swinctl cancel`) before its turn is skipped; a point that fails does not stop the others.
    """

    def __init__(self, runs_root: Path, token: str, specs: list, parallel: int):
        self.runs_root, self.token, self.specs, self.parallel = runs_root, token, specs, parallel

    def __call__(self) -> dict[str, str]:
        from swinctl import jobs
        from swinctl.ledger import Ledger

        ledger = Ledger(self.runs_root)
        _set_submission(ledger, self.token, state="running", job_id=str(os.getpid()))
        pending, running, outcome = list(self.specs), {}, {}
        while pending or running:
            for run_id, job in list(running.items()):
                if job.done():
                    outcome[run_id] = ledger.get(run_id).state
                    del running[run_id]
            while pending and len(running) < self.parallel:
                spec = pending.pop(0)
                record = ledger.get(spec.run_id)
                if record.state != "PENDING" or record.job_id is not None:
                    outcome[spec.run_id] = f"skipped ({record.state})"
                    continue
                try:
                    running[spec.run_id] = jobs.submit(spec)
                except Exception as exc:  # one point failing to start must not stop the others
                    ledger.update(spec.run_id, event="state", state="FAILED", error=f"submission failed: {exc}")
                    outcome[spec.run_id] = "FAILED"
            time.sleep(0.5)
        _set_submission(ledger, self.token, state="ended")
        return outcome


def _submit_local(plan_: Plan, ledger, group: list[PointPlan], token: str) -> Submission:
    from swinctl import jobs

    specs = [p.prepared.spec for p in group]
    parallel = plan_.parallelism(len(group))
    template = specs[0]
    queue_resources = jobs.Resources(cpus_per_task=1, timeout_min=sum(s.resources.timeout_min for s in specs) + 60,
                                     setup=template.resources.setup, max_requeues=0)
    executor = jobs.make_executor(replace(template, run_dir=sweep_dir(plan_.root, plan_.name),
                                          resources=queue_resources))
    job = executor.submit(LocalQueue(plan_.root, token, specs, parallel))
    with ledger.transaction() as db:  # the runner records itself too; whichever comes first
        db.execute("UPDATE sweep_submissions SET job_id = ?, state = 'running' WHERE token = ? AND job_id IS NULL",
                   (str(job.job_id), token))
    return Submission("local", str(job.job_id), [s.run_id for s in specs], parallel)


def array_preview(plan_: Plan, group: list[PointPlan]) -> str:
    """The sbatch script the group would be submitted with (`#SBATCH --array=0-N%P`)."""
    from swinctl import jobs

    executor = array_executor(plan_, group, f"swinctl:sweep:{plan_.name}:DRY-RUN", preview=True)
    if len(group) > 1:
        executor.parameters["map_count"] = len(group)
    return jobs.sbatch_text(executor)


def run_sweep(space: Space, *, executor: str = "auto", wandb: str = "auto", root: Path | None = None,
              retry_failed: bool = False, force: bool = False, split_arrays: bool = False,
              scale_lr: bool = True) -> tuple[Plan, list[Submission], list[str]]:
    """Plan, reconcile, decide and submit under the runs root's lock. Returns (plan, submissions, notes)."""
    from swinctl import runs
    from swinctl.ledger import Ledger

    # Everything that can be wrong with the input is found before the ledger is touched.
    checked = plan(space, executor=executor, wandb=wandb, root=root, split_arrays=split_arrays, scale_lr=scale_lr)
    runs.require_submitter(checked.executor)
    ledger = Ledger(runs.runs_root(root))
    ensure_tables(ledger)
    with _root_lock(checked.root):
        notes = reconcile(ledger, checked.root)
        _check_existing(checked, ledger)
        decide(checked, ledger, retry_failed=retry_failed, force=force)
        submissions = submit(checked, ledger) if checked.to_submit else []
        if not checked.to_submit:
            _register(ledger, checked, [])
    return checked, submissions, notes


# ---------------------------------------------------------------------------------------------- reporting


@dataclass(frozen=True)
class SweepRow:
    point: int
    overrides: list[str]
    signature: str
    row: Any  # status.StatusRow of the run serving the point, or None when it was never created
    shared: bool  # the run belongs to another sweep (or to no sweep)

    def to_json(self) -> dict:
        return {"point": self.point, "overrides": self.overrides, "signature": self.signature, "shared": self.shared,
                "run": None if self.row is None else self.row.to_json()}


def sweep_rows(ledger, name: str) -> list[SweepRow]:
    """One row per point of sweep `name`, with the live state of the run that serves it (refreshed)."""
    from swinctl import status

    ensure_tables(ledger)
    with ledger.transaction() as db:
        points = db.execute("SELECT * FROM sweep_points WHERE sweep = ? ORDER BY point_index", (name,)).fetchall()
    if not points and get_sweep(ledger, name) is None:
        raise KeyError(f"no sweep named '{name}' in {ledger.path}")
    rows = []
    for p in points:
        try:
            record = ledger.get(p["run_id"])
        except KeyError:
            rows.append(SweepRow(p["point_index"], json.loads(p["overrides_json"]), p["signature"], None, False))
            continue
        rows.append(SweepRow(p["point_index"], json.loads(p["overrides_json"]), p["signature"],
                             status.row(ledger, record), record.sweep != name))
    return rows


def default_metric(rows: list[SweepRow]) -> str | None:
    from swinctl.views import HEADLINE_METRICS

    present = {k for r in rows if r.row is not None for k in r.row.metrics}
    return next((m for m in HEADLINE_METRICS if m in present), None)


def sweep_table(rows: list[SweepRow], metric: str | None = None, title: str | None = None,
                short_ids: dict[str, str] | None = None):
    """point | overrides | run | state | progress | METRIC (best marked) | note, fitted to the terminal's width
    (:class:`swinctl.views.FitTable`). `short_ids`: the ids to show (`status.short_ids`); full ids without."""
    from rich.text import Text

    from swinctl import views
    from swinctl.views import Col

    metric = metric or default_metric(rows)
    values = {r.point: r.row.metrics.get(metric) for r in rows if r.row is not None and metric}
    best = max((v for v in values.values() if v is not None), default=None)
    table = views.FitTable(Col("#", justify="right"), Col("overrides", wrap=True, fold=True), Col("run"),
                           Col("state"), Col("progress", wrap=True), Col(metric or "metric", wrap=True),
                           Col("note", wrap=True, fold=True, drop_empty=True),
                           title=title or f"sweep ({time.strftime('%H:%M:%S')})", wide=short_ids is None)
    for r in rows:
        overrides = "\n".join(r.overrides)
        if r.row is None:
            table.add_row(str(r.point), overrides, "-", Text("NOT CREATED", style="red"), "-", "-",
                          "interrupted before its run was written; run the sweep again")
            continue
        rec, p = r.row.record, r.row.progress
        progress = "-" if p is None or not p.total else f"{p.iter}/{p.total} ({100 * p.iter / p.total:.0f}%)"
        value = values.get(r.point)
        shown = Text("-" if value is None else f"{value:.2f}")
        if value is not None and value == best:
            shown.append(" ★ best", style="bold green")
        notes = []
        if r.shared:
            notes.append(f"shared with {rec.id}" + (f" (sweep {rec.sweep})" if rec.sweep else ""))
        if rec.error and not rec.is_active:
            notes.append(rec.error.strip().splitlines()[0][:80])
        name = views.run_name(rec.id, (short_ids or {}).get(rec.id), rec.smoke, short_ids is None)
        table.add_row(str(r.point), overrides, name, views.state_text(rec.state), progress, shown, "\n".join(notes))
    if not rows:
        table.add_row("(no points)", "", "", "", "", "", "")
    return table


def plan_table(plan_: Plan):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"sweep {plan_.name}: {len(plan_.points)} points, {len(plan_.to_submit)} to submit "
                  f"({plan_.executor})", title_justify="left")
    for column in ("#", "overrides", "signature", "action", "already ran?"):
        table.add_column(column, overflow="fold")
    for p in plan_.points:
        action = Text(p.action, style="green" if p.action == "submit" else "dim")
        table.add_row(str(p.index), "\n".join(p.overrides), p.signature, action, p.note)
    return table


def active(rows: list[SweepRow]) -> bool:
    return any(r.row is not None and r.row.record.is_active for r in rows)


__all__ = ["Space", "SweepError", "load_space", "plan", "run_sweep", "reconcile", "recover", "sweep_rows",
           "sweep_table", "plan_table", "array_preview", "parse_tie", "parse_distribution", "parse_values",
           "LocalQueue", "get_sweep"]
