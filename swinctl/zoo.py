"""The Swin zoo: every Swin-backbone model of the installed MMDetection and MMSegmentation metafiles as a recipe.

`python -m swinctl.zoo --write` (re)writes `recipes/zoo/*.yaml` from the metafiles and reference configs shipped
inside mmdet and mmseg (`.mim/configs/*/metafile.y*ml`); `--check` exits non-zero when a committed file differs from
what it would write, or a seed recipe lacks its entry's metafile numbers. The recipes are committed rather than
generated at run time: the CLI reads YAML at start without importing mmengine, and a review shows what a new
codebase release changes. A zoo recipe inherits its reference config whole (`bases: [<codebase>::<reference>]`):
it states the Swin (swinctl's), the data root and batch, and the published resources and numbers; the schedule
and optimizer stay the reference config's own.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from swinctl.recipes import RECIPES_DIR, Recipe, available, load_recipe, validate

ZOO_DIR = RECIPES_DIR / "zoo"
PACKAGES = {"mmdet": "mmdet", "mmseg": "mmsegmentation"}
# Grounding (text-conditioned) and video models are other tasks with other data: not reproduced here.
EXCLUDED_DIRS = {"glip", "grounding_dino", "mm_grounding_dino", "mask2former_vis"}
METRICS = {"box AP": "bbox_mAP", "mask AP": "segm_mAP", "PQ": "PQ", "mIoU": "mIoU", "mIoU(ms+flip)": "mIoU_ms_flip"}
DATASETS = {"CocoDataset": "coco", "CocoPanopticDataset": "coco_panoptic", "ADE20KDataset": "ade20k",
            "CityscapesDataset": "cityscapes"}
TASKS = {"Object Detection": "detection", "Instance Segmentation": "instance", "Panoptic Segmentation": "panoptic",
         "Semantic Segmentation": "semantic"}
# The swinctl backbone's fixed arguments: a reference Swin that sets them otherwise cannot be reproduced by it.
_FIXED = dict(qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, patch_size=4)

# What every zoo smoke run changes: a one-block-per-stage Swin on 128x128 demo images, no GPU, no workers.
_SMOKE_SET = {
    "model.backbone.embed_dims": 16,
    "model.backbone.depths": [1, 1, 1, 1],
    "model.backbone.num_heads": [1, 2, 4, 8],
    "model.backbone.window_size": 4,
    "model.backbone.drop_path_rate": 0.1,
    "model.backbone.with_cp": False,
    "model.backbone.pretrained": None,
    "data.scale": [128, 128],
    "data.crop_size": [128, 128],
    "data.batch_size": 2,
    "data.num_workers": 0,
    "resources.gpus": 0,
    "resources.gpus_per_node": 0,
    "resources.nodes": 1,
    "resources.cpus_per_task": 2,
    "resources.mem_gb": 6,
    "resources.time_limit": "00:30:00",
}


def _smoke_set(backbone: dict) -> dict[str, Any]:
    """`_SMOKE_SET` for a backbone of any number of stages (RTMDet's P6 Swin has five)."""
    stages = len(backbone["depths"])
    return {**_SMOKE_SET, "model.backbone.depths": [1] * stages,
            "model.backbone.num_heads": [2**i for i in range(stages)]}


@dataclass(frozen=True)
class Family:
    """An architecture of the zoo: its recipe names' prefix and what its smoke run shrinks (config keys)."""

    prefix: str
    title: str
    smoke_config: dict[str, Any] = field(default_factory=dict)


def _short(length: str, n: int, **extra: Any) -> dict[str, Any]:
    """A smoke schedule: `n` epochs or iterations (`length` is the loop's max_epochs or max_iters), validated and
    checkpointed once at the end, logged every 2 iterations, with the family's `extra` config keys."""
    return {f"train_cfg.{length}": n, "train_cfg.val_interval": n, "default_hooks.checkpoint.interval": n,
            "default_hooks.logger.interval": 2, **extra}


def _epochs(n: int, **extra: Any) -> dict[str, Any]:
    return _short("max_epochs", n, **extra)


def _iters(n: int, **extra: Any) -> dict[str, Any]:
    return _short("max_iters", n, **extra)


FAMILIES: dict[tuple[str, str], Family] = {
    # an untrained tiny model scores below the usual 0.05: keep its boxes so COCO evaluation has detections; fewer
    # proposals for 128x128 images with at most three objects
    ("mmdet", "swin"): Family("maskrcnn", "Mask R-CNN", _epochs(1, **{
        "model.test_cfg.rcnn.score_thr": 0.0, "model.train_cfg.rpn_proposal.max_per_img": 200,
        "model.test_cfg.rpn.max_per_img": 100, "model.train_cfg.rcnn.sampler.num": 128})),
    # the PAFPN's GroupNorm(32) needs 32 channels where the tiny Swin's halved stages have 16
    ("mmdet", "rtmdet"): Family("rtmdet", "RTMDet-L", _epochs(1, **{"model.neck.norm_cfg.num_groups": 8})),
    # 900 queries and 6+6 deformable layers take a minute a CPU epoch: 100 queries and 2+2 layers
    ("mmdet", "dino"): Family("dino", "DINO", _epochs(1, **{"model.num_queries": 100, "model.encoder.num_layers": 2,
                                                           "model.decoder.num_layers": 2})),
    ("mmdet", "dyhead"): Family("atss-dyhead", "ATSS + DyHead", _epochs(1, **{
        "model.test_cfg.score_thr": 0.0, "model.neck.1.num_blocks": 1})),  # 1 DyHead block of 6: 4x faster on CPU
    ("mmdet", "maskformer"): Family("maskformer", "MaskFormer", _epochs(1)),
    # its instance results are the top 100 of queries x classes that are things: an untrained panoptic model's top
    # 100 can all be stuff, which leaves CocoMetric nothing to score
    ("mmdet", "mask2former"): Family("mask2former", "Mask2Former", _iters(8, **{"model.test_cfg.max_per_image": 300})),
    ("mmseg", "swin"): Family("upernet", "UPerNet", _iters(8)),
    ("mmseg", "knet"): Family("knet", "K-Net + UPerNet", _iters(8)),
    ("mmseg", "mask2former"): Family("mask2former", "Mask2Former", _iters(8)),
    ("mmseg", "maskformer"): Family("maskformer", "MaskFormer", _iters(8)),
}


# One recipe of each architecture family and the metrics its codebase's evaluator logs for it: what the family smoke
# test (tests/test_zoo.py) and benchmarks/zoo_smoke.py run on the demo data.
FAMILY_SMOKES = {
    "maskrcnn-swin-t-ms-crop-3x-coco": ("bbox_mAP", "segm_mAP"),
    "rtmdet-l-swin-b-100e-coco": ("bbox_mAP",),
    "dino-swin-l-12e-coco": ("bbox_mAP",),
    "atss-dyhead-swin-l-ms-2x-coco": ("bbox_mAP",),
    "maskformer-swin-l-ms-300e-coco-panoptic": ("PQ", "SQ", "RQ"),
    "maskformer-swin-t-upernet-160k-ade20k-512x512": ("mIoU",),
    "mask2former-swin-t-lsj-50e-coco": ("bbox_mAP", "segm_mAP"),
    "mask2former-swin-t-lsj-50e-coco-panoptic": ("PQ",),  # (and box/mask mAP of its instance results)
    "mask2former-swin-t-90k-cityscapes-512x1024": ("mIoU",),
    "knet-s3-swin-t-upernet-adamw-80k-ade20k-512x512": ("mIoU",),
    "upernet-swin-s-in1k-160k-ade20k-512x512": ("mIoU",),
}


@dataclass(frozen=True)
class Entry:
    """One metafile model: its codebase, reference config (relative to .mim/configs) and published results."""

    codebase: str
    config: str
    metafile: str
    results: list[dict]
    metadata: dict
    version: str
    weights: str | None = None  # the released checkpoint (the metafile's `Weights` URL)

    @property
    def directory(self) -> str:
        return self.config.split("/", 1)[0]

    @property
    def stem(self) -> str:
        return Path(self.config).stem


def _configs_root(codebase: str) -> Path:
    from mim.utils import get_installed_path

    return Path(get_installed_path(PACKAGES[codebase])) / ".mim" / "configs"


def _version(codebase: str) -> str:
    from importlib.metadata import version

    return version(PACKAGES[codebase])


@functools.cache
def load_config(codebase: str, config: str):
    """A reference config, parsed once per process (entries() and zoo_recipe() both read it; nothing mutates it)."""
    from mmengine.config import Config

    return Config.fromfile(str(_configs_root(codebase) / config))


def entries() -> list[Entry]:
    """Every metafile entry of the installed codebases whose reference config has a Swin backbone."""
    found = []
    for codebase in PACKAGES:
        root = _configs_root(codebase)
        for metafile in sorted(root.glob("*/metafile.y*ml")):
            if metafile.parent.name in EXCLUDED_DIRS:
                continue
            data = yaml.safe_load(metafile.read_text()) or {}
            for model in data.get("Models", []) if isinstance(data, dict) else data:
                config = str(model.get("Config", "")).removeprefix("configs/")
                if "swin" not in config or not (root / config).is_file():
                    continue
                backbone = load_config(codebase, config).model.get("backbone", {})
                if "SwinTransformer" not in str(backbone.get("type", "")):
                    continue
                results = model.get("Results") or []
                found.append(Entry(codebase, config, f"{metafile.parent.name}/{metafile.name}",
                                   [results] if isinstance(results, dict) else list(results),
                                   model.get("Metadata") or {}, _version(codebase),
                                   str(model["Weights"]) if model.get("Weights") else None))
    return found


# ---------------------------------------------------------------------------------------------- one recipe


_NAME_RULES = [  # applied in order to the config's file name, '_' read as '-'
    (r"swin-(t)iny|swin-(s)mall|swin-(b)ase|swin-(l)arge", lambda m: "swin-" + next(g for g in m.groups() if g)),
    (r"^mask-rcnn", "maskrcnn"),
    (r"-patch4|-p4|-window\d+|-w\d+(?=-|$)|-fpn(?=-|$)|-\d+xb\d+|-224(?=-|$)|-pre(?=-|$)|-5scale", ""),
    (r"-384x384", "-384"),
    (r"-in21k", "-in22k"),  # the ImageNet-22k weights: mmdet's file names say in21k, mmseg's in22k
    (r"-384-in22k", "-in22k-384"),
    (r"^swin-(.*)-upernet", r"upernet-swin-\1"),
    (r"^rtmdet-l-swin", "rtmdet-l-swin"),
    (r"^atss-swin-l-dyhead", "atss-dyhead-swin-l"),
]


def recipe_name(entry: Entry, task: str) -> str:
    name = entry.stem.replace("_", "-")
    for pattern, repl in _NAME_RULES:
        name = re.sub(pattern, repl, name)
    if task == "panoptic" and not name.endswith("panoptic"):
        name += "-panoptic"
    return name


def _task(entry: Entry) -> str:
    tasks = [TASKS[r["Task"]] for r in entry.results if r.get("Task") in TASKS]
    for task in ("panoptic", "instance", "semantic", "detection"):  # the richest output the model has
        if task in tasks:
            return task
    raise ValueError(f"{entry.config}: no task this zoo knows in {entry.results}")


def _resources(entry: Entry, per_gpu: int, cfg) -> dict[str, Any]:
    """GPUs from the file name's NxbM (mmseg, newer mmdet), the metafile's 'Training Resources' (8x V100), or
    else the config's linear-scaling base batch (`auto_scale_lr.base_batch_size`) over its per-GPU batch."""
    named = re.search(r"(\d+)xb(\d+)", entry.stem)
    if named:
        gpus = int(named.group(1))
        if int(named.group(2)) != per_gpu:
            raise ValueError(f"{entry.config}: the name says {named.group(0)}, the config {per_gpu} per GPU")
    else:
        stated = re.match(r"(\d+)x", str(entry.metadata.get("Training Resources", "")))
        base = (cfg.get("auto_scale_lr") or {}).get("base_batch_size")
        if not stated and not base:
            raise ValueError(f"{entry.config}: no GPU count in its name, metafile or auto_scale_lr")
        gpus = int(stated.group(1)) if stated else int(base) // per_gpu
    total = entry.metadata.get("Batch Size")
    if total and int(total) != gpus * per_gpu:
        raise ValueError(f"{entry.config}: metafile batch {total} != {gpus} GPUs x {per_gpu}")
    nodes = math.ceil(gpus / 8)
    # time and memory are not published: a day per run on shared A100/V100 nodes, raise for the long schedules
    return dict(gpus=gpus, gpus_per_node=min(gpus, 8), nodes=nodes, cpus_per_task=5, mem_gb=64,
                time_limit="3-00:00:00")


def _backbone(cfg) -> dict[str, Any]:
    bb = cfg.model.backbone
    for key, value in _FIXED.items():
        if key in bb and bb[key] != value:
            raise ValueError(f"backbone {key}={bb[key]!r}: swinctl's Swin has {value!r}")
    init = bb.get("init_cfg") or {}
    pretrained = init.get("checkpoint") if isinstance(init, dict) else None
    return dict(
        embed_dims=bb.embed_dims,
        depths=list(bb.depths),
        num_heads=list(bb.num_heads),
        window_size=bb.window_size,
        mlp_ratio=float(bb.get("mlp_ratio", 4.0)),
        drop_path_rate=float(bb.drop_path_rate),
        ape=bool(bb.get("use_abs_pos_embed", bb.get("ape", False))),
        patch_norm=bool(bb.get("patch_norm", True)),
        out_indices=list(bb.get("out_indices", (0, 1, 2, 3))),
        frozen_stages=int(bb.get("frozen_stages", -1)),
        with_cp=bool(bb.get("with_cp", False)),
        pretrained=pretrained or cfg.model.get("pretrained"),
    )


def _precision(cfg) -> dict[str, Any]:
    wrapper = cfg.get("optim_wrapper") or {}
    if wrapper.get("type") != "AmpOptimWrapper":
        return {}
    scale = wrapper.get("loss_scale")
    out: dict[str, Any] = dict(amp=True)
    if scale == "dynamic" or isinstance(scale, int | float):
        out["loss_scale"] = scale
    elif isinstance(scale, dict) and "init_scale" in scale:
        out["loss_scale"] = scale["init_scale"]
    return out


def _dataset(cfg) -> str:
    dataset = cfg.train_dataloader.dataset
    while "dataset" in dataset and "type" not in dataset or dataset.get("type") in ("RepeatDataset",):
        dataset = dataset["dataset"]
    kind = DATASETS.get(str(dataset.get("type")).split(".")[-1])
    if kind is None:
        raise ValueError(f"dataset type {dataset.get('type')!r} is none of {', '.join(DATASETS)}")
    return kind


def _size(backbone: dict) -> str:
    """T, S, B or L: the Swin variant of a backbone's widths and depths."""
    if backbone["embed_dims"] == 96:
        return "S" if backbone["depths"][2] == 18 else "T"
    return {128: "B", 192: "L"}.get(backbone["embed_dims"], f"{backbone['embed_dims']}d")


def _description(family: Family, task: str, dataset: str, backbone: dict) -> str:
    what = {"detection": "object detection", "instance": "instance segmentation", "panoptic": "panoptic "
            "segmentation", "semantic": "semantic segmentation"}[task]
    names = {"coco": "COCO", "coco_panoptic": "COCO", "ade20k": "ADE20K", "cityscapes": "Cityscapes"}
    return f"{family.title} + Swin-{_size(backbone)}, {names[dataset]} {what}"


def zoo_recipe(entry: Entry) -> dict[str, Any]:
    """The recipe of one zoo entry, as the mapping written to its YAML file."""
    cfg = load_config(entry.codebase, entry.config)
    family = FAMILIES[(entry.codebase, entry.directory)]
    task, dataset = _task(entry), _dataset(cfg)
    backbone = _backbone(cfg)
    per_gpu = int(cfg.train_dataloader.batch_size)
    source = f"{'MMDet' if entry.codebase == 'mmdet' else 'MMSeg'} {entry.version} metafile ({entry.metafile})"
    expected = [dict(metric=METRICS[name], value=float(value), source=source)
                for result in entry.results for name, value in (result.get("Metrics") or {}).items()
                if name in METRICS]
    recipe: dict[str, Any] = dict(
        name=recipe_name(entry, task),
        description=_description(family, task, dataset, backbone),
        codebase=entry.codebase,
        task=task,
        reference_config=entry.config,
        bases=[f"{entry.codebase}::{entry.config}"],
        model=dict(backbone=backbone),
        data=dict(dataset=dataset, root=str(cfg.data_root).rstrip("/"), batch_size=per_gpu, num_workers=None,
                  val_batch_size=int(cfg.val_dataloader.batch_size)),
    )
    if precision := _precision(cfg):
        recipe["precision"] = precision
    recipe.update(
        resources=_resources(entry, per_gpu, cfg),
        tracking=dict(project="swinctl",
                      tags=[family.prefix, f"swin-{_size(backbone).lower()}", dataset.replace("_", "-")]),
        **({"published_weights": entry.weights} if entry.weights else {}),
        expected=expected,
        tolerance=0.5,
        smoke=dict(set=_smoke_set(backbone), config=dict(family.smoke_config)),
    )
    validate(recipe, recipe["name"])  # the generator writes nothing a user's `swinctl run` would refuse
    return recipe


# ---------------------------------------------------------------------------------------------- files


def _text(recipe: dict[str, Any], entry: Entry) -> str:
    head = (f"# Generated by `python -m swinctl.zoo --write` from {entry.codebase} {entry.version}'s "
            f"configs/{entry.metafile}: change the generator\n"
            "# (swinctl/zoo.py), not this file. The schedule and optimizer are the reference config's own.\n")
    return head + yaml.dump(recipe, Dumper=_Dumper, sort_keys=False, width=120)


class _Dumper(yaml.SafeDumper):
    """Short lists of numbers on one line ([2, 2, 6, 2]), as the hand-written recipes have them."""


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=all(isinstance(v, int | float) for v in data)))


