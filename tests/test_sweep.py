"""Sweeps: the space grammars, the rendering fast path against the ordinary one, dry runs, bad input (exit 2, nothing
written), and real sweeps through the local executor (a grid that completes, dedupe, points shared across sweeps)."""

from __future__ import annotations

import ast
import json
import os
import random
from pathlib import Path

import pytest
import yaml

from swinctl import recipes
from swinctl import sweep as sw
from swinctl.runs.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
# UperNet smoke cut to 4 iterations: trains and evaluates mIoU in ~20-40 s on 2 cores.
TINY = ["--smoke", "--set", "schedule.max_iters=4", "--set", "schedule.val_interval=4", "--set",
        "schedule.checkpoint_interval=4", "--set", "schedule.warmup_iters=2", "--set", "schedule.log_interval=2"]


@pytest.fixture
def app():
    """The real CLI."""
    from swinctl import cli

    return cli.app


@pytest.fixture
def swinctl(app, runs_root):
    from typer.testing import CliRunner

    def invoke(*args):
        return CliRunner().invoke(app, [str(a) for a in args], env={**os.environ, "COLUMNS": "250"})

    return invoke


# ---------------------------------------------------------------------------------------------- grammars


def test_values_are_yaml_and_numbers_written_1e_4_are_numbers():
    assert sw.parse_values("optim_wrapper.optimizer.lr=1e-4,2e-4") == ("optim_wrapper.optimizer.lr", [1e-4, 2e-4])
    assert sw.parse_values("model.backbone.depths=[2,2,6,2],[2,2,18,2]")[1] == [[2, 2, 6, 2], [2, 2, 18, 2]]
    assert sw.parse_values("x=adamw, 3, true, null")[1] == ["adamw", 3, True, None]
    for value in (1e-05, 0.0001, 3, [1, 2], "AdamW", True, None, 2.5e-7):
        text = f"k={sw.format_value(value)}"
        assert recipes.parse_override(text)[1] == value, text  # what the ledger records reads back the same


def test_distributions_sample_reproducibly_within_their_bounds():
    rng = random.Random(0)
    lr = sw.parse_distribution("lr", "loguniform(1e-5, 1e-3)")
    draws = [lr.sample(rng) for _ in range(200)]
    assert all(1e-5 <= d <= 1e-3 for d in draws) and min(draws) < 1e-4 < max(draws)
    assert {sw.parse_distribution("k", "randint(1,3)").sample(rng) for _ in range(100)} == {1, 2, 3}
    assert {sw.parse_distribution("k", "choice(a, 2, 3e-4)").sample(rng) for _ in range(100)} == {"a", 2, 3e-4}
    assert sw.parse_distribution("k", "choice([1,2],[3])").args == ([1, 2], [3])
    assert 0.1 <= sw.parse_distribution("k", "uniform(0.1,0.3)").sample(rng) <= 0.3
    space = sw.load_space("upernet-swin-t", random_n=5, random_seed=7, params=["optimizer.lr=loguniform(1e-5,1e-3)"])
    again = sw.load_space("upernet-swin-t", random_n=5, random_seed=7, params=["optimizer.lr=loguniform(1e-5,1e-3)"])
    other = sw.load_space("upernet-swin-t", random_n=5, random_seed=8, params=["optimizer.lr=loguniform(1e-5,1e-3)"])
    assert space.points() == again.points() != other.points()
    assert space.default_name("upernet-swin-t") != other.default_name("upernet-swin-t")


@pytest.mark.parametrize("text", ["normal(0,1)", "uniform(1)", "uniform(3,1)", "loguniform(0,1)", "randint(1.5,3)",
                                  "choice()", "lr*2", "uniform(a,b)"])
def test_bad_distributions_are_refused(text):
    with pytest.raises(sw.SweepError, match="--param k="):
        sw.parse_distribution("k", text)


def test_ties_are_arithmetic_over_swept_keys_and_nothing_else():
    tie = sw.parse_tie("param_scheduler.1.eta_min=optim_wrapper.optimizer.lr*0.01")
    assert tie.refs == ("optim_wrapper.optimizer.lr",)
    assert tie.evaluate({"optim_wrapper.optimizer.lr": 2e-4}) == 2e-6
    both = sw.parse_tie("a=(x.y + 1) / 2 - -z")
    assert both.evaluate({"x.y": 3, "z": 1}) == 3.0
    assert sw.parse_tie("a=param_scheduler.1.end*2").refs == ("param_scheduler.1.end",)
    for evil in ("a=__import__('os').system('true')", "a=x**2", "a=x if x else 1", "a=[x]", "a=x.y()", "a='s'",
                 "a=x//2", "a=lambda: 1", "a=1+2"):
        with pytest.raises(sw.SweepError):
            sw.parse_tie(evil)


