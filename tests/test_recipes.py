"""Recipes: the bundled ones load; bad recipes and bad overrides get one clear error and submit nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swinctl import recipes
from swinctl.recipes import RecipeError

BUNDLED = ["maskrcnn-swin-t", "maskrcnn-swin-t-fp16", "upernet-swin-t"]


def test_bundled_recipes_load_with_published_numbers():
    found = recipes.available()
    assert set(BUNDLED) <= set(found)
    det = recipes.load_recipe("maskrcnn-swin-t")
    assert det.codebase == "mmdet"
    assert {(e.metric, e.value) for e in det.expected} == {
        ("bbox_mAP", 42.6), ("segm_mAP", 39.5), ("bbox_mAP", 42.7), ("segm_mAP", 39.3)}
    fp16 = recipes.load_recipe("maskrcnn-swin-t-fp16")
    assert fp16.precision.amp and fp16.precision.loss_scale == 512
    assert {(e.metric, e.value) for e in fp16.expected} == {("bbox_mAP", 42.5), ("segm_mAP", 39.3)}
    seg = recipes.load_recipe("upernet-swin-t")
    assert {(e.metric, e.value) for e in seg.expected} == {("mIoU", 44.3), ("mIoU", 44.41), ("mIoU_ms_flip", 45.79)}
    assert all(e.source for r in (det, fp16, seg) for e in r.expected)


def test_zoo_recipes_carry_their_metafile_numbers_and_published_resources():
    pan = recipes.load_recipe("mask2former-swin-t-lsj-50e-coco-panoptic")
    assert pan.task == "panoptic" and pan.data.dataset == "coco_panoptic"
    assert {(e.metric, e.value) for e in pan.expected} == {("bbox_mAP", 46.3), ("segm_mAP", 43.4), ("PQ", 53.4)}
    assert all("metafile (mask2former/metafile.yml)" in e.source for e in pan.expected)
    assert pan.schedule is None and pan.optimizer is None and pan.inherits_reference
    upernet = recipes.load_recipe("upernet-swin-b-in22k-384-160k-ade20k-512x512")
    assert {(e.metric, e.value) for e in upernet.expected} == {("mIoU", 50.76), ("mIoU_ms_flip", 52.4)}
    assert (upernet.model.backbone.embed_dims, upernet.model.backbone.window_size) == (128, 12)
    layouts = {name: (r.resources.nodes, r.resources.gpus_per_node, r.data.batch_size) for name in
               ("maskformer-swin-l-ms-300e-coco-panoptic", "mask2former-swin-l-in22k-384-lsj-100e-coco-panoptic",
                "rtmdet-l-swin-b-100e-coco", "maskrcnn-swin-s-amp-ms-crop-3x-coco")
               for r in [recipes.load_recipe(name)]}
    assert layouts == {"maskformer-swin-l-ms-300e-coco-panoptic": (8, 8, 1),  # 64xb1
                       "mask2former-swin-l-in22k-384-lsj-100e-coco-panoptic": (2, 8, 1),  # 16xb1
                       "rtmdet-l-swin-b-100e-coco": (1, 4, 32),  # 4xb32
                       "maskrcnn-swin-s-amp-ms-crop-3x-coco": (1, 8, 2)}  # "8x V100", batch 16
    assert recipes.load_recipe("maskrcnn-swin-s-amp-ms-crop-3x-coco").precision.amp


def test_the_committed_zoo_is_what_the_metafiles_make(capsys):
    from swinctl import zoo

    assert zoo.main(["--check"]) == 0, capsys.readouterr().err


def test_published_hyper_parameters():
    det = recipes.load_recipe("maskrcnn-swin-t")
    assert (det.optimizer.type, det.optimizer.lr, det.optimizer.weight_decay) == ("AdamW", 1e-4, 0.05)
    assert det.optimizer.no_decay == ["absolute_pos_embed", "relative_position_bias_table", "norm"]
    assert (det.schedule.max_epochs, det.schedule.milestones, det.schedule.warmup_iters) == (12, [8, 11], 1000)
    assert det.model.backbone.drop_path_rate == 0.2
    assert (det.data.batch_size, det.resources.gpus) == (2, 8)
    seg = recipes.load_recipe("upernet-swin-t")
    assert (seg.optimizer.lr, seg.optimizer.weight_decay) == (6e-5, 0.01)
    assert (seg.schedule.policy, seg.schedule.power, seg.schedule.warmup_iters) == ("poly", 1.0, 1500)
    assert (seg.schedule.max_iters, seg.schedule.val_interval) == (160_000, 16_000)
    assert seg.model.backbone.drop_path_rate == 0.3


def test_a_recipe_file_path_works_like_a_name(tmp_path):
    data = yaml.safe_load(recipes.resolve_path("maskrcnn-swin-t").read_text())
    data["name"] = "my-recipe"
    path = tmp_path / "my-recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    assert recipes.load_recipe(str(path)).name == "my-recipe"


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(recipes.resolve_path("maskrcnn-swin-t").read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _set(path: str, value):
    def mutate(data):
        keys = path.split(".")
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return mutate


def _drop(path: str):
    def mutate(data):
        keys = path.split(".")
        node = data
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return mutate


BAD_RECIPES = [
    (_set("optimzer", {"lr": 1}), ["unknown key 'optimzer'", "did you mean 'optimizer'", "valid keys here"]),
    (_set("model.backbone.embed_dim", 96), ["unknown key 'model.backbone.embed_dim'", "embed_dims"]),
    (_set("codebase", "mmpose"), ["key 'codebase'", "'mmdet' or 'mmseg'"]),
    (_set("optimizer.lr", "fast"), ["key 'optimizer.lr'", "'fast'"]),
    (_drop("data"), ["missing required key 'data'"]),
    (_set("model.backbone.num_heads", [3, 6, 12]), ["depths (4 stages) and num_heads (3)"]),
    (_set("model.backbone.num_heads", [5, 6, 12, 24]), ["96 channels are not divisible by 5 heads"]),
    (_set("schedule.max_epochs", None), ["needs max_epochs"]),
    (_set("precision", {"amp": False, "loss_scale": 512}), ["loss_scale only applies with amp: true"]),
    (_set("expected", [{"metric": "box_AP", "value": 1, "source": "x"}]), ["expected.0.metric", "'bbox_mAP'"]),
    (_set("model.backbone.drop_path_rate", 1.5), ["drop_path_rate", "less than 1"]),
    (_set("data.dataset", "voc"), ["'coco', 'coco_panoptic', 'ade20k' or 'cityscapes'"]),
]


@pytest.mark.parametrize("mutate,phrases", BAD_RECIPES, ids=[p[0] for _, p in BAD_RECIPES])
def test_bad_recipe_gets_one_clear_error_naming_file_and_key(tmp_path, mutate, phrases):
    path = _write(tmp_path, mutate)
    with pytest.raises(RecipeError) as caught:
        recipes.load_recipe(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for phrase in phrases:
        assert phrase in message, message
    assert "\n" not in message.split(" [and")[0]


def test_not_yaml_and_not_a_mapping(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        recipes.load_recipe(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping"):
        recipes.load_recipe(listing)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        recipes.load_recipe(evil)


def test_unknown_recipe_name_suggests_the_closest():
    with pytest.raises(RecipeError, match="unknown recipe 'maskrcnn-swin'.*did you mean maskrcnn-swin-t"):
        recipes.resolve_path("maskrcnn-swin")


def test_unknown_recipe_name_gives_the_suggestions_not_every_name():
    with pytest.raises(RecipeError) as caught:
        recipes.resolve_path("upernet-swim-t")
    message = str(caught.value)
    hint, rest = message.split("?", 1)
    assert "upernet-swin-t" in hint and "`swinctl recipes` lists all" in rest
    unrelated = [name for name in recipes.available() if name not in hint]
    assert unrelated and not any(name in message for name in unrelated), message


def test_missing_recipe_file():
    with pytest.raises(RecipeError, match="recipe file not found"):
        recipes.resolve_path("nowhere/recipe.yaml")


def test_override_values_are_yaml_never_python():
    assert recipes.parse_override("optimizer.lr=2e-4") == ("optimizer.lr", 2e-4)
    assert recipes.parse_override("model.backbone.depths=[2, 2, 18, 2]") == ("model.backbone.depths", [2, 2, 18, 2])
    assert recipes.parse_override("resources.partition=gpu") == ("resources.partition", "gpu")
    key, value = recipes.parse_override("seed=__import__('os').system('x')")
    assert value == "__import__('os').system('x')"  # a plain string, never evaluated


def test_times_stay_times_and_exponents_are_numbers(tmp_path):
    """YAML 1.1 would read 12:00:00 as 43200 (base 60) and 1e-4 as a string; a recipe means neither."""
    assert recipes.parse_override("resources.time_limit=12:00:00") == ("resources.time_limit", "12:00:00")
    assert recipes.load_yaml("[1e-4, 5.e-3, .5, 90, 0x10, 1_000, v1.2]") == [1e-4, 5e-3, 0.5, 90, 16, 1000, "v1.2"]
    recipe = recipes.load_recipe("maskrcnn-swin-t")
    path = tmp_path / "mine.yaml"
    data = yaml.safe_load(recipes.resolve_path("maskrcnn-swin-t").read_text())
    path.write_text(yaml.safe_dump(data).replace("time_limit: 1-00:00:00", "time_limit: 12:00:00")
                    .replace("lr: 0.0001", "lr: 2e-4"))
    mine = recipes.load_recipe(str(path))
    assert (mine.resources.time_limit, mine.optimizer.lr) == ("12:00:00", 2e-4)
    minutes = recipes.apply_recipe_overrides(recipe, [recipes.parse_override("resources.time_limit=90")])
    assert minutes.resources.time_limit == "90"  # a bare number is minutes, as sbatch reads it


@pytest.mark.parametrize("text,phrase", [
    ("optimizer.lr", "not of the form dotted.key=value"),
    ("=3", "not of the form"),
    ("a..b=1", "not of the form"),
    ("optimizer={lr: 1}", "set one key at a time"),
])
def test_malformed_overrides(text, phrase):
    with pytest.raises(RecipeError, match=phrase):
        recipes.parse_override(text)


def test_recipe_overrides_apply_and_validate():
    recipe = recipes.load_recipe("maskrcnn-swin-t")
    on_recipe, on_config = recipes.split_overrides(
        recipe, ["optimizer.lr=2e-4", "model.backbone.drop_path_rate=0.1", "optim_wrapper.clip_grad=null",
                 "cfg.model.backbone.drop_path_rate=0.3"])
    assert on_recipe == [("optimizer.lr", 2e-4), ("model.backbone.drop_path_rate", 0.1)]
    assert on_config == [("optim_wrapper.clip_grad", None), ("model.backbone.drop_path_rate", 0.3)]
    changed = recipes.apply_recipe_overrides(recipe, on_recipe)
    assert (changed.optimizer.lr, changed.model.backbone.drop_path_rate) == (2e-4, 0.1)
    assert recipe.optimizer.lr == 1e-4  # the loaded recipe is not mutated
    with pytest.raises(RecipeError, match="key 'optimizer.lr'"):
        recipes.apply_recipe_overrides(recipe, [("optimizer.lr", "fast")])
    with pytest.raises(RecipeError, match="unknown key 'optimizer.lrr'.*closest valid keys: optimizer.lr"):
        recipes.apply_recipe_overrides(recipe, [("optimizer.lrr", 1)])