def _seed_for(entry: Entry) -> Recipe | None:
    for path in available().values():
        if path.parent == RECIPES_DIR:
            recipe = load_recipe(path)
            if recipe.reference_config == entry.config and recipe.codebase == entry.codebase \
                    and not recipe.precision.amp:
                return recipe
    return None


def plan() -> tuple[dict[Path, str], list[str]]:
    """The zoo files to write, and the problems of the seed recipes that stand for zoo entries."""
    files: dict[Path, str] = {}
    problems: list[str] = []
    for entry in entries():
        recipe = zoo_recipe(entry)
        seed = _seed_for(entry)
        if seed is not None:  # the seed recipe stands for this entry: it must carry the metafile's numbers
            have = {(e.metric, e.value) for e in seed.expected}
            missing = [e for e in recipe["expected"] if (e["metric"], e["value"]) not in have]
            problems += [f"recipes/{seed.name}.yaml lacks the metafile's {e['metric']} {e['value']} "
                         f"({entry.config})" for e in missing]
            if entry.weights and seed.published_weights != entry.weights:
                problems.append(f"recipes/{seed.name}.yaml: published_weights should be the metafile's "
                                f"{entry.weights} ({entry.config})")
            continue
        path = ZOO_DIR / f"{recipe['name']}.yaml"
        if path in files:
            raise ValueError(f"two zoo entries are named {recipe['name']}: extend _NAME_RULES")
        files[path] = _text(recipe, entry)
    return files, problems


def _shown(path: Path) -> str:
    return str(path.relative_to(RECIPES_DIR.parent)) if path.is_relative_to(RECIPES_DIR.parent) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swinctl.zoo", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="(re)write recipes/zoo/*.yaml")
    action.add_argument("--check", action="store_true", help="exit 1 when recipes/zoo/ is not what --write makes")
    args = parser.parse_args(argv)
    files, problems = plan()
    stale = sorted(set(ZOO_DIR.glob("*.yaml")) - set(files))
    if args.write:
        ZOO_DIR.mkdir(parents=True, exist_ok=True)
        for path in stale:
            path.unlink()
        for path, text in files.items():
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
        print(f"{len(files)} zoo recipes in {ZOO_DIR} ({len(stale)} removed)")
    else:
        problems += [f"{_shown(p)}: out of date" for p, t in files.items() if not p.is_file() or p.read_text() != t]
        problems += [f"{_shown(p)}: no zoo entry makes it" for p in stale]
        if not problems:
            print(f"{len(files)} zoo recipes up to date")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
