"""Recipes: the validated YAML description of one training setup, and `--set` overrides on it.

A recipe names its codebase, the codebase config files it builds on, the Swin backbone, data, schedule, optimizer,
precision, cluster resources, tracking and the numbers it is expected to reach (with their sources). `render.py`
turns a recipe into an MMEngine config. Only pydantic and yaml are imported here: the CLI loads recipes at start.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from swinctl import trust
from swinctl.errors import UserError
from swinctl.yaml_io import YamlError, load_yaml, read_yaml_file

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


class RecipeError(UserError):
    """A recipe or an override is wrong; the message says what and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


PositiveInt = Annotated[int, Field(gt=0)]


class Backbone(_Strict):
    """The Swin Transformer backbone (`swinctl.SwinTransformer`)."""

    embed_dims: PositiveInt = 96
    depths: list[PositiveInt] = [2, 2, 6, 2]
    num_heads: list[PositiveInt] = [3, 6, 12, 24]
    window_size: PositiveInt = 7
    mlp_ratio: float = Field(4.0, gt=0)
    drop_path_rate: float = Field(0.2, ge=0, lt=1)
    ape: bool = False
    patch_norm: bool = True
    out_indices: list[int] = [0, 1, 2, 3]
    frozen_stages: int = Field(-1, ge=-1, le=4)
    with_cp: bool = False
    pretrained: str | None = None

    @model_validator(mode="after")
    def _stages_agree(self) -> Backbone:
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths ({len(self.depths)} stages) and num_heads ({len(self.num_heads)}) must match")
        for stage, heads in enumerate(self.num_heads):
            dims = self.embed_dims * 2**stage
            if dims % heads:
                raise ValueError(f"stage {stage}: {dims} channels are not divisible by {heads} heads")
        return self

    def stage_channels(self) -> list[int]:
        return [self.embed_dims * 2**i for i in range(len(self.depths))]


class Model(_Strict):
    backbone: Backbone = Backbone()
    num_classes: PositiveInt | None = None  # None keeps the base config's head (80 for COCO)
    decode_channels: PositiveInt | None = None  # UPerNet's decode head width (512 in the paper)


Dataset = Literal["coco", "coco_panoptic", "ade20k", "cityscapes"]


class Data(_Strict):
    dataset: Dataset
    root: str
    batch_size: PositiveInt = 2  # per GPU
    num_workers: int | None = Field(2, ge=0)  # None: each loader keeps the base config's
    # (long, short) side of the resize, as the codebases write it; None keeps the base config's pipelines
    scale: tuple[PositiveInt, PositiveInt] | None = None
    crop_size: tuple[PositiveInt, PositiveInt] | None = None  # the training canvas: crops, pads, fixed-size batches
    val_batch_size: PositiveInt = 1


class Schedule(_Strict):
    by_epoch: bool
    max_epochs: PositiveInt | None = None
    max_iters: PositiveInt | None = None
    val_interval: PositiveInt = 1
    checkpoint_interval: PositiveInt = 1
    log_interval: PositiveInt = 50
    warmup_iters: int = Field(1000, ge=0)
    warmup_start_factor: float = Field(0.001, gt=0, le=1)
    policy: Literal["step", "poly"]
    milestones: list[PositiveInt] = []
    gamma: float = 0.1
    power: float = 1.0
    eta_min: float = 0.0

    @model_validator(mode="after")
    def _length_given(self) -> Schedule:
        if self.by_epoch and not self.max_epochs:
            raise ValueError("an epoch-based schedule needs max_epochs")
        if not self.by_epoch and not self.max_iters:
            raise ValueError("an iteration-based schedule needs max_iters")
        if self.policy == "step" and not self.milestones:
            raise ValueError("policy 'step' needs milestones")
        if not self.by_epoch and self.warmup_iters >= self.max_iters:
            raise ValueError(f"warmup_iters ({self.warmup_iters}) must be below max_iters ({self.max_iters})")
        return self

    @property
    def length(self) -> int:
        return self.max_epochs if self.by_epoch else self.max_iters


class Optimizer(_Strict):
    type: Literal["AdamW", "SGD"] = "AdamW"
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # SGD only
    no_decay: list[str] = ["absolute_pos_embed", "relative_position_bias_table", "norm"]
    clip_grad: float | None = None


