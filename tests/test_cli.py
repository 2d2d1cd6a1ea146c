"""The CLI: fast start, listings, dry runs, and bad input -> one clear error, exit 2, nothing written."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from rich.cells import cell_len

from swinctl.runs.ledger import Ledger


def test_cli_start_imports_no_torch_or_openmmlab_or_timm():
    code = ("import sys; import swinctl.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'mmengine', 'mmdet', 'mmseg', 'mmcv', "
            "'submitit', 'wandb', 'mim', 'timm')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_the_verbs(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for verb in ("run", "test", "recipes", "show", "status", "logs", "cancel", "doctor", "data"):
        assert verb in result.output


def test_recipes_lists_bundled_recipes(cli):
    result = cli("recipes")
    assert result.exit_code == 0, result.output
    for name in ("maskrcnn-swin-t", "maskrcnn-swin-t-fp16", "upernet-swin-t"):
        assert name in result.output
    assert "42.6" in result.output and "44.3" in result.output


def test_show_prints_recipe_and_rendered_config(cli):
    result = cli("show", "upernet-swin-t", "--config", "--set", "optimizer.lr=1e-4")
    assert result.exit_code == 0, result.output
    assert "lr: 0.0001" in result.output
    assert "swinctl.SwinTransformer" in result.output and "PolyLR" in result.output


def test_dry_run_prints_config_and_command_and_writes_nothing(cli, runs_root):
    result = cli("run", "maskrcnn-swin-t", "--smoke", "--executor", "local", "--dry-run", "--config")
    assert result.exit_code == 0, result.output
    assert "dry run: nothing submitted" in result.output
    assert ".mim/tools/train.py" in result.output and "--launcher none" in result.output
    # the summary first, the config (only with --config) after it
    assert result.output.index("--launcher none") < result.output.index("against the published setting") \
        < result.output.index("swinctl.SwinTransformer")
    assert not runs_root.exists() or not any(p for p in runs_root.iterdir() if p.name != "ledger.sqlite")
    assert not runs_root.exists() or Ledger(runs_root).list_runs() == []


def test_slurm_dry_run_prints_the_sbatch_script_of_a_two_node_job(cli, runs_root, no_slurm_client):
    result = cli("run", "maskrcnn-swin-t", "--smoke", "--executor", "slurm", "--gpus", "16", "--nodes", "2",
                 "--partition", "gpu", "--time", "2:00:00", "--set", "resources.exclusive=true", "--dry-run")
    assert result.exit_code == 0, result.output
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=gpu", "#SBATCH --time=120", "#SBATCH --signal=USR2@120", "#SBATCH --exclusive\n",
                 "srun --unbuffered"):
        assert line in result.output, line
    assert "--launcher slurm" in result.output  # one task per GPU; MMEngine reads SLURM_PROCID etc.
    assert not runs_root.exists() or Ledger(runs_root).list_runs() == []


def test_cpu_tasks_run_through_the_gloo_shim(cli, no_slurm_client):
    result = cli("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--set", "resources.tasks_per_node=2",
                 "--set", "resources.time_limit=1", "--dry-run")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "-m swinctl.job.cpu_dist" in out and "--launcher pytorch" in out
    assert "model_wrapper_cfg.type=swinctl.CPUDistributedDataParallel env_cfg.dist_cfg.backend=gloo" in out
    # a 1-minute limit (a bare number is minutes) still gets its USR2 before slurmctld's 30-s check kills it
    assert "#SBATCH --ntasks-per-node=2" in out and "#SBATCH --time=1 " in out and "#SBATCH --signal=USR2@10" in out


def test_slurm_without_sbatch_is_one_error_and_writes_nothing(cli, runs_root, no_slurm_client):
    result = cli("run", "maskrcnn-swin-t", "--smoke", "--executor", "slurm")
    assert result.exit_code == 2, result.output
    assert "`sbatch` is not on PATH" in result.stderr and "--executor local" in result.stderr
    assert not runs_root.exists() or not any(p for p in runs_root.iterdir() if p.name != "ledger.sqlite")


def test_unknown_run_in_status_logs_cancel(cli, runs_root):
    for verb in ("status", "logs", "cancel"):
        result = cli(verb, "nope-123")
        assert result.exit_code == 2 and "no run" in result.stderr, (verb, result.output)


def test_demo_data_is_generated_once(cli, tmp_path):
    first = cli("data", "demo", "coco", "--root", tmp_path)
    assert first.exit_code == 0, first.output
    [root] = [p for p in tmp_path.iterdir() if p.name.startswith("demo-coco")]
    stamp = (root / "annotations" / "instances_train2017.json").stat().st_mtime_ns
    assert cli("data", "demo", "coco", "--root", tmp_path).exit_code == 0
    assert (root / "annotations" / "instances_train2017.json").stat().st_mtime_ns == stamp


def test_show_piped_is_the_whole_recipe_and_config_never_cut(tmp_path):
    # a real pipe at 80 columns: the recipe's URLs are longer than that and must come out whole (it is data)
    env = {"COLUMNS": "80", "PATH": "/usr/bin:/bin", "SWINCTL_DATA": str(tmp_path)}
    swinctl = [sys.executable, "-m", "swinctl.cli"]
    shown = subprocess.run([*swinctl, "show", "maskrcnn-swin-t"], capture_output=True, text=True, env=env,
                           check=True).stdout
    import yaml

    from swinctl import recipes

    assert yaml.safe_load(shown) == yaml.safe_load(recipes.dump_recipe(recipes.load_recipe("maskrcnn-swin-t")))
    assert "swin_tiny_patch4_window7_224.pth\n" in shown
    config = subprocess.run([*swinctl, "show", "maskrcnn-swin-t", "--config"], capture_output=True, text=True,
                            env=env, check=True).stdout
    assert max(len(line) for line in config.splitlines()) > 80  # nothing folded or cut to the width
    assert "'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth'" \
        in config  # (laid out by MMEngine's own formatter, a line of its own)


# ---------------------------------------------------------------------------------------------- --help

def _commands() -> dict:
    """Every verb's click command by its path ("run", "data demo")."""
    import typer.main

    from swinctl.cli import app

    found, todo = {}, [("", typer.main.get_command(app))]
    while todo:
        path, command = todo.pop()
        for name, sub in getattr(command, "commands", {}).items():
            todo.append((f"{path} {name}".strip(), sub))
        if path and not hasattr(command, "commands"):
            found[path] = command
    return found


