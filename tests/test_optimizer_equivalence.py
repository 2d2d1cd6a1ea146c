"""Each recipe trains what its reference trains: built, not compared as text.

For every recipe, the reference model and optimizer are built from the config the installed mmdet / mmseg ship, and
swinctl's from the rendered config, both full size on CPU; every parameter must get the same (lr, weight_decay).
Parameter groups are where MMEngine's `custom_keys`, `lr_mult`, `decay_mult`, `norm_decay_mult` and
`bias_decay_mult` act, and a config diff cannot see them: reference keys naming mmdet's Swin modules
(`backbone.stages.0.blocks.1.norm`) matched nothing in swinctl's backbone, so 54-102 norm tensors got weight decay
in 18 recipes while the text was equal.
"""

from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings
from references import reference_config

from swinctl import recipes, render
from swinctl.param_names import mmdet_to_official

RECIPES = sorted(recipes.available())


def _plain_wrapper(cfg: Config) -> dict:
    """The optimizer wrapper config built as OptimWrapper: AMP's wrapper needs a GPU, and its groups are the same."""
    wrapper = cfg.optim_wrapper.to_dict()
    if wrapper.get("type") == "AmpOptimWrapper":
        wrapper = {k: v for k, v in wrapper.items() if k not in ("loss_scale", "dtype")}
        wrapper["type"] = "OptimWrapper"
    return wrapper


def _groups(cfg: Config, codebase: str) -> dict[str, tuple[float, float, tuple[int, ...]]]:
    """{parameter name: (lr, weight_decay, shape)} of the optimizer `cfg` builds for its model."""
    import_modules_from_strings(**cfg.get("custom_imports", dict(imports=[])))
    init_default_scope(codebase)
    if codebase == "mmdet":
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, _plain_wrapper(cfg))
    by_id = {}
    for group in wrapper.optimizer.param_groups:
        for param in group["params"]:
            assert id(param) not in by_id, "a parameter in two groups"
            by_id[id(param)] = (group["lr"], group.get("weight_decay", 0.0))
    return {name: (*by_id[id(p)], tuple(p.shape)) for name, p in model.named_parameters()}


def _reference_name(name: str) -> str:
    """A reference parameter's name in swinctl's model: the Swin's tensors are named as in the official code."""
    return mmdet_to_official(name) if name.startswith("backbone.") else name


def _differences(name: str) -> dict[str, tuple]:
    """{parameter: ((lr, wd, shape) ours, (lr, wd, shape) reference)} where the two optimizers disagree."""
    recipe = recipes.load_recipe(name)
    reference = reference_config(recipe)
    reference.model.backbone.pop("init_cfg", None)  # nothing is downloaded: the groups do not depend on weights
    ours = render.render(recipe, render.RunContext(wandb="disabled"))
    ours.model.backbone.init_cfg = None
    theirs = {_reference_name(k): v for k, v in _groups(reference, recipe.codebase).items()}
    mine = _groups(ours, recipe.codebase)
    assert len(mine) == len(theirs), "parameter counts differ"
    assert sorted(mine) == sorted(theirs), "parameter names do not map one to one"
    return {k: (mine[k], theirs[k]) for k in theirs if mine[k] != theirs[k]}


@pytest.mark.parametrize("name", RECIPES)
def test_every_parameter_gets_the_lr_and_weight_decay_of_the_reference(name):
    differ = _differences(name)
    assert not differ, f"{len(differ)} parameters differ, e.g. " + "; ".join(
        f"{k}: {a} vs {b}" for k, (a, b) in list(differ.items())[:6])


def test_the_check_catches_custom_keys_left_in_mmdets_names(monkeypatch):
    # what rendering did before: the reference's `backbone.stages.{i}.blocks.{j}.norm` keys matched nothing in
    # swinctl's backbone, so Swin-T's 54 block and downsample norm tensors fell through to `backbone` (decay 0.05)
    monkeypatch.setattr(render, "_rename_custom_keys", lambda cfg: None)
    differ = _differences("mask2former-swin-t-lsj-50e-coco")
    assert len(differ) == 54
    assert all(".norm" in k and ours[1] == 0.05 and theirs[1] == 0.0 for k, (ours, theirs) in differ.items())


def test_a_key_named_both_ways_with_different_settings_is_refused():
    from swinctl.param_names import translate_custom_keys

    same = {"backbone.stages.0.blocks.0.norm": {"decay_mult": 0.0},
            "backbone.layers.0.blocks.0.norm": {"decay_mult": 0.0}}
    assert translate_custom_keys(same) == {"backbone.layers.0.blocks.0.norm": {"decay_mult": 0.0}}
    with pytest.raises(ValueError, match="'backbone.layers.0.blocks.0.norm' in swinctl's backbone"):
        translate_custom_keys({"backbone.layers.0.blocks.0.norm": {"decay_mult": 1.0},
                               "backbone.stages.0.blocks.0.norm": {"decay_mult": 0.0}})