class Precision(_Strict):
    amp: bool = False
    loss_scale: float | Literal["dynamic"] | None = None  # AMP's initial loss scale

    @model_validator(mode="after")
    def _scale_needs_amp(self) -> Precision:
        if self.loss_scale is not None and not self.amp:
            raise ValueError("loss_scale only applies with amp: true")
        return self


class Resources(_Strict):
    gpus: int = Field(8, ge=0)
    gpus_per_node: int = Field(8, ge=0)
    nodes: PositiveInt = 1
    tasks_per_node: PositiveInt | None = None  # default: one per GPU; without GPUs, CPU processes (gloo)
    cpus_per_task: PositiveInt = 5
    mem_gb: PositiveInt | None = None
    # SLURM's D-HH:MM:SS / HH:MM:SS / minutes (a bare number, as YAML reads `time_limit: 90`, is minutes)
    time_limit: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) and v > 0 else v)] = "1-00:00:00"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    exclusive: bool = False
    sbatch_args: dict[str, str] = {}
    setup: list[str] = []  # shell lines run before the job (module load ..., conda activate ...)
    max_requeues: int = Field(3, ge=0)

    @model_validator(mode="after")
    def _one_line_each(self) -> Resources:
        # each of these becomes one line of an sbatch script: a newline would start a shell command of its own
        for key in ("time_limit", "partition", "account", "qos", "constraint", "exclude"):
            if getattr(self, key) is not None:
                trust.check_one_line(getattr(self, key), f"resources.{key}")
        for option, value in self.sbatch_args.items():
            trust.check_sbatch_option(option)
            trust.check_one_line(value, f"resources.sbatch_args.{option}")
        for line in self.setup:
            trust.check_one_line(line, "resources.setup line")
        return self


class Tracking(_Strict):
    project: str = "swinctl"
    entity: str | None = None
    tags: list[str] = []


class Expected(_Strict):
    # mIoU_ms_flip: the multi-scale + flip test-time figure (a run evaluated single-scale never logs it)
    metric: Literal["bbox_mAP", "segm_mAP", "PQ", "mIoU", "mIoU_ms_flip"]
    value: float
    source: str


class ReferenceLog(_Strict):
    """A published training log to compare a run's validations with, epoch by epoch (`swinctl.guard.reference`)."""

    url: str  # an http(s) URL (downloaded once, cached) or a local file
    format: Literal["mmcv1", "mmengine"] | None = None  # mmcv1: <ts>.log.json; mmengine: scalars.json; None: by name
    source: str = "reference log"  # what it is, e.g. "MMDet 2.x mask_rcnn_swin-t-p4-w7_fpn_1x_coco"
    tolerance: float | None = Field(None, ge=0)  # points behind it that flag a run (None: the recipe's tolerance)

    @field_validator("url")
    @classmethod
    def _one_line(cls, url: str) -> str:
        if not url.strip() or "\n" in url:
            raise ValueError("reference_log.url must be one line: a URL or a file path")
        return url


class Smoke(_Strict):
    """What `--smoke` changes: recipe fields first, then config keys. The data root becomes the demo set."""

    set: dict[str, Any] = {}
    config: dict[str, Any] = {}
    # The learning smoke profile: `--set` overrides (recipe fields or config keys) on top of the above that train the
    # demo set long enough to score well above chance in minutes (benchmarks/smoke.py and its slow test pass them).
    learn: dict[str, Any] = {}

    def learn_overrides(self) -> list[str]:
        """`learn` as `--set KEY=VALUE` arguments (JSON values, which YAML reads back unchanged)."""
        return [f"{key}={json.dumps(value)}" for key, value in self.learn.items()]


Task = Literal["detection", "instance", "panoptic", "semantic"]


