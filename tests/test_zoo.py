"""The Swin zoo: every recipe builds its model around swinctl's backbone, renders a smoke run, and each
architecture family trains and evaluates on the generated demo data with the codebase's real evaluator."""

from __future__ import annotations

import json
import os

import pytest
import torch
from mmengine.registry import init_default_scope
from typer.testing import CliRunner

from swinctl import recipes, render, zoo
from swinctl.cli import app
from swinctl.models import SwinTransformer
from swinctl.runs.ledger import Ledger

ALL = sorted(recipes.available())
ZOO = sorted(name for name, path in recipes.available().items() if path.parent.name == "zoo")


def _invoke(root, *args):
    env = {**os.environ, "SWINCTL_RUNS": str(root), "COLUMNS": "200"}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _registry(codebase: str):
    init_default_scope(codebase)
    if codebase == "mmdet":
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


@pytest.mark.parametrize("name", ALL)
def test_every_recipe_builds_its_published_model_around_our_swin(name):
    recipe = recipes.load_recipe(name)
    cfg = render.render(recipe, render.RunContext(wandb="disabled"))
    from mmengine.utils import import_modules_from_strings

    import_modules_from_strings(**cfg.custom_imports)
    # on the meta device: the full-size model (Swin-L and all) is built in a tenth of a second, allocating nothing
    with torch.device("meta"):
        model = _registry(recipe.codebase).build(cfg.model)
    features = model.backbone(torch.empty(1, 3, 256, 256, device="meta"))  # (its index tables are made on the CPU)
    assert type(model.backbone) is SwinTransformer
    bb = recipe.model.backbone
    assert model.backbone.embed_dims == bb.embed_dims and len(model.backbone.layers) == len(bb.depths)
    # the stages its neck or heads were built to read (the equivalence test checks those widths are the reference's)
    assert [f.shape[1] for f in features] == [bb.stage_channels()[i] for i in bb.out_indices]


def test_a_narrower_swin_rewires_every_head_that_reads_its_stages():
    # --set model.backbone.embed_dims on a zoo recipe: the widths its neck/heads take follow (found by value)
    cases = {
        "dino-swin-l-12e-coco": ("neck.in_channels", [48, 96, 192, 384]),
        "atss-dyhead-swin-l-ms-2x-coco": ("neck.0.in_channels", [96, 192, 384]),  # out_indices (1, 2, 3)
        "mask2former-swin-t-lsj-50e-coco-panoptic": ("panoptic_head.in_channels", [48, 96, 192, 384]),
        "knet-s3-swin-t-upernet-adamw-80k-ade20k-512x512": ("decode_head.kernel_generate_head.in_channels",
                                                             [48, 96, 192, 384]),
    }
    for name, (key, widths) in cases.items():
        recipe = recipes.apply_recipe_overrides(recipes.load_recipe(name), [("model.backbone.embed_dims", 48)])
        model = render.render(recipe, render.RunContext(wandb="disabled")).model
        node = model
        for part in key.split("."):
            node = node[int(part)] if part.isdigit() else node[part]
        assert list(node) == widths, name
    knet = recipes.apply_recipe_overrides(recipes.load_recipe("knet-s3-swin-t-upernet-adamw-80k-ade20k-512x512"),
                                          [("model.backbone.embed_dims", 48)])
    assert render.render(knet, render.RunContext(wandb="disabled")).model.auxiliary_head.in_channels == 192


@pytest.mark.parametrize("name", ALL)
def test_every_recipe_renders_a_smoke_run(name, tmp_path):
    result = _invoke(tmp_path, "run", name, "--smoke", "--dry-run", "--config", "--executor", "local",
                     "--wandb", "disabled")
    assert result.exit_code == 0, result.output
    assert "swinctl.SwinTransformer" in result.output and "train.py" in result.output
    assert not list(tmp_path.glob("*/job_state.json"))  # a dry run submits nothing


def test_the_zoo_check_fails_on_an_edited_or_stray_recipe(tmp_path, monkeypatch, capsys):
    copy = tmp_path / "zoo"
    copy.mkdir()
    for path in zoo.ZOO_DIR.glob("*.yaml"):
        (copy / path.name).write_text(path.read_text())
    monkeypatch.setattr(zoo, "ZOO_DIR", copy)
    assert zoo.main(["--check"]) == 0
    edited = copy / "dino-swin-l-12e-coco.yaml"
    edited.write_text(edited.read_text().replace("value: 57.2", "value: 59.0"))
    (copy / "my-own.yaml").write_text("name: my-own\n")
    assert zoo.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "dino-swin-l-12e-coco.yaml: out of date" in err and "my-own.yaml: no zoo entry makes it" in err
    assert zoo.main(["--write"]) == 0 and zoo.main(["--check"]) == 0
    assert not (copy / "my-own.yaml").exists()


