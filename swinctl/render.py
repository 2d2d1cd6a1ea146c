"""Recipe -> MMEngine config.

The rendered config inherits the codebase's own component configs (`mmdet::_base_/...`) exactly as the published
Swin configs do, and sets what the recipe says on top: the swinctl backbone, head widths, data, schedule, optimizer,
precision, W&B tracking. The result is dumped, fully resolved, into the run directory, so a run never depends on what
a later mmdet/mmseg release ships. Imports mmengine: call it from jobs and commands, never at CLI start.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmengine.config import Config

from swinctl import trust
from swinctl.recipes import Recipe, RecipeError, dotted_keys, unknown_key_error

WandbMode = Literal["auto", "online", "offline", "disabled"]

# Keys that name or place a run but do not change what it computes: left out of the signature.
_UNSIGNED_KEYS = {"work_dir", "visualizer", "vis_backends", "data_root", "ann_file", "data_prefix", "launcher",
                  "load_from", "resume", "log_level", "custom_imports"}


@dataclass(frozen=True)
class RunContext:
    """Where and under which names a rendered config will run."""

    run_id: str = "preview"
    run_dir: Path | None = None
    group: str | None = None  # W&B group: the sweep's name, or the recipe's
    tags: tuple[str, ...] = ()
    wandb: WandbMode = "auto"


# ---------------------------------------------------------------------------------------------- pieces


def backbone_config(recipe: Recipe) -> dict:
    bb = recipe.model.backbone
    return dict(
        _delete_=True,
        type="swinctl.SwinTransformer",
        embed_dims=bb.embed_dims,
        depths=list(bb.depths),
        num_heads=list(bb.num_heads),
        window_size=bb.window_size,
        mlp_ratio=bb.mlp_ratio,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=bb.drop_path_rate,
        ape=bb.ape,
        patch_norm=bb.patch_norm,
        out_indices=tuple(bb.out_indices),
        frozen_stages=bb.frozen_stages,
        with_cp=bb.with_cp,
        init_cfg=dict(type="Pretrained", checkpoint=bb.pretrained) if bb.pretrained else None,
    )


def schedule_config(recipe: Recipe) -> dict:
    s = recipe.schedule
    if s.by_epoch:
        loop = dict(_delete_=True, type="EpochBasedTrainLoop", max_epochs=s.max_epochs, val_interval=s.val_interval)
    else:
        loop = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=s.max_iters, val_interval=s.val_interval)
    schedulers = []
    if s.warmup_iters:
        schedulers.append(dict(type="LinearLR", start_factor=s.warmup_start_factor, by_epoch=False, begin=0,
                               end=s.warmup_iters))
    if s.policy == "step":
        schedulers.append(dict(type="MultiStepLR", begin=0, end=s.length, by_epoch=s.by_epoch,
                               milestones=list(s.milestones), gamma=s.gamma))
    else:  # poly decays after the warmup, in iterations, as mmseg's Swin configs do
        begin = 0 if s.by_epoch else s.warmup_iters
        schedulers.append(dict(type="PolyLR", eta_min=s.eta_min, power=s.power, begin=begin, end=s.length,
                               by_epoch=s.by_epoch))
    return dict(
        train_cfg=loop,
        param_scheduler=schedulers,
        default_hooks=dict(
            checkpoint=dict(by_epoch=s.by_epoch, interval=s.checkpoint_interval),
            logger=dict(interval=s.log_interval),
        ),
        log_processor=dict(by_epoch=s.by_epoch),
    )


def optimizer_config(recipe: Recipe) -> dict:
    o, p = recipe.optimizer, recipe.precision
    if o.type == "AdamW":
        optimizer = dict(type="AdamW", lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    else:
        optimizer = dict(type="SGD", lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    wrapper: dict[str, Any] = dict(
        _delete_=True,
        type="AmpOptimWrapper" if p.amp else "OptimWrapper",
        optimizer=optimizer,
        paramwise_cfg=dict(custom_keys={key: dict(decay_mult=0.0) for key in o.no_decay}),
    )
    if p.amp and p.loss_scale is not None:
        # A float starts dynamic scaling at that value, like mmcv 1.x's fp16 = dict(loss_scale=dict(init_scale=512)).
        wrapper["loss_scale"] = "dynamic" if p.loss_scale == "dynamic" else dict(init_scale=float(p.loss_scale))
    if o.clip_grad:
        wrapper["clip_grad"] = dict(max_norm=o.clip_grad, norm_type=2)
    return dict(optim_wrapper=wrapper)


def precision_config(recipe: Recipe, base: Config) -> dict:
    """For a recipe that keeps its base config's optimizer: only the precision, where it differs from the base's."""
    p = recipe.precision
    amp = (base.get("optim_wrapper") or {}).get("type") == "AmpOptimWrapper"
    if p.amp == amp and p.loss_scale is None:
        return {}
    if not p.amp:  # the base's wrapper without AMP's own arguments, which OptimWrapper does not take
        wrapper = {k: v for k, v in base.optim_wrapper.to_dict().items() if k not in ("loss_scale", "dtype")}
        return dict(optim_wrapper=dict(wrapper, type="OptimWrapper", _delete_=True))
    patch: dict[str, Any] = dict(type="AmpOptimWrapper")
    if p.loss_scale is not None:
        patch["loss_scale"] = "dynamic" if p.loss_scale == "dynamic" else dict(init_scale=float(p.loss_scale))
    return dict(optim_wrapper=patch)


def data_config(recipe: Recipe) -> dict:
    d = recipe.data
    root = str(Path(d.root).expanduser().absolute())
    # (the datasets' own data_root moves with `_reroot`, wherever a wrapper such as RepeatDataset nests them)
    loader = {} if d.num_workers is None else dict(num_workers=d.num_workers, persistent_workers=d.num_workers > 0)
    return dict(
        data_root=root,
        train_dataloader=dict(batch_size=d.batch_size, **loader),
        val_dataloader=dict(batch_size=d.val_batch_size, **loader),
        test_dataloader=dict(batch_size=d.val_batch_size, **loader),
    )


def _reroot(cfg: Config, root: str) -> None:
    """Every path the base config builds from its data root (evaluators' annotation files, panoptic PNG folders)
    moved under the recipe's root, made absolute so a SLURM job can start in any directory (in place)."""
    old = cfg.get("data_root")
    if not isinstance(old, str) or not old:
        return
    old = old.rstrip("/") + "/"

    def move(node: Any) -> Any:
        if isinstance(node, str) and (node == old.rstrip("/") or node.startswith(old)):
            return os.path.join(root, node[len(old):]) if len(node) > len(old) else root
        # only moved strings are assigned: a ConfigDict assignment costs more than the whole walk
        if isinstance(node, dict):
            for key, value in node.items():
                if (moved := move(value)) is not value:
                    node[key] = moved
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if (moved := move(value)) is not value:
                    node[i] = moved
        return node

    for key in list(cfg.keys()):
        if key != "data_root" and (moved := move(cfg[key])) is not cfg[key]:
            cfg[key] = moved


def _rewire_channels(cfg: Config, recipe: Recipe) -> dict:
    """The model's `in_channels` that read the base config's Swin stages, pointed at the recipe's stages.

    A zoo config wires its neck or head to its own Swin by width: the lists `in_channels=[96, 192, 384, 768]`
    (the stages at `out_indices`) and UPerNet-style auxiliary heads' `in_channels=384` (one stage). Which key holds
    them differs per architecture (neck, neck.0, panoptic_head, decode_head.kernel_generate_head, ...), so they are
    found by value: written by hand because no library knows which numbers of a config are backbone widths.
    """
    base = cfg.model.backbone
    old_all = [base.embed_dims * 2**i for i in range(len(base.depths))]
    old = [old_all[i] for i in base.get("out_indices", range(len(old_all)))]
    bb = recipe.model.backbone
    new_all = bb.stage_channels()
    new = [new_all[i] for i in bb.out_indices]
    if old == new:
        return {}

    def walk(node: Any, auxiliary: bool) -> Any:
        if isinstance(node, dict):
            patch = {}
            for key, value in node.items():
                if key == "in_channels" and isinstance(value, (list, tuple)) and list(value) == old:
                    patch[key] = type(value)(new)
                elif key == "in_channels" and auxiliary and isinstance(value, int) and value in old_all:
                    patch[key] = new_all[old_all.index(value)]
                elif isinstance(value, (dict, list)):
                    sub = walk(value, auxiliary or key == "auxiliary_head")
                    if sub:
                        patch[key] = sub
            return patch
        if isinstance(node, list):  # e.g. an FPN + DyHead neck: patched by index
            patch = {str(i): sub for i, v in enumerate(node) if (sub := walk(v, auxiliary))}
            return patch
        return {}

    model = {k: v for k, v in cfg.model.to_dict().items() if k != "backbone"}
    return walk(model, False)


def model_config(recipe: Recipe, base: Config) -> dict:
    if recipe.inherits_reference:  # the reference config's model with our Swin in it, wired to its widths
        model: dict[str, Any] = dict(backbone=backbone_config(recipe), **_rewire_channels(base, recipe))
        if base.model.get("pretrained"):  # mmseg's legacy field would hand the checkpoint to the backbone again
            model["pretrained"] = None
        for key in ("num_classes", "decode_channels"):
            if getattr(recipe.model, key):
                raise RecipeError(f"recipe '{recipe.name}': model.{key} is for the seed recipes' heads; a zoo "
                                  "recipe sets its head as config keys (`swinctl show RECIPE --config` lists them)")
    else:
        channels = recipe.model.backbone.stage_channels()
        model = dict(backbone=backbone_config(recipe))
        if recipe.codebase == "mmdet":
            model["neck"] = dict(in_channels=channels)
            if recipe.model.num_classes:
                model["roi_head"] = dict(bbox_head=dict(num_classes=recipe.model.num_classes),
                                         mask_head=dict(num_classes=recipe.model.num_classes))
        else:
            decode = dict(in_channels=channels)
            auxiliary = dict(in_channels=channels[2])
            if recipe.model.num_classes:
                decode["num_classes"] = auxiliary["num_classes"] = recipe.model.num_classes
            if recipe.model.decode_channels:
                decode["channels"] = recipe.model.decode_channels
            model.update(decode_head=decode, auxiliary_head=auxiliary)
    preprocessor, top = _canvas_config(base, recipe)
    if preprocessor:
        model["data_preprocessor"] = preprocessor
    return dict(model=model, **top)


def _canvas_config(base: Config, recipe: Recipe) -> tuple[dict, dict]:
    """The data preprocessor's fixed input size (mmseg's `size`, mmdet's BatchFixedSizePad) at the crop size: the
    model's preprocessor patch and the top-level variable's."""
    crop = recipe.data.crop_size
    preprocessor = base.model.get("data_preprocessor") or {}
    if not crop:
        return {}, {}
    out: dict[str, Any] = {}
    if "size" in preprocessor or recipe.codebase == "mmseg":  # mmseg pads every training batch to it
        out["size"] = tuple(crop)
    augments = preprocessor.get("batch_augments") or []
    if any(a.get("type") == "BatchFixedSizePad" for a in augments):
        out["batch_augments"] = [dict(a, size=tuple(crop)) if a.get("type") == "BatchFixedSizePad" else a
                                 for a in augments]
    # the base config's top-level variable too, so configs that reuse it see the same size
    top = dict(data_preprocessor=dict(size=tuple(crop))) if recipe.codebase == "mmseg" else {}
    return out, top


def wandb_mode(requested: WandbMode) -> str:
    """`auto` is online only where a W&B login is configured (key in the environment or ~/.netrc)."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE") in ("online", "offline", "disabled"):
        return os.environ["WANDB_MODE"]
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
    return "online" if logged_in else "offline"


def tracking_config(recipe: Recipe, ctx: RunContext) -> dict:
    backends: list[dict] = [dict(type="LocalVisBackend")]
    mode = wandb_mode(ctx.wandb)
    if mode != "disabled":
        init = dict(
            project=recipe.tracking.project,
            group=ctx.group or recipe.name,
            name=ctx.run_id,
            job_type="train",
            tags=list(dict.fromkeys([*recipe.tracking.tags, *ctx.tags])),
            mode=mode,
        )
        if recipe.tracking.entity:
            init["entity"] = recipe.tracking.entity
        if ctx.run_dir is not None:
            init["dir"] = str(ctx.run_dir)
        backends.append(dict(type="WandbVisBackend", init_kwargs=init))
    return dict(vis_backends=backends, visualizer=dict(vis_backends=backends))


def _resize_pipelines(cfg: Config, recipe: Recipe) -> None:
    """Point the base pipelines' resize, mosaic, crop and pad steps at the recipe's sizes (in place)."""
    scale, crop = recipe.data.scale, recipe.data.crop_size
    if scale is None and crop is None:
        return

    def fix(pipeline: list) -> None:
        for step in pipeline:
            kind = step.get("type")
            if scale and kind in ("Resize", "RandomResize") and "scale" in step:
                ranged = isinstance(step["scale"], list) and step.get("ratio_range") is None
                step["scale"] = [tuple(scale)] * len(step["scale"]) if ranged else tuple(scale)
            if scale and kind == "RandomChoiceResize":
                step["scales"] = [tuple(scale)]
            if scale and "img_scale" in step:  # Mosaic, MixUp and their cached forms
                step["img_scale"] = tuple(scale)
            if crop and kind == "RandomCrop":
                step["crop_size"] = tuple(crop)
            if crop and kind == "Pad" and "size" in step:
                step["size"] = tuple(crop)
            for nested in step.get("transforms", []) if isinstance(step.get("transforms"), list) else []:
                fix(nested if isinstance(nested, list) else [nested])

    # train_pipeline, test_pipeline and variants such as RTMDet's train_pipeline_stage2
    for key in [k for k in cfg.keys() if k.endswith("pipeline") or k.startswith("train_pipeline")]:
        if isinstance(cfg[key], list):
            fix(cfg[key])
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset = cfg.get(loader, {}).get("dataset", {})
        while "dataset" in dataset and "pipeline" not in dataset:  # wrappers: RepeatDataset, ConcatDataset, ...
            dataset = dataset["dataset"]
        if "pipeline" in dataset:
            fix(dataset["pipeline"])
    for hook in cfg.get("custom_hooks", []):
        if hook.get("type") == "PipelineSwitchHook":  # RTMDet's last-epochs pipeline
            fix(hook["switch_pipeline"])
    if crop and "crop_size" in cfg:
        cfg["crop_size"] = tuple(crop)


# ---------------------------------------------------------------------------------------------- the whole config


@functools.lru_cache(maxsize=16)
def _base_config(bases: tuple[str, ...]) -> Config:
    """The codebase's base configs, parsed once per process: most of a render's time (a sweep renders many)."""
    return Config.fromstring(f"_base_ = {list(bases)!r}\n", file_format=".py")


def render(recipe: Recipe, ctx: RunContext = RunContext(), config_overrides: list[tuple[str, Any]] = ()) -> Config:
    """The resolved MMEngine config of `recipe`, with `config_overrides` (dotted keys) applied last."""
    cfg = copy.deepcopy(_base_config(tuple(recipe.bases)))
    cfg.merge_from_dict(model_config(recipe, cfg))
    _reroot(cfg, str(Path(recipe.data.root).expanduser().absolute()))
    cfg.merge_from_dict(data_config(recipe))
    if recipe.schedule is not None:
        cfg.merge_from_dict(schedule_config(recipe))
    cfg.merge_from_dict(optimizer_config(recipe) if recipe.optimizer is not None else precision_config(recipe, cfg))
    cfg.merge_from_dict(tracking_config(recipe, ctx))
    _resize_pipelines(cfg, recipe)
    # the base configs' own imports (trusted: they come from the codebases) and swinctl's backbone
    imports = cfg.get("custom_imports", {}).get("imports", [])
    imports = [imports] if isinstance(imports, str) else list(imports)  # mmseg's Mask2Former names one module bare
    cfg.merge_from_dict(dict(
        custom_imports=dict(imports=list(dict.fromkeys([*imports, "swinctl.models"])), allow_failed_imports=False)))
    if "auto_scale_lr" not in cfg:  # (mmseg's configs have none) disabled: the guard turns it on where it applies
        cfg.merge_from_dict(dict(auto_scale_lr=dict(enable=False, base_batch_size=_published_batch(recipe))))
    if recipe.seed is not None:
        cfg.merge_from_dict(dict(randomness=dict(seed=recipe.seed)))
    if recipe.config:
        apply_config_overrides(cfg, list(recipe.config.items()), where="recipe's config section")
    if config_overrides:
        apply_config_overrides(cfg, list(config_overrides))
    _rename_custom_keys(cfg)
    return cfg


def _published_batch(recipe: Recipe) -> int:
    r = recipe.resources
    return r.gpus * recipe.data.batch_size if r.gpus else 16


def _rename_custom_keys(cfg: Config) -> None:
    """`paramwise_cfg.custom_keys` that name mmdet's Swin modules (`backbone.stages.0.blocks.1.norm`), renamed to
    swinctl's (`backbone.layers.0.blocks.1.norm`) so they give the same tensors the same lr and decay (in place)."""
    from swinctl.param_names import translate_custom_keys

    keys = ((cfg.get("optim_wrapper") or {}).get("paramwise_cfg") or {}).get("custom_keys")
    if not keys:
        return
    try:
        renamed = translate_custom_keys(keys.to_dict() if hasattr(keys, "to_dict") else dict(keys))
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    if list(renamed) != list(keys):
        cfg.optim_wrapper.paramwise_cfg.custom_keys = renamed


def config_keys(cfg: Config | dict) -> list[str]:
    return dotted_keys(cfg.to_dict() if isinstance(cfg, Config) else cfg, lists=True)


def _has_key(cfg: Config, key: str) -> bool:
    node: Any = cfg
    for i, part in enumerate(key.split(".")):
        if (isinstance(node, dict) or i == 0) and part in node:  # (Config is not a dict, but answers `in` and [])
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def apply_config_overrides(cfg: Config, items: list[tuple[str, Any]], where: str = "rendered config") -> None:
    """Set existing dotted keys of `cfg` (list items by index: `param_scheduler.1.milestones`); keys and values
    that would make MMEngine import or execute something are refused (`trust.check_config_item`)."""
    for key, value in items:
        try:
            trust.check_config_item(key, value)
        except trust.UntrustedInput as exc:
            raise RecipeError(f"{exc} (in the {where})") from None
        if not _has_key(cfg, key):
            raise unknown_key_error(key, config_keys(cfg), where)
        try:
            cfg.merge_from_dict({key: value}, allow_list_keys=True)
        except (TypeError, KeyError) as exc:  # e.g. a mapping onto a value that is not one (`_delete_: true` fixes)
            raise RecipeError(f"config key '{key}' (in the {where}): {exc.args[0] if exc.args else exc}") from None


def signature_payload(cfg: Config | dict, world_size: int = 1) -> str:
    """What `signature` hashes: the config (or its `to_dict()`) as sorted JSON, less the keys that name or place
    a run, with the world size where it is not 1."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in sorted(node.items()) if k not in _UNSIGNED_KEYS}
        if isinstance(node, (list, tuple)):
            return [strip(v) for v in node]
        return node

    computed = strip(cfg.to_dict() if isinstance(cfg, Config) else cfg)
    if world_size != 1:  # single-process runs keep the hashes they had before the world size counted
        computed["world_size"] = world_size
    return json.dumps(computed, sort_keys=True, default=str)


def digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def signature(cfg: Config | dict, world_size: int = 1) -> str:
    """A stable hash of what a config (or its `to_dict()`, when already made) trained by `world_size` processes
    computes (the total batch is per-GPU batch x processes), blind to run names and file locations."""
    return digest(signature_payload(cfg, world_size))


# Tests: write this file and wait for a signal while rendering the config text (a Ctrl-C that lands mid-render).
PAUSE_RENDERING = "SWINCTL_TEST_PAUSE_RENDERING"


def to_text(cfg: Config) -> str:
    if os.environ.get(PAUSE_RENDERING):
        Path(os.environ[PAUSE_RENDERING]).write_text(str(os.getpid()))
        while True:
            time.sleep(0.1)
    try:
        return cfg.pretty_text
    except SyntaxError as exc:  # MMEngine formats with yapf under a bare `except:`, which turns Ctrl-C into this
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise


def write(cfg: Config, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(path))
    return path


__all__ = ["RunContext", "render", "signature", "write", "apply_config_overrides", "config_keys", "RecipeError"]