class Recipe(_Strict):
    name: str
    description: str
    codebase: Literal["mmdet", "mmseg"]
    task: Task | None = None  # None: instance segmentation for mmdet, semantic for mmseg (the seed recipes)
    reference_config: str  # the published config in the codebase's .mim/configs this recipe reproduces
    # codebase config files the rendered config inherits, e.g. mmdet::_base_/default_runtime.py; a zoo recipe
    # inherits its reference config itself (see `inherits_reference`)
    bases: list[str]
    model: Model
    data: Data
    # None: the base config's own schedule / optimizer, untouched (zoo recipes: the reference config's)
    schedule: Schedule | None = None
    optimizer: Optimizer | None = None
    precision: Precision = Precision()
    resources: Resources = Resources()
    tracking: Tracking = Tracking()
    seed: int | None = None
    # the released checkpoint of the model `expected` describes (the metafile's `Weights`): `swinctl test --published`
    # evaluates it; an http(s) URL (downloaded once into the torch hub cache) or a local file
    published_weights: str | None = None
    expected: list[Expected] = []
    tolerance: float = Field(0.5, ge=0)
    reference_log: ReferenceLog | None = None
    smoke: Smoke = Smoke()
    config: dict[str, Any] = {}  # extra config keys, merged last

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return trust.check_name(name)  # it names the run's directory under the runs root

    @field_validator("published_weights")
    @classmethod
    def _weights_ref(cls, ref: str | None) -> str | None:
        if ref is None:
            return None
        if not ref.strip() or "\n" in ref:
            raise ValueError("published_weights must be one line: an http(s) URL or a file path")
        scheme = ref.split("://", 1)[0].lower() if "://" in ref else None
        if scheme is not None and scheme not in ("http", "https"):
            raise ValueError(f"published_weights {ref!r}: only http(s) URLs and local files are supported")
        return ref

    @model_validator(mode="after")
    def _trusted_bases(self) -> Recipe:
        for base in self.bases:
            trust.check_base(base, self.codebase)
        return self

    @model_validator(mode="after")
    def _task_known(self) -> Recipe:
        if self.task is None:
            self.__dict__["task"] = "instance" if self.codebase == "mmdet" else "semantic"
        return self

    @property
    def inherits_reference(self) -> bool:
        """True for a zoo recipe: its one base is its reference config, which it changes only where it says so."""
        return self.bases == [f"{self.codebase}::{self.reference_config}"]


# ---------------------------------------------------------------------------------------------- loading


def available() -> dict[str, Path]:
    """Recipe names -> files, from $SWINCTL_RECIPES (os.pathsep-separated) and the bundled recipes/."""
    dirs = [Path(d) for d in os.environ.get("SWINCTL_RECIPES", "").split(os.pathsep) if d] + [RECIPES_DIR]
    found: dict[str, Path] = {}
    for directory in dirs:
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("zoo/*.yaml")]):
            found.setdefault(path.stem, path)
    return found


def listing(codebase: str | None = None, task: str | None = None, text: str | None = None) -> list[dict]:
    """The known recipes as `swinctl recipes --json` rows, filtered by codebase, task and a substring of the name,
    reference config or description; a file that does not validate is a row with its error."""
    rows = []
    for name, path in available().items():
        try:
            recipe = load_recipe(path)
        except RecipeError as exc:
            if not (codebase or task or text) or (text and text in name):
                rows.append(dict(name=name, file=str(path), error=str(exc)))
            continue
        haystack = f"{recipe.name} {recipe.reference_config} {recipe.description}".lower()
        if (codebase and recipe.codebase != codebase) or (task and recipe.task != task) or \
                (text and text.lower() not in haystack):
            continue
        res = recipe.resources
        rows.append(dict(
            name=recipe.name, codebase=recipe.codebase, task=recipe.task, dataset=recipe.data.dataset,
            reference_config=recipe.reference_config, description=recipe.description,
            expected=[e.model_dump() for e in recipe.expected], tolerance=recipe.tolerance,
            resources=dict(gpus=res.gpus, nodes=res.nodes, gpus_per_node=res.gpus_per_node, time_limit=res.time_limit),
            batch_size=recipe.data.batch_size, zoo=recipe.inherits_reference,
            published_weights=recipe.published_weights, file=str(path)))
    return rows


def resolve_path(name_or_path: str | Path) -> Path:
    """A recipe name (`maskrcnn-swin-t`) or a YAML file path -> the file."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or os.sep in text:
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        return path
    known = available()
    if text in known:
        return known[text]
    close = difflib.get_close_matches(text, known, n=3, cutoff=0.4)
    # the suggestions and the way to see every name: the whole list (dozens of names) would bury them
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise RecipeError(f"unknown recipe '{text}': {hint}`swinctl recipes` lists all {len(known)} (or pass a path to "
                      "a recipe .yaml file)")


def _read_yaml(path: Path) -> dict:
    try:
        data = read_yaml_file(path, "recipe")
    except YamlError as exc:
        raise RecipeError(str(exc)) from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of keys (name, codebase, model, ...), "
                          f"found {type(data).__name__}")
    return data


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at `loc` inside a recipe, for error messages."""
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(info, "annotation", None) if info else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)


