"""The reproduction guard before submission: batch and learning rate, pretrained weights, dataset splits."""

from __future__ import annotations

import json

import pytest

from swinctl.runs.ledger import Ledger

TINY_BACKBONE = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], window_size=4)


@pytest.fixture
def coco(tmp_path):
    """A COCO-format tree (the generated demo set: 16 train / 8 val images)."""
    from swinctl.data import demo

    return demo.ensure("coco")


def _tiny_recipe_args(checkpoint) -> list[str]:
    args = []
    for key, value in TINY_BACKBONE.items():
        args += ["--set", f"model.backbone.{key}={json.dumps(value)}"]
    return args + ["--set", f"model.backbone.pretrained={checkpoint}"]


def _save_tiny_swin(path, **changes):
    import torch

    from swinctl.models.swin import SwinTransformer

    torch.save({"state_dict": SwinTransformer(**{**TINY_BACKBONE, **changes}).state_dict()}, path)
    return path


def test_a_4_gpu_dry_run_names_the_batch_and_scales_the_learning_rate(cli, runs_root, coco):
    result = cli("run", "maskrcnn-swin-t", "--gpus", "4", "--set", f"data.root={coco}", "--executor", "local",
                 "--dry-run", "--config")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "total batch 8 (4 GPUs x 2) vs 16 published (8 GPUs x 2): learning rate scaled 1e-4 -> 5e-5 " \
           "(linear rule)" in out
    assert "auto_scale_lr = dict(base_batch_size=16, enable=True)" in out  # MMEngine's Runner applies the rule
    assert "train split: 16 images vs 118,287 published (COCO train2017): a subset" in out
    assert "val split: 16 images vs 5,000 published (COCO val2017): a subset" in out
    assert "not verified" in out  # offline: the official URL is not in the (test's) torch hub cache
    assert not runs_root.exists() or Ledger(runs_root).list_runs() == []


def test_no_scale_lr_keeps_the_rate_and_says_what_to_expect(cli, runs_root, coco):
    result = cli("run", "maskrcnn-swin-t", "--gpus", "4", "--set", f"data.root={coco}", "--executor", "local",
                 "--no-scale-lr", "--dry-run", "--config")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "total batch 8 (4 GPUs x 2) vs 16 published (8 GPUs x 2): learning rate not scaled (1e-4, " \
           "--no-scale-lr): expect a lower mAP" in out
    assert "auto_scale_lr = dict(base_batch_size=16, enable=False)" in out


def test_the_published_batch_renders_no_scaling_and_other_changes_are_named(tmp_path, coco):
    from swinctl.runs import lifecycle as runs

    prepared = runs.prepare("maskrcnn-swin-t", overrides=[f"data.root={coco}", "schedule.max_epochs=6",
                                                          "optimizer.lr=2e-4", "model.backbone.drop_path_rate=0.1",
                                                          "optim_wrapper.type=OptimWrapper"],
                            executor="local", root=tmp_path / "runs")
    messages = [d["message"] for d in prepared.deviations]
    assert not any(m.startswith("total batch") for m in messages)
    assert "auto_scale_lr = dict(base_batch_size=16, enable=False)" in " ".join(prepared.config_text.split())
    assert any(m.startswith("schedule 6 epochs vs 12 epochs published") for m in messages), messages
    assert "learning rate 2e-4 vs 1e-4 published (before any batch scaling)" in messages
    assert "model.backbone.drop_path_rate 0.1 vs 0.2 published" in messages
    assert "config optim_wrapper.type set to OptimWrapper (not in the published setting)" in messages


def test_deviations_are_recorded_in_the_ledger_and_the_run_dir(tmp_path, coco):
    from swinctl.runs import lifecycle as runs
    from swinctl.runs import submission

    prepared = runs.prepare("maskrcnn-swin-t", overrides=[f"data.root={coco}", "resources.gpus=4",
                                                          "resources.gpus_per_node=4"],
                            executor="local", root=tmp_path / "runs")
    record = submission.materialize(Ledger(prepared.spec.runs_root), prepared)
    stored = Ledger(tmp_path / "runs").get(record.id).deviations
    assert stored == prepared.deviations and any(d["kind"] == "batch" for d in stored)
    assert json.loads((record.run_dir / "deviations.json").read_text()) == stored


def test_a_matching_pretrained_checkpoint_loads_with_no_missing_or_unexpected_keys(cli, runs_root, coco, tmp_path):
    ckpt = _save_tiny_swin(tmp_path / "tiny.pth")
    result = cli("run", "maskrcnn-swin-t", "--set", f"data.root={coco}", *_tiny_recipe_args(ckpt),
                 "--executor", "local", "--dry-run")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "pretrained weights verified:" in out and "load with no missing or unexpected keys" in out


@pytest.mark.parametrize("changes, words", [
    (dict(depths=[1, 1, 2, 1]), "unexpected"),  # a bigger Swin (Swin-S for Swin-T)
    (dict(embed_dims=32, num_heads=[2, 4, 8, 16]), "with another shape"),  # a wider one (Swin-B for Swin-T)
])
def test_a_mismatched_pretrained_checkpoint_is_refused_before_anything_is_written(cli, runs_root, coco, tmp_path,
                                                                                   changes, words):
    ckpt = _save_tiny_swin(tmp_path / "other.pth", **changes)
    result = cli("run", "maskrcnn-swin-t", "--set", f"data.root={coco}", *_tiny_recipe_args(ckpt),
                 "--executor", "local")
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert result.output.count("error:") == 1 and "do not fit the recipe's backbone" in out and words in out
    assert not runs_root.exists() or Ledger(runs_root).list_runs() == []