def _choices(param) -> list[str] | None:
    choices = getattr(param, "type_descriptor", None) and param.type_descriptor.choices
    return [str(c) for c in choices] if choices else None


# each verb's --help, one process: the sections split on "=== PATH"
HELP = ("import sys\nfrom swinctl.cli import app\nfor path in sys.argv[1:]:\n    print('=== ' + path, flush=True)\n"
        "    try:\n        app([*path.split(), '--help'], prog_name='swinctl')\n    except SystemExit:\n        pass\n")
USAGE = {"run": "RECIPE", "test": "RECIPE", "sweep": "RECIPE|SWEEP.yaml", "status": "[RUN|SWEEP|RECIPE]...",
         "logs": "RUN", "cancel": "RUN|SWEEP...", "report": "[RUN|SWEEP|RECIPE]...", "recipes": "[TEXT]",
         "show": "RECIPE", "doctor": "[RECIPE]", "convert-checkpoint": "SRC DST", "data demo": "[KIND]"}


@pytest.mark.parametrize("piped", [True, False], ids=["piped", "terminal"])
@pytest.mark.parametrize("width", (80, 200))
def test_help_shows_flags_as_flags_lists_choices_and_names_positionals_alike(width, piped):
    """Every verb's --help, through a pipe and on a terminal: a flag has no type after it (`--smoke`, not
    `--smoke <bool>`), a fixed set of values is listed, no typer type label (`<str>`, `<list[str]>`) is left,
    positionals are upper-case words in the usage line, nothing is cut or wider than the terminal."""
    from test_views_width import cli_piped, cli_tty

    commands = _commands()
    assert set(USAGE) == set(commands)
    run = cli_piped if piped else cli_tty
    out = run(*commands, width=width, argv=("-c", HELP))
    sections = dict(re.findall(r"^=== (.+)\n((?:(?!=== ).*\n?)*)", out, flags=re.M))
    assert set(sections) == set(commands), out
    for path, command in commands.items():
        text = sections[path]
        assert max(cell_len(line.rstrip()) for line in text.splitlines()) <= width, text
        assert "…" not in text, text
        assert not re.search(r"<(bool|str|int|float|path|list)", text) and "VALUE" not in text.split(), text
        assert re.search(rf"Usage: swinctl {path} \[OPTIONS\] {re.escape(USAGE[path])} *$", text, flags=re.M), text
        words = {w.strip("[]|,") for w in text.split()}
        lines = text.splitlines()
        for param in command.params:
            choices = _choices(param)
            if choices:
                assert set(choices) <= words, (path, param.name, text)
            if getattr(param, "is_flag", False):
                long = max(param.opts, key=len)
                (row,) = [line for line in lines if re.search(rf"│ {re.escape(long)}\s", line)]
                after = [w for w in row.split(long, 1)[1].split() if w not in param.opts]
                assert after[0] == param.help.split()[0], (path, long, row)


def test_cli_choices_are_the_ones_the_libraries_check():
    """The CLI lists its choices as Literals (a light start); they are the lists the library modules check."""
    import typing

    from swinctl import recipes
    from swinctl.backends import BACKENDS
    from swinctl.data.demo import KINDS
    from swinctl.job.spec import _PACKAGES
    from swinctl.models.checkpoints import SHAPES, TARGETS
    from swinctl.report.model import FORMATS
    from swinctl.runs.lifecycle import SMOKE_PROFILES, WANDB_MODES

    choices = {(path, param.name): _choices(param) for path, command in _commands().items()
               for param in command.params if _choices(param)}
    expected = {"executor": ["auto", *sorted(BACKENDS)], "wandb": list(WANDB_MODES), "fmt": list(FORMATS),
                "source": ["local", "wandb"], "codebase": list(_PACKAGES), "task": list(typing.get_args(recipes.Task)),
                "to": list(TARGETS), "shape": list(SHAPES), "kind": [*KINDS, "all"], "test_after": ["last", "best"],
                "smoke_profile": list(SMOKE_PROFILES)}
    for (path, name), listed in choices.items():
        assert listed == expected[name], (path, name)
    assert {name for _, name in choices} == set(expected)