def test_space_expands_grid_zip_seeds_and_ties_in_order():
    space = sw.load_space("upernet-swin-t", grid=["a.b=1,2", "c=x,y"], zip_=["d=1,2", "e=3,4"], seeds=2,
                          ties=["f=a.b*10+d"])
    points = space.points(recipe_seed=5)
    assert len(points) == 2 * 2 * 2 * 2
    assert points[0] == {"a.b": 1, "c": "x", "d": 1, "e": 3, "seed": 5, "f": 11}
    assert points[1] == {"a.b": 1, "c": "x", "d": 1, "e": 3, "seed": 6, "f": 11}
    assert points[2]["d"] == 2 and points[2]["e"] == 4 and points[2]["f"] == 12  # zip: paired, not crossed
    assert points[-1] == {"a.b": 2, "c": "y", "d": 2, "e": 4, "seed": 6, "f": 22}
    chained = sw.load_space("upernet-swin-t", grid=["x=1,2"], ties=["z=y+1", "y=x*2"]).points()
    assert chained[1] == {"x": 2, "y": 4, "z": 5}
    assert sw.point_tags({"optim_wrapper.optimizer.lr": 1e-4, "seed": 1}) == ["lr=0.0001", "seed=1"]
    assert sw.point_tags({"a.lr": 1, "b.lr": 2}) == ["a.lr=1", "b.lr=2"]


def test_sweep_files_load_and_their_recipes_resolve():
    files = sorted((REPO / "sweeps").glob("*.yaml"))
    assert files, "example sweeps live in sweeps/"
    for path in files:
        assert sw.is_sweep_file(str(path))
        space = sw.load_space(str(path))
        recipes.resolve_path(space.recipe)
        assert space.points()
    assert not sw.is_sweep_file(str(REPO / "recipes" / "upernet-swin-t.yaml"))


# ---------------------------------------------------------------------------------------------- the fast path


def test_fast_path_writes_what_the_ordinary_path_renders(tmp_path):
    """One render per recipe variant + per-point placeholders == render() of each point with its own context."""
    from swinctl import render
    from swinctl.runs import lifecycle as runs

    space = sw.load_space("upernet-swin-t", smoke=True, grid=["optim_wrapper.optimizer.lr=1e-4,2e-4",
                                                              "model.backbone.drop_path_rate=0.1,0.3"],
                          ties=["param_scheduler.1.eta_min=optim_wrapper.optimizer.lr*0.01"], name="fast")
    plan = sw.plan(space, executor="local", wandb="offline", root=tmp_path)
    assert len(plan.points) == 4 and plan.renders == 2  # drop_path_rate is a recipe field: two variants
    for point in (plan.points[0], plan.points[3]):  # one per variant (each check renders twice: ~1 s)
        prepared = point.prepared
        ordinary = runs.prepare("upernet-swin-t", overrides=list(prepared.overrides), smoke=True, executor="local",
                                wandb="offline", root=tmp_path, sweep="fast", run_id=prepared.run_id)
        assert prepared.signature == ordinary.signature
        assert prepared.spec == ordinary.spec
        assert prepared.recipe == ordinary.recipe
        # The same config, with the point's W&B tags: what render() writes for that context, up to formatting.
        recipe, config_items = runs.resolve_recipe("upernet-swin-t", list(prepared.overrides), True)
        ctx = render.RunContext(run_id=prepared.run_id, run_dir=prepared.spec.run_dir, group="fast",
                                tags=("smoke", *sw.point_tags(point.values)), wandb="offline")
        reference = render.to_text(render.render(recipe, ctx, config_items))
        assert ast.dump(ast.parse(prepared.config_text)) == ast.dump(ast.parse(reference))
    text = plan.points[3].prepared.config_text
    assert "eta_min=2e-06" in text and "lr=0.0002" in text and "'lr=0.0002'" in text and "group='fast'" in text


