"""Smoke runs that learn: each recipe's learning smoke profile (`smoke.learn`) trains on the demo training split and
must score well above chance on the demo validation split with the real evaluators, so a regression that breaks
labels, normalisation or evaluation fails here instead of hiding behind metrics that are 0 either way."""

from __future__ import annotations

import re

import pytest

from benchmarks.smoke import GOALS, learning_run
from swinctl.recipes import load_recipe
from swinctl.runs.ledger import Ledger

# The split each codebase's validation loader must read (never the one it trains on).
SPLITS = {"upernet-swin-t": ("images/validation", "images/training"),
          "maskrcnn-swin-t": ("annotations/instances_val2017.json", "annotations/instances_train2017.json")}


@pytest.mark.parametrize("recipe", sorted(GOALS))
def test_the_learning_profile_renders_and_validates_on_the_validation_split(recipe, cli, runs_root):
    args = [f"--set={item}" for item in load_recipe(recipe).smoke.learn_overrides()]
    result = cli("run", recipe, "--smoke", "--executor", "local", "--dry-run", "--config", *args)
    assert result.exit_code == 0, result.output
    val, train = SPLITS[recipe]
    config = result.output.replace("\n", " ")
    assert val in config and train in config


# how `swinctl run --smoke-profile learn --wait` prints: Mask R-CNN (the README's first command) on a 200-column
# terminal, where the progress line is redrawn; UPerNet into a pipe at 80 columns
OUTPUT = {"maskrcnn-swin-t": {"COLUMNS": "200", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"},
          "upernet-swin-t": {"COLUMNS": "80", "TTY_COMPATIBLE": ""}}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(GOALS))
def test_a_learning_smoke_run_reaches_its_goal_on_the_validation_split(recipe, tmp_path):
    run = learning_run(recipe, tmp_path / "runs", env=OUTPUT[recipe])
    assert run["state"] == "COMPLETED", run
    assert run["value"] >= run["goal"], run  # mIoU >= 50 / bbox mAP >= 10: learnt, and evaluated correctly
    # it said what it was doing, and what the numbers mean
    out = " ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", " ", run["stdout"]).split())
    # (a terminal sees every frame of the progress line; a pipe gets only the last, printed once at the end)
    words = ("starting", "training", "completed") if OUTPUT[recipe]["TTY_COMPATIBLE"] else ("completed",)
    assert all(word in out for word in words), out[-3000:]
    expected = load_recipe(recipe).expected  # the first source's numbers (seed README: 42.6 / 39.5, 44.3)
    published = " / ".join(f"{e.value:g} {e.metric}" for e in expected if e.source == expected[0].source)
    assert ("smoke run (learn profile) on generated demo data: these numbers show that the pipeline learns; they "
            f"are not comparable with the published {published}") in out, out[-3000:]
    [record] = Ledger(tmp_path / "runs").list_runs()
    config = (record.run_dir / "config.py").read_text()
    val, train = SPLITS[recipe]
    val_loader = config[config.index("val_dataloader"):config.index("val_evaluator")]
    assert val in val_loader and train not in val_loader
