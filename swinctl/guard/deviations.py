"""The run against its published setting: each difference that can move the final number, in plain words.

The published setting is the recipe file as published (no `--set`, no smoke section): its resources and per-GPU
batch give the published total batch, its optimizer the published learning rate, and so on. The total batch is the
one difference swinctl corrects by default: MMEngine's linear scaling rule (``auto_scale_lr``, applied by the
Runner at the start of training: lr x real batch / base batch) is rendered on with the published total batch as its
base, unless `--no-scale-lr` keeps the recipe's rate. Pure functions over recipes and the rendered config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swinctl import recipes
from swinctl.recipes import Recipe

# Severity: 'warning' (a change that can cost accuracy), 'scaled' (a change swinctl compensates, e.g. the LR rule),
# 'note' (not a change of the setting: something the guard could not verify, or verified).
WARNING, SCALED, NOTE = "warning", "scaled", "note"

# Recipe fields that name, place or watch a run but do not change what it computes; or that the batch, LR,
# schedule-length, precision and pretrained rules below describe in their own words.
_IGNORED = ("name", "description", "reference_config", "reference_log", "tracking", "expected", "tolerance", "smoke",
            "seed", "resources", "data.root", "data.num_workers", "data.val_batch_size", "data.batch_size",
            "schedule.val_interval", "schedule.checkpoint_interval", "schedule.log_interval", "schedule.max_epochs",
            "schedule.max_iters", "schedule.by_epoch", "optimizer.lr", "precision.amp",
            "model.backbone.pretrained", "config")


@dataclass(frozen=True)
class Deviation:
    kind: str  # batch | lr | schedule | precision | pretrained | dataset | recipe | config | smoke | reference
    message: str  # one sentence, plain words
    severity: str = WARNING
    published: Any = None
    actual: Any = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Published:
    """The published setting of a recipe: the recipe file as it is, without overrides or smoke changes."""

    recipe: Recipe

    @property
    def gpus(self) -> int:
        return max(self.recipe.resources.gpus, 1)

    @property
    def total_batch(self) -> int:
        return self.gpus * self.recipe.data.batch_size

    @property
    def lr(self) -> float | None:  # None: the base config's optimizer (zoo recipes), read from the config
        return self.recipe.optimizer.lr if self.recipe.optimizer else None


def published_of(ref: str | Path | None, run_recipe: Recipe) -> Published:
    """The published setting behind `run_recipe`: the recipe file `ref` names (or the recipe of that name)."""
    try:
        return Published(recipes.load_recipe(ref if ref is not None else run_recipe.name))
    except recipes.RecipeError:
        return Published(run_recipe)  # no file to compare with: the run is its own setting


def fmt_lr(value: float) -> str:
    """1e-4, 5e-5, 6e-5, 0.02: short, the way papers write learning rates."""
    if value == 0 or 1e-2 <= abs(value) < 1e3:
        return f"{value:g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _layout(processes: int, gpus: int, per_gpu: int) -> str:
    unit = "GPUs" if gpus else ("CPU processes" if processes > 1 else "CPU process")
    return f"{processes} {unit} x {per_gpu}"


def apply_lr_rule(published: Published, cfg, world_size: int, gpus: int, *, scale_lr: bool = True,
                  config_overrides: list[tuple[str, Any]] = ()) -> list[Deviation]:
    """Compare the run's total batch with the published one and render MMEngine's linear scaling rule into `cfg`
    (in place): ``auto_scale_lr=dict(enable=True, base_batch_size=<published total>)`` when they differ, unless
    `scale_lr` is False or the config sets ``auto_scale_lr`` itself (then that is described)."""
    loader = cfg.get("train_dataloader") or {}
    per_gpu = int(loader.get("batch_size") or 1)
    total = world_size * per_gpu
    base = published.total_batch
    lr = float(((cfg.get("optim_wrapper") or {}).get("optimizer") or {}).get("lr") or published.lr)
    if total == base:
        return []
    head = (f"total batch {total} ({_layout(world_size, gpus, per_gpu)}) vs {base} published "
            f"({published.gpus} GPUs x {published.recipe.data.batch_size})")
    explicit = any(key == "auto_scale_lr" or key.startswith("auto_scale_lr.") for key, _ in config_overrides)
    if explicit:
        rule = cfg.get("auto_scale_lr") or {}
        if rule.get("enable") and rule.get("base_batch_size"):
            scaled = lr * total / float(rule["base_batch_size"])
            severity = SCALED if int(rule["base_batch_size"]) == base else WARNING
            return [Deviation("batch", f"{head}: learning rate scaled {fmt_lr(lr)} -> {fmt_lr(scaled)} by your "
                                       f"auto_scale_lr (base batch {rule['base_batch_size']})",
                              severity, {"batch": base, "lr": published.lr}, {"batch": total, "lr": scaled})]
        return [Deviation("batch", f"{head}: learning rate not scaled ({fmt_lr(lr)}, auto_scale_lr disabled by "
                                   "your override): expect a lower mAP", WARNING,
                          {"batch": base, "lr": published.lr}, {"batch": total, "lr": lr})]
    if scale_lr:
        scaled = lr * total / base
        cfg.merge_from_dict(dict(auto_scale_lr=dict(enable=True, base_batch_size=base)))
        return [Deviation("batch", f"{head}: learning rate scaled {fmt_lr(lr)} -> {fmt_lr(scaled)} (linear rule)",
                          SCALED, {"batch": base, "lr": published.lr}, {"batch": total, "lr": scaled})]
    cfg.merge_from_dict(dict(auto_scale_lr=dict(enable=False, base_batch_size=base)))
    return [Deviation("batch", f"{head}: learning rate not scaled ({fmt_lr(lr)}, --no-scale-lr): expect a lower "
                               "mAP", WARNING, {"batch": base, "lr": published.lr}, {"batch": total, "lr": lr})]


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    out[prefix[:-1]] = node
    return out


def _ignored(key: str) -> bool:
    return any(key == ignored or key.startswith(ignored + ".") for ignored in _IGNORED)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return fmt_lr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "none" if value is None else str(value)


def _length(recipe: Recipe) -> str:
    s = recipe.schedule
    if s is None:
        return "the reference config's schedule"
    return f"{s.max_epochs} epochs" if s.by_epoch else f"{s.max_iters:,} iterations"


def setting(published: Published, recipe: Recipe, config_overrides: list[tuple[str, Any]] = ()) -> list[Deviation]:
    """Every other difference of `recipe` (overridden) from the published recipe, and each config override."""
    pub = published.recipe
    found: list[Deviation] = []
    if _length(recipe) != _length(pub):
        found.append(Deviation("schedule", f"schedule {_length(recipe)} vs {_length(pub)} published: the learning "
                                           "rate steps and the final number move with it", WARNING,
                               _length(pub), _length(recipe)))
    if recipe.optimizer and pub.optimizer and recipe.optimizer.lr != pub.optimizer.lr:
        found.append(Deviation("lr", f"learning rate {fmt_lr(recipe.optimizer.lr)} vs {fmt_lr(pub.optimizer.lr)} "
                                     "published (before any batch scaling)", WARNING, pub.optimizer.lr,
                               recipe.optimizer.lr))
    if recipe.precision.amp != pub.precision.amp:
        on = {True: "mixed precision (AMP)", False: "full precision (FP32)"}
        found.append(Deviation("precision", f"{on[recipe.precision.amp]} vs {on[pub.precision.amp]} published",
                               WARNING, pub.precision.amp, recipe.precision.amp))
    mine, theirs = recipe.model.backbone.pretrained, pub.model.backbone.pretrained
    if mine != theirs:
        if mine is None:
            text = f"backbone trained from scratch (no pretrained weights) vs {theirs} published: expect a much " \
                   "lower mAP"
        elif theirs is None:
            text = f"pretrained weights {mine} where the published setting trains from scratch"
        else:
            text = f"pretrained weights {mine} instead of the published {theirs}"
        found.append(Deviation("pretrained", text, WARNING, theirs, mine))
    run_fields, pub_fields = _flatten(recipe.model_dump(mode="json")), _flatten(pub.model_dump(mode="json"))
    for key in dict.fromkeys([*pub_fields, *run_fields]):
        if _ignored(key) or run_fields.get(key) == pub_fields.get(key):
            continue
        found.append(Deviation("recipe", f"{key} {_value(run_fields.get(key))} vs {_value(pub_fields.get(key))} "
                                         "published", WARNING, pub_fields.get(key), run_fields.get(key)))
    for key, value in [*_changed_config(pub.config, recipe.config), *config_overrides]:
        if key == "auto_scale_lr" or key.startswith("auto_scale_lr."):
            continue  # described with the batch
        found.append(Deviation("config", f"config {key} set to {_value(value)} (not in the published setting)",
                               WARNING, None, value))
    return found


def _changed_config(published: dict, mine: dict) -> list[tuple[str, Any]]:
    return [(key, value) for key, value in mine.items() if published.get(key, object()) != value]
