"""Rendering: each recipe's config equals the published config shipped inside mmdet/mmseg, field by field,
except for the differences listed here with their reasons."""

from __future__ import annotations

import fnmatch

import pytest
from references import reference_config

from swinctl import recipes, render
from swinctl.param_names import translate_custom_keys
from swinctl.recipes import RecipeError

# Every field where a rendered recipe may differ from the published config, and why.
ALLOWED = {
    "model.backbone.type": "ours: swinctl.SwinTransformer instead of the codebase's own SwinTransformer",
    "model.backbone.convert_weights": "ours detects the checkpoint layout itself (official, MMDet, timm)",
    "model.backbone.ape": "ours names the absolute position embedding flag `ape` (False in both)",
    "model.backbone.use_abs_pos_embed": "mmseg's name for `ape`",
    "model.backbone.frozen_stages": "ours states the default (-1, nothing frozen) explicitly",
    "model.backbone.init_cfg.checkpoint": "the official ImageNet-1k Swin-T weights (mmseg ships a converted copy)",
    "model.backbone.pretrain_img_size": "mmseg-only argument; ours pads any input size and resizes bias tables",
    "model.backbone.patch_size": "mmseg states ours' fixed default (4)",
    "model.backbone.strides": "mmseg states ours' fixed default (4, 2, 2, 2)",
    "model.backbone.act_cfg*": "mmseg states ours' fixed default (GELU)",
    "model.backbone.norm_cfg*": "mmseg states ours' fixed default (LayerNorm)",
    "model.backbone.with_cp": "ours states the default (False) explicitly for mmseg",
    "model.pretrained": "mmseg's legacy field (None); weights come from the backbone's init_cfg",
    "custom_imports*": "ours: imports swinctl.models so the config builds swinctl.SwinTransformer",
    "data_root": "ours: the recipe's data root, made absolute so SLURM jobs run from any directory",
    "*.data_root": "as data_root",
    "*.ann_file": "absolute path under the recipe's data root",
    "*.seg_prefix": "the panoptic PNG folder: absolute, under the recipe's data root",
    "vis_backends*": "ours: Weights & Biases next to the local backend",
    "visualizer.vis_backends*": "as vis_backends",
    "default_hooks.checkpoint.by_epoch": "ours states the loop's unit explicitly",
    "log_processor.by_epoch": "ours states the loop's unit explicitly",
    "auto_scale_lr*": "only where the published config has none (mmseg's): ours adds MMEngine's rule, disabled, "
                      "at the published total batch (the guard enables it when a run's batch differs)",
    "train_cfg._delete_": "merge marker",
    "max_epochs": "a local variable of the published file; its value is in train_cfg and param_scheduler",
    "pretrained": "a local variable of the published file; its value is in model.backbone.init_cfg",
    "checkpoint_file": "a local variable of the published file; its value is in model.backbone.init_cfg",
    "*._scope_": "package-scoped bases (mmdet::, mmseg::) tag their dicts with the registry scope the "
                 "published config gets from default_scope",
}
# The FP16 recipe reproduces the 1x config with mixed precision.
ALLOWED_FP16 = {
    "optim_wrapper.type": "AmpOptimWrapper: mixed precision",
    "optim_wrapper.loss_scale*": "dynamic loss scaling starting at 512, as in the original FP16 runs",
}