def test_recipes_lists_the_zoo_as_json_and_filters_it(tmp_path):
    result = _invoke(tmp_path, "recipes", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert len(rows) == len(ALL) == 38
    pan = rows["mask2former-swin-t-lsj-50e-coco-panoptic"]
    assert (pan["codebase"], pan["task"], pan["dataset"]) == ("mmdet", "panoptic", "coco_panoptic")
    assert pan["reference_config"] == "mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py"
    assert {"metric": "PQ", "value": 53.4} in [{k: e[k] for k in ("metric", "value")} for e in pan["expected"]]
    assert pan["resources"]["gpus"] == 8 and pan["batch_size"] == 2
    assert pan["published_weights"].startswith("https://download.openmmlab.com/mmdetection/v3.0/mask2former/")
    semantic = json.loads(_invoke(tmp_path, "recipes", "--json", "--codebase", "mmseg", "--task", "semantic",
                                  "cityscapes").output)
    assert sorted(r["name"] for r in semantic) == [n for n in ZOO if "cityscapes" in n]
    assert _invoke(tmp_path, "recipes", "--task", "panoptic").exit_code == 0
    bad = _invoke(tmp_path, "recipes", "--task", "depth")
    assert bad.exit_code == 2 and "depth" in bad.output


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(zoo.FAMILY_SMOKES))
def test_each_family_trains_and_evaluates_its_smoke_run_on_cpu(name, tmp_path):
    result = _invoke(tmp_path, "run", name, "--smoke", "--executor", "local", "--wandb", "disabled", "--wait")
    assert result.exit_code == 0, result.output
    [record] = Ledger(tmp_path).list_runs()
    assert record.state == "COMPLETED" and record.smoke
    for metric in zoo.FAMILY_SMOKES[name]:
        assert 0.0 <= record.metrics[metric] <= 100.0, (metric, record.metrics)
    assert "swinctl.SwinTransformer" in (record.run_dir / "config.py").read_text()


def test_a_seed_only_head_field_on_a_zoo_recipe_is_refused_with_the_way_out(tmp_path):
    result = _invoke(tmp_path, "run", "dino-swin-l-12e-coco", "--smoke", "--dry-run", "--set", "model.num_classes=3")
    assert result.exit_code == 2
    assert "model.num_classes is for the seed recipes' heads" in result.output and "--config" in result.output
    wrong = _invoke(tmp_path, "run", "dino-swin-l-12e-coco", "--smoke", "--dry-run", "--set", "optimizer.lr=1e-4")
    assert wrong.exit_code == 2 and "optim_wrapper.optimizer.lr" in wrong.output  # the config key it means


def test_precision_on_a_zoo_recipe_switches_the_reference_optimizer_wrapper_and_nothing_else():
    from mmengine.optim import build_optim_wrapper

    amp = recipes.load_recipe("maskrcnn-swin-t-amp-ms-crop-3x-coco")
    ours = render.render(amp, render.RunContext(wandb="disabled")).optim_wrapper
    assert ours.type == "AmpOptimWrapper"
    fp32 = render.render(recipes.apply_recipe_overrides(amp, [("precision.amp", False)]),
                         render.RunContext(wandb="disabled")).optim_wrapper
    assert fp32.type == "OptimWrapper" and "loss_scale" not in fp32
    assert {k: v for k, v in fp32.items() if k != "type"} == {k: v for k, v in ours.items()
                                                               if k not in ("type", "loss_scale")}
    build_optim_wrapper(torch.nn.Linear(2, 2), fp32.to_dict() if hasattr(fp32, "to_dict") else fp32)  # it builds
    plain = recipes.load_recipe("mask2former-swin-t-lsj-50e-coco")
    on = render.render(recipes.apply_recipe_overrides(plain, [("precision.amp", True), ("precision.loss_scale", 512)]),
                       render.RunContext(wandb="disabled")).optim_wrapper
    assert on.type == "AmpOptimWrapper" and on.loss_scale == {"init_scale": 512.0}
    assert on.optimizer == render.render(plain, render.RunContext(wandb="disabled")).optim_wrapper.optimizer