# Recipe fields swept as symbols (one render for every variant) where render only carries them, each variant
# rendered in full where a value decides something (warmup_iters: `if warmup_iters`; a bool; a non-smoke guard).
COMPOSED = [
    ("upernet-swin-t", ["optimizer.lr=1e-4,3e-4", "model.backbone.drop_path_rate=0.1,0.3"], True),
    ("upernet-swin-t", ["schedule.max_iters=40,50", "optim_wrapper.optimizer.weight_decay=0.1,0.2"], True),
    ("upernet-swin-t", ["schedule.warmup_iters=2,3", "optimizer.lr=1e-4,2e-4"], False),
    ("maskrcnn-swin-t", ["optimizer.lr=1e-4,2e-4", "precision.amp=true,false"], False),
]


@pytest.mark.parametrize("recipe,grid,composed", COMPOSED, ids=[" ".join(g) for _, g, _ in COMPOSED])
def test_variants_from_one_symbolic_render_are_what_each_run_prepares(recipe, grid, composed, tmp_path, monkeypatch):
    """Every point, composed or rendered, has the signature, spec, recipe, deviations and config that
    `runs.prepare` gives the same overrides (the config up to formatting, with the point's W&B tags)."""
    from swinctl import render
    from swinctl.runs import lifecycle as runs

    made = []
    monkeypatch.setattr(runs.Preparer, "prepare", lambda self, points, real=runs.Preparer.prepare:
                        made.append(self) or real(self, points))
    plan = sw.plan(sw.load_space(recipe, smoke=True, grid=grid, name="sym"), executor="local", wandb="offline",
                   root=tmp_path)
    [preparer] = made
    assert all((v.values is not None) == composed for v in preparer.variants.values())
    for point in plan.points:
        prepared = point.prepared
        ordinary = runs.prepare(recipe, overrides=list(prepared.overrides), smoke=True, executor="local",
                                wandb="offline", root=tmp_path, sweep="sym", run_id=prepared.run_id)
        assert (prepared.signature, prepared.spec, prepared.recipe, prepared.deviations) == (
            ordinary.signature, ordinary.spec, ordinary.recipe, ordinary.deviations)
        resolved, config_items = runs.resolve_recipe(recipe, list(prepared.overrides), True)
        ctx = render.RunContext(run_id=prepared.run_id, run_dir=prepared.spec.run_dir, group="sym",
                                tags=("smoke", *sw.point_tags(point.values)), wandb="offline")
        reference = render.to_text(render.render(resolved, ctx, config_items))
        assert ast.dump(ast.parse(prepared.config_text)) == ast.dump(ast.parse(reference))


def test_a_symbol_refuses_every_use_but_being_carried():
    from swinctl.runs import symbolic

    lr = symbolic.symbol_type(float)(1e-4)
    assert isinstance(lr, float) and symbolic.is_symbol(lr) and copy_of(lr) is lr
    for use in (lambda: lr * 2, lambda: 2 * lr, lambda: lr > 0, lambda: bool(lr), lambda: f"{lr}", lambda: str(lr),
                lambda: float(lr), lambda: hash(lr), lambda: lr == 1e-4, lambda: round(lr), lambda: int(lr)):
        with pytest.raises(symbolic.Escaped):
            use()


def copy_of(value):
    import copy

    return copy.deepcopy([value])[0]