def _flatten(node, prefix="") -> dict:
    out = {}
    if isinstance(node, dict):
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(node, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in node):
        for i, value in enumerate(node):
            out.update(_flatten(value, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = list(node) if isinstance(node, tuple) else node
    return out


def _differences(name: str) -> list[str]:
    recipe = recipes.load_recipe(name)
    ours = _flatten(render.render(recipe, render.RunContext(wandb="offline")).to_dict())
    reference = reference_config(recipe).to_dict()
    keys = reference.get("optim_wrapper", {}).get("paramwise_cfg", {}).get("custom_keys")
    if keys:  # mmdet's Swin module names become swinctl's (test_optimizer_equivalence checks each tensor's lr/wd)
        reference["optim_wrapper"]["paramwise_cfg"]["custom_keys"] = translate_custom_keys(keys)
    theirs = _flatten(reference)
    allowed = {**ALLOWED, **(ALLOWED_FP16 if recipe.precision.amp else {})}
    if "auto_scale_lr" in reference:
        allowed.pop("auto_scale_lr*")
    problems = []
    for key in sorted(set(ours) | set(theirs)):
        if any(fnmatch.fnmatch(key, pattern) for pattern in allowed):
            continue
        a, b = ours.get(key, "<absent>"), theirs.get(key, "<absent>")
        if a != b:
            problems.append(f"{key}: rendered {a!r} != published {b!r}")
    return problems


ZOO = sorted(name for name, path in recipes.available().items() if path.parent.name == "zoo")


@pytest.mark.parametrize("name", ["maskrcnn-swin-t", "maskrcnn-swin-t-fp16", "upernet-swin-t", *ZOO])
def test_rendered_config_matches_the_published_one(name):
    assert _differences(name) == []


def test_the_zoo_is_every_swin_model_of_both_metafiles():
    # 17 MMDetection and 20 MMSegmentation entries: 35 zoo recipes and the two seed recipes that stand for theirs
    assert len(ZOO) == 35
    by_codebase = [recipes.load_recipe(name).codebase for name in ZOO]
    assert (by_codebase.count("mmdet"), by_codebase.count("mmseg")) == (16, 19)


def test_the_comparison_catches_a_changed_hyper_parameter(monkeypatch):
    original = recipes.load_recipe

    def tweaked(ref):
        recipe = original(ref)
        return recipes.apply_recipe_overrides(recipe, [("optimizer.weight_decay", 0.1)])

    monkeypatch.setattr(recipes, "load_recipe", tweaked)
    assert _differences("maskrcnn-swin-t") == ["optim_wrapper.optimizer.weight_decay: rendered 0.1 != published 0.05"]


def test_rendered_backbone_is_swinctls_and_weights_load_from_the_official_checkpoint():
    cfg = render.render(recipes.load_recipe("upernet-swin-t"))
    backbone = cfg.model.backbone
    assert backbone.type == "swinctl.SwinTransformer"
    assert backbone.drop_path_rate == 0.3
    assert cfg.custom_imports.imports == ["swinctl.models"]
    assert cfg.model.decode_head.in_channels == [96, 192, 384, 768]
    assert cfg.model.auxiliary_head.in_channels == 384


def test_wandb_backend_follows_the_run(tmp_path):
    ctx = render.RunContext(run_id="r1", run_dir=tmp_path, group="lr-sweep", tags=("smoke",), wandb="offline")
    cfg = render.render(recipes.load_recipe("maskrcnn-swin-t"), ctx)
    wandb = [b for b in cfg.visualizer.vis_backends if b.type == "WandbVisBackend"]
    assert len(wandb) == 1
    init = wandb[0].init_kwargs
    assert (init.project, init.group, init.name, init.mode, init.dir) == ("swinctl", "lr-sweep", "r1", "offline",
                                                                         str(tmp_path))
    assert "smoke" in init.tags and "maskrcnn" in init.tags
    disabled = render.render(recipes.load_recipe("maskrcnn-swin-t"), render.RunContext(wandb="disabled"))
    assert [b.type for b in disabled.visualizer.vis_backends] == ["LocalVisBackend"]


def test_wandb_auto_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert render.wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert render.wandb_mode("auto") == "online"
    assert render.wandb_mode("disabled") == "disabled"


def test_config_overrides_set_existing_keys_and_reject_unknown_ones():
    recipe = recipes.load_recipe("maskrcnn-swin-t")
    cfg = render.render(recipe, config_overrides=[("optim_wrapper.optimizer.lr", 3e-4),
                                                  ("param_scheduler.1.milestones", [9, 11])])
    assert cfg.optim_wrapper.optimizer.lr == 3e-4
    assert cfg.param_scheduler[1].milestones == [9, 11]
    with pytest.raises(RecipeError, match="unknown key 'optim_wrapper.optimizer.lrr'.*optim_wrapper.optimizer.lr"):
        render.render(recipe, config_overrides=[("optim_wrapper.optimizer.lrr", 1)])


def test_signature_ignores_names_and_paths_but_not_hyper_parameters(tmp_path):
    recipe = recipes.load_recipe("maskrcnn-swin-t")
    a = render.signature(render.render(recipe, render.RunContext(run_id="a", run_dir=tmp_path / "a")))
    b = render.signature(render.render(recipe.model_copy(update={"data": recipe.data.model_copy(
        update={"root": "/elsewhere/coco"})}), render.RunContext(run_id="b", run_dir=tmp_path / "b", wandb="disabled")))
    c = render.signature(render.render(recipes.apply_recipe_overrides(recipe, [("optimizer.lr", 2e-4)])))
    assert a == b
    assert a != c
    cfg = render.render(recipe)
    assert render.signature(cfg, world_size=8) != render.signature(cfg, world_size=16)  # the total batch differs
