"""The reproduction guard: what makes a run miss its published number, found before and while it trains.

* :mod:`~swinctl.guard.deviations`: the run against the published setting (the recipe file as published): total
  batch and learning rate (MMEngine's linear scaling rule, rendered as ``auto_scale_lr``), schedule, precision,
  pretrained weights, other changed fields and config overrides, each in plain words.
* :mod:`~swinctl.guard.pretrained`: the backbone's pretrained weights resolve (local file, the torch hub cache MMEngine
  downloads into, or the URL, downloaded once) and load into the backbone with no missing or unexpected keys.
* :mod:`~swinctl.guard.datasets`: images per split against the published split (COCO, ADE20K, Cityscapes).
* :mod:`~swinctl.guard.reference`: a recipe's reference training log (downloaded once, cached, parsed as JSON lines by
  :mod:`swinctl.results`) against the run's validations at the same epoch or iteration.

:func:`check` is the one call `runs.prepare` (and a sweep's points) make; it imports mmengine/torch only for the
pretrained check, so nothing here runs at CLI start. Deviations are plain dicts (:meth:`Deviation.to_dict`) in the
ledger and the run dir's ``deviations.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swinctl.guard.deviations import Deviation, Published, published_of

DEVIATIONS_FILE = "deviations.json"


def check(ref: str | Path | None, recipe, cfg, resources, *, smoke: bool, kind: str = "train",
          scale_lr: bool = True, config_overrides: list[tuple[str, Any]] = (),
          published: Published | None = None, fetch: bool = True) -> list[dict]:
    """Compare a rendered run with its published setting, apply the linear LR scaling rule to `cfg` (in place), check
    the pretrained weights and count the dataset. `resources`: the job's (world_size, gpus). Returns the deviations
    as dicts; raises a UserError (nothing is written yet) when the pretrained weights cannot be found or do not fit
    the backbone. A test run is checked for its evaluation split only (its weights are the --checkpoint).
    `fetch=False` (a dry run) downloads no weights: what it cannot check here is a 'not verified' note."""
    from swinctl.guard import datasets, deviations, pretrained

    if smoke:
        return [Deviation("smoke", "smoke run: tiny model and schedule on generated demo data, no pretrained "
                                   "weights, learning rate not scaled: never a reproduction").to_dict()]
    if kind == "test":
        return [d.to_dict() for d in datasets.check_splits(cfg, recipe.data.dataset, splits=("test",))]
    if published is None:
        published = published_of(ref, recipe)
    found = deviations.apply_lr_rule(published, cfg, resources.world_size, resources.gpus, scale_lr=scale_lr,
                                     config_overrides=[*recipe.config.items(), *config_overrides])
    found += deviations.setting(published, recipe, list(config_overrides))
    found += datasets.check_splits(cfg, recipe.data.dataset)
    found += pretrained.check_backbone(cfg, fetch=fetch)
    return [d.to_dict() for d in found]


def write(run_dir: Path, found: list[dict]) -> Path:
    """The run dir's deviations.json (the list as the ledger has it)."""
    import json

    path = run_dir / DEVIATIONS_FILE
    path.write_text(json.dumps(found, indent=2) + "\n")
    return path


def read(run_dir: Path) -> list[dict] | None:
    """A run dir's deviations.json (None when it has none, e.g. a run made before the guard)."""
    import json

    try:
        data = json.loads((Path(run_dir) / DEVIATIONS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else None


def messages(found: list[dict] | None) -> list[str]:
    return [str(d.get("message", "")) for d in found or [] if d.get("message")]


def blocks_reproduction(found: list[dict] | None) -> bool:
    """Whether these deviations make a run something other than the published setting (notes do not)."""
    return any(d.get("severity") != "note" for d in found or [])


__all__ = ["DEVIATIONS_FILE", "Deviation", "Published", "blocks_reproduction", "check", "messages", "published_of",
           "read", "write"]