def test_dry_run_shows_points_and_the_sbatch_array_and_writes_nothing(swinctl, runs_root, no_slurm_client):
    result = swinctl("sweep", "upernet-swin-t", *TINY, "--grid", "optim_wrapper.optimizer.lr=1e-4,2e-4", "--grid",
                     "model.backbone.drop_path_rate=0.1,0.2", "--executor", "slurm", "--max-parallel", "2",
                     "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run: nothing submitted" in result.output and "4 points, 4 to submit" in result.output
    assert "#SBATCH --array=0-3%2" in result.output
    assert "#SBATCH --job-name=swinctl:sweep:upernet-swin-t-" in result.output
    assert f"{runs_root}/sweeps/upernet-swin-t-" in result.output and "%A_%a_0_log.out" in result.output
    assert "optim_wrapper.optimizer.lr=0.0002" in result.output and "new" in result.output
    assert not runs_root.exists()


def test_dry_run_locally_names_the_parallelism(swinctl, runs_root):
    result = swinctl("sweep", REPO / "sweeps" / "upernet-lr.yaml", "--smoke", "--executor", "local", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "at most 1 at a time" in result.output and "mmseg/.mim/tools/train.py" in result.output
    assert not runs_root.exists()


def test_a_long_dry_run_shows_a_summary_and_its_first_and_last_points_and_all_shows_every_one(swinctl, runs_root):
    lrs = ",".join(f"{i}.0e-5" for i in range(1, 31))
    args = ["sweep", "upernet-swin-t", "--smoke", "--grid", f"optim_wrapper.optimizer.lr={lrs}", "--executor", "local",
            "--dry-run"]
    short = swinctl(*args)
    assert short.exit_code == 0, short.output
    shown = [int(line.split()[1]) for line in short.output.splitlines() if line.startswith("│ ") and
             line.split()[1].isdigit()]
    assert shown == [0, 1, 2, 3, 4, 25, 26, 27, 28, 29]
    assert "new 30; 20 rows not shown (--all shows every row)" in short.output
    every = swinctl(*args, "--all")
    assert every.exit_code == 0, every.output
    assert [int(line.split()[1]) for line in every.output.splitlines() if line.startswith("│ ") and
            line.split()[1].isdigit()] == list(range(30)) and "not shown" not in every.output


# ---------------------------------------------------------------------------------------------- bad input


def test_a_slurm_sweep_without_sbatch_is_one_error_and_records_nothing(swinctl, runs_root, no_slurm_client):
    result = swinctl("sweep", "upernet-swin-t", *TINY, "--grid", "optimizer.lr=1e-4,2e-4", "--executor", "slurm")
    assert result.exit_code == 2, result.output
    assert "`sbatch` is not on PATH" in result.output and result.output.count("error:") == 1
    assert not runs_root.exists() or Ledger(runs_root).list_runs() == []
    assert not (runs_root / "sweeps").exists()


BAD = [
    (["--grid", "model.backbone.nope=1,2"], "unknown key 'model.backbone.nope'"),
    (["--grid", "optim_wrapper.optimizer.lrr=1e-4,2e-4"], "closest valid keys: optim_wrapper.optimizer.lr"),
    (["--grid", "optimizer.lr="], "--grid optimizer.lr: no values given"),
    (["--grid", "optimizer.lr"], "not of the form dotted.key="),
    (["--seeds", "0"], "--seeds 0: repeat every point at least once"),
    (["--grid", "optimizer.lr=1e-4,2e-4", "--grid", "optimizer.lr=3e-4"], "given twice"),
    (["--grid", "optimizer.lr=1e-4,1.0e-4"], "resolve to the same config"),
    (["--grid", "optimizer.lr=fast,slow"], "key 'optimizer.lr'"),
    (["--grid", "a=1,2", "--tie", "a=seed*2", "--seeds", "2"],
     "conflicting ties: a is swept by --grid and tied by --tie a=seed*2"),
    (["--grid", "optimizer.lr=1e-4,2e-4", "--tie", "x=y*2", "--tie", "y=x*2"], "conflicting ties: x -> y -> x"),
    (["--grid", "optimizer.lr=1e-4,2e-4", "--tie", "optimizer.weight_decay=optimizer.lrr*10"],
     "'optimizer.lrr' is not a swept key"),
    (["--grid", "optimizer.lr=1e-4,2e-4", "--tie", "optimizer.weight_decay=__import__('os')"], "only swept keys"),
    (["--random", "4", "--param", "optimizer.lr=loguniform(1e-5,1e-3)"], "a random search needs --seed S"),
    (["--random", "4", "--seed", "1"], "--random needs at least one --param"),
    (["--param", "optimizer.lr=loguniform(1e-5,1e-3)"], "--param needs --random N"),
    (["--grid", "optimizer.lr=1e-4,2e-4", "--seed", "3"], "--seed S seeds the random search and needs --random N"),
    (["--random", "2", "--seed", "1", "--param", "optimizer.lr=gauss(0,1)"], "unknown distribution 'gauss'"),
    (["--zip", "optimizer.lr=1e-4,2e-4", "--zip", "model.backbone.drop_path_rate=0.1"],
     "zip lists must have the same length"),
    (["--grid", "resources.cpus_per_task=1,2"], "resources.cpus_per_task: 1 vs 2"),
    (["--grid", "resources.time_limit=00:10:00,00:20:00"], "--split-arrays"),
    (["--grid", "optimizer.lr=1e-4,2e-4", "--set", "optimizer.lr=3e-4"], "optimizer.lr is both --set and swept"),
    ([], "nothing to sweep"),
    (["--grid", "optimizer.lr=1e-4,2e-4", "--name", "no/slashes"], "sweep name 'no/slashes'"),
    (["--grid", "optimizer.lr=1e-4,2e-4", "--executor", "pbs"], "--executor pbs: choose one of auto, local, slurm"),
    (["--grid", "optimizer.lr=1e-4,2e-4", "--retry-failed", "--force"], "give one"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a)[:60] or "empty" for a, _ in BAD])
def test_bad_input_is_one_clear_error_exit_2_and_nothing_is_submitted(swinctl, runs_root, args, message):
    result = swinctl("sweep", "upernet-swin-t", "--smoke", "--executor", "local", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert not runs_root.exists() or Ledger(runs_root).list_runs() == []
    assert not (runs_root / "sweeps").exists() or not any((runs_root / "sweeps").glob("*/submitit"))


def test_a_bad_sweep_file_is_a_clear_error(swinctl, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"recipe": "upernet-swin-t", "grid": {"optimizer.lr": [1e-4]}, "grdi": {}}))
    result = swinctl("sweep", bad, "--executor", "local")
    assert result.exit_code == 2 and "unknown key 'grdi'" in result.output
    bad.write_text(yaml.safe_dump({"recipe": "upernet-swin-t", "grid": {"optimizer.lr": []}}))
    result = swinctl("sweep", bad, "--executor", "local")
    assert result.exit_code == 2 and "empty list of values" in result.output
    bad.write_text(yaml.safe_dump({"recipe": "upernet-swin-t", "grid": {"optimizer.lr": 1e-4}}))
    result = swinctl("sweep", bad, "--executor", "local")
    assert result.exit_code == 2 and "key 'grid.optimizer.lr'" in result.output