def test_a_resnet_or_a_missing_file_is_refused(cli, runs_root, coco, tmp_path):
    import torch

    resnet = tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)},
               resnet)
    for ckpt, words, dry in ((resnet, "not a Swin Transformer checkpoint", ["--dry-run"]),
                             (tmp_path / "gone.pth", "no such file", [])):
        result = cli("run", "maskrcnn-swin-t", "--set", f"data.root={coco}", *_tiny_recipe_args(ckpt),
                     "--executor", "local", *dry)
        assert result.exit_code == 2, result.output
        assert words in " ".join(result.output.split()), result.output
    assert not runs_root.exists() or Ledger(runs_root).list_runs() == []
    # a file that is not on this machine may be on the cluster's: a dry run says it did not check it
    result = cli("run", "maskrcnn-swin-t", "--set", f"data.root={coco}", *_tiny_recipe_args(tmp_path / "gone.pth"),
                 "--executor", "local", "--dry-run")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "pretrained weights not verified: not on this machine" in out and out.count("not verified") == 1, out


def test_a_url_found_in_the_torch_hub_cache_is_checked_without_the_network(cli, runs_root, coco, monkeypatch,
                                                                           tmp_path):
    from swinctl.guard import pretrained

    url = "https://example.invalid/weights/tiny_swin.pth"
    _save_tiny_swin(tmp_path / "tiny_swin.pth")
    cached = pretrained.hub_path(url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "tiny_swin.pth").replace(cached)
    result = cli("run", "maskrcnn-swin-t", "--set", f"data.root={coco}", *_tiny_recipe_args(url),
                 "--executor", "local", "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"cached at {cached}" in " ".join(result.output.split())
    # online, an unreachable URL that is not cached is refused with what to do; a dry run downloads nothing and
    # says so
    monkeypatch.setenv("SWINCTL_OFFLINE", "0")
    args = ("run", "maskrcnn-swin-t", "--set", f"data.root={coco}",
            *_tiny_recipe_args("https://example.invalid/weights/missing.pth"), "--executor", "local")
    result = cli(*args)
    assert result.exit_code == 2 and "cannot be downloaded" in result.output, result.output
    result = cli(*args, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "pretrained weights not verified: not in the torch hub cache, and a dry run downloads nothing" in \
        " ".join(result.output.split())


def test_smoke_runs_are_marked_and_never_scaled(cli, runs_root):
    result = cli("run", "maskrcnn-swin-t", "--smoke", "--gpus", "4", "--executor", "local", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "smoke run:" in result.output and "learning rate scaled" not in result.output


def test_doctor_recipe_lists_the_checks(cli, coco):
    result = cli("doctor", "maskrcnn-swin-t", "--gpus", "4", "--set", f"data.root={coco}")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "deviations and 1 note of maskrcnn-swin-t against the published setting" in out
    assert "learning rate scaled 1e-4 -> 5e-5 (linear rule)" in out and "reference log" in out


def test_split_counts_follow_the_annotation_file_and_indices(tmp_path):
    from swinctl.guard import datasets

    ann = tmp_path / "annotations" / "instances_train2017.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(11_829)],
                               "annotations": [], "categories": []}))
    cfg = {"train_dataloader": {"dataset": {"type": "CocoDataset", "data_root": str(tmp_path),
                                            "ann_file": "annotations/instances_train2017.json"}}}
    (found,) = datasets.check_splits(cfg, "coco", splits=("train",))
    assert found.message == "train split: 11,829 images vs 118,287 published (COCO train2017): a subset (10.0%)"
    cfg["train_dataloader"]["dataset"]["indices"] = 100
    (found,) = datasets.check_splits(cfg, "coco", splits=("train",))
    assert found.actual == 100
    ade = tmp_path / "ade" / "images" / "training"
    ade.mkdir(parents=True)
    for i in range(3):
        (ade / f"ADE_train_{i}.jpg").write_bytes(b"")
    cfg = {"train_dataloader": {"dataset": {"type": "ADE20KDataset", "data_root": str(tmp_path / "ade"),
                                            "data_prefix": {"img_path": "images/training"}}}}
    (found,) = datasets.check_splits(cfg, "ade20k", splits=("train",))
    assert found.message.startswith("train split: 3 images vs 20,210 published (ADE20K training): a subset")


@pytest.mark.parametrize("width", [80, 200])
def test_the_heading_counts_every_item_shown_and_one_legend_line_says_what_the_marks_mean(width):
    from swinctl.guard import show

    found = [{"severity": "warning", "message": "train split: a subset"},
             {"severity": "scaled", "message": "learning rate scaled"},
             {"severity": "note", "message": "pretrained weights not verified"}]
    lines = show.render_text(found, width=width).splitlines()
    assert lines[0] == "2 deviations and 1 note against the published setting"
    assert lines[1].split() == "marks: ! may change the result ~ changed, compensated - a note, not a change".split()
    assert [line.split()[0] for line in lines[2:]] == ["!", "~", "-"]
    lines = show.render_text(found[2:], width=width).splitlines()
    assert lines[0] == "no deviations and 1 note against the published setting"
    assert lines[1].split() == ["marks:", "-", "a", "note,", "not", "a", "change"]  # only the marks shown
    assert show.render_text([], width=width).splitlines() == ["no deviations against the published setting"]