def _explain(error: ValidationError, source: str) -> RecipeError:
    # an unknown key next to a missing one is usually a typo of it: name the typo first
    first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        valid = _field_names(Recipe, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        message = f"unknown key '{key}'{hint} (valid keys here: {', '.join(valid)})"
    elif first["type"] == "missing":
        message = f"missing required key '{key}'"
    elif first["type"] == "value_error":  # our validators' own sentences, which name the value already
        message = f"key '{key}': {first['msg'].removeprefix('Value error, ')}" if loc else \
            first["msg"].removeprefix("Value error, ")
    else:
        message = f"key '{key}': {first['msg']} (got {first.get('input')!r})"
    more = len(error.errors()) - 1
    suffix = f" [and {more} more problem{'s' if more > 1 else ''}]" if more else ""
    return RecipeError(f"{source}: {message}{suffix}")


def validate(data: dict, source: str) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, source) from None


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = resolve_path(name_or_path)
    return validate(_read_yaml(path), str(path))


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


# ---------------------------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b.c=value` -> ('a.b.c', value), the value read as a YAML scalar or list, never as Python."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override '{text}' is not of the form dotted.key=value (e.g. optimizer.lr=2e-4)")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not YAML"
        raise RecipeError(f"override '{text}': the value is not a YAML scalar or list ({problem})") from None
    if isinstance(value, dict):
        raise RecipeError(f"override '{text}': set one key at a time (a.b=1 a.c=2), not a mapping")
    return key, value


def dotted_keys(node: Any, prefix: str = "", *, lists: bool = False) -> list[str]:
    """Every dotted key of a nested mapping (leaves and sub-sections; list items by index with `lists`)."""
    keys: list[str] = []
    if isinstance(node, dict):
        items = node.items()
    elif lists and isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return keys
    for k, v in items:
        keys.append(f"{prefix}{k}")
        keys.extend(dotted_keys(v, f"{prefix}{k}.", lists=lists))
    return keys


def recipe_keys(recipe: Recipe) -> list[str]:
    """Every dotted key of a recipe, for matching and suggestions."""
    return dotted_keys(recipe.model_dump())


def _is_recipe_key(recipe: Recipe, key: str) -> bool:
    node: Any = recipe
    for part in key.split("."):
        if isinstance(node, BaseModel) and part in type(node).model_fields:
            node = getattr(node, part)
        elif isinstance(node, dict):  # free-form sections (smoke.set, config, sbatch_args) take any key
            return True
        else:
            return False
    return True


def split_overrides(recipe: Recipe, overrides: list[str]) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Sort `--set` items into recipe overrides and config overrides.

    `recipe.KEY` and `cfg.KEY` force a side; otherwise a key the recipe has is a recipe override and any other key
    is checked against the rendered config later (`render.apply_config_overrides`).
    """
    on_recipe, on_config = [], []
    for text in overrides:
        key, value = parse_override(text)
        if key.startswith("recipe."):
            on_recipe.append((key.removeprefix("recipe."), value))
        elif key.startswith("cfg."):
            on_config.append((key.removeprefix("cfg."), value))
        elif _is_recipe_key(recipe, key):
            on_recipe.append((key, value))
        else:
            on_config.append((key, value))
    return on_recipe, on_config


def apply_recipe_overrides(recipe: Recipe, items: list[tuple[str, Any]], source: str = "--set") -> Recipe:
    """A new recipe with `items` applied, validated as a whole."""
    data = recipe.model_dump()
    for key, value in items:
        if not _is_recipe_key(recipe, key):
            raise unknown_key_error(key, recipe_keys(recipe), "recipe")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return validate(data, f"{source} on recipe '{recipe.name}'")


def unknown_key_error(key: str, valid: list[str], where: str) -> RecipeError:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    hint = f"; closest valid keys: {', '.join(close)}" if close else ""
    return RecipeError(f"unknown key '{key}' in the {where}{hint} "
                       "(`swinctl show RECIPE` lists recipe keys, `swinctl show RECIPE --config` the config)")