# ---------------------------------------------------------------------------------------------- real local sweeps


@pytest.mark.slow
def test_local_grid_completes_dedupes_and_shares_points_across_sweeps(swinctl, runs_root):
    first = swinctl("sweep", "upernet-swin-t", *TINY, "--executor", "local", "--wandb", "offline", "--name", "lr-a",
                    "--grid", "optim_wrapper.optimizer.lr=1e-4,2e-4", "--max-parallel", "2", "--wait")
    assert first.exit_code == 0, first.output
    ledger = Ledger(runs_root)
    runs = ledger.list_runs(sweep="lr-a")
    assert len(runs) == 2 and all(r.state == "COMPLETED" and "mIoU" in r.metrics for r in runs)
    assert {tuple(r.overrides[-1:]) for r in runs} == {("optim_wrapper.optimizer.lr=0.0001",),
                                                       ("optim_wrapper.optimizer.lr=0.0002",)}
    # W&B: one group per sweep, job type train, the point's overrides as tags, the run id as a readable name.
    config = (runs[1].run_dir / "config.py").read_text()
    assert "group='lr-a'" in config and "job_type='train'" in config and "'lr=0.0002'" in config
    assert f"name='{runs[1].id}'" in config and list((runs[1].run_dir / "wandb").glob("offline-run-*"))
    assert "★ best" in first.output

    again = swinctl("sweep", "upernet-swin-t", *TINY, "--executor", "local", "--wandb", "offline", "--name", "lr-a",
                    "--grid", "optim_wrapper.optimizer.lr=1e-4,2e-4")
    assert again.exit_code == 0, again.output
    assert "nothing to submit" in again.output and len(ledger.list_runs()) == 2

    changed = swinctl("sweep", "upernet-swin-t", *TINY, "--executor", "local", "--name", "lr-a",
                      "--grid", "optim_wrapper.optimizer.lr=3e-4,4e-4")
    assert changed.exit_code == 2 and "already exists with a different space (grid: " in changed.output

    # Another sweep sharing the 2e-4 point: only 3e-4 trains; the shared run is shown, not hidden.
    second = swinctl("sweep", "upernet-swin-t", *TINY, "--executor", "local", "--wandb", "disabled", "--name", "lr-b",
                     "--grid", "optim_wrapper.optimizer.lr=2e-4,3e-4", "--wait")
    assert second.exit_code == 0, second.output
    assert len(ledger.list_runs()) == 3 and len(ledger.list_runs(sweep="lr-b")) == 1
    shared = next(r for r in runs if r.overrides[-1].endswith("0.0002"))
    assert f"shared with {shared.id}" in second.output
    rows = sw.sweep_rows(ledger, "lr-b")
    assert [r.shared for r in rows] == [True, False] and rows[0].row.record.id == shared.id
    assert all(r.row.record.state == "COMPLETED" for r in rows)
    assert json.loads(json.dumps([r.to_json() for r in rows]))[0]["run"]["id"] == shared.id
