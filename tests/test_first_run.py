"""The first commands a user types: a smoke run that learns and says what its numbers mean, a dry run that works on
any machine (offline, without the data) and shows its summary before the config, and `run --wait` progress that
says what the run is doing with an ETA that does not jump (replayed from recorded logs, not timed)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from swinctl import results
from swinctl.cli.run import Eta, follow_fields
from swinctl.runs.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "tests" / "fixtures" / "logs"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# (columns, a terminal or not): rich lays out for a terminal (TTY_COMPATIBLE) or a pipe
MODES = [(80, False), (80, True), (200, False), (200, True)]
MODE_IDS = ["80-piped", "80-terminal", "200-piped", "200-terminal"]


def swinctl(*args, width: int = 80, terminal: bool = False, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """The real CLI in a process of its own (its console decides terminal or pipe at start), colour off."""
    full = {**os.environ, "COLUMNS": str(width), "PYTHONPATH": str(REPO), **(env or {})}
    full.pop("TTY_COMPATIBLE", None)
    if terminal:
        full.update(TTY_COMPATIBLE="1", NO_COLOR="1")
    done = subprocess.run([sys.executable, "-m", "swinctl.cli", *map(str, args)], env=full, capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=timeout)
    done.stdout = ANSI.sub("", done.stdout)
    return done


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_network(tmp_path) -> dict:
    """Every download goes to a proxy port nobody listens on; the torch hub cache is empty; SWINCTL_OFFLINE unset."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    env = {key: proxy for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    return {**env, "NO_PROXY": "", "no_proxy": "", "SWINCTL_OFFLINE": "", "TORCH_HOME": str(tmp_path / "torch")}


# ------------------------------------------------------------------------------------------------ dry runs


@pytest.mark.parametrize("width, terminal", MODES, ids=MODE_IDS)
def test_a_dry_run_works_offline_without_the_data_and_shows_its_summary_before_any_config(tmp_path, no_network,
                                                                                          width, terminal):
    root = tmp_path / "runs"
    done = swinctl("run", "maskrcnn-swin-t", "--executor", "slurm", "--set", "data.root=/nonexistent/coco",
                   "--runs-root", root, "--dry-run", width=width, terminal=terminal, env=no_network)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    lines = out.splitlines()
    words = " ".join(out.split())
    # what it could not check is named, once each, and fails nothing
    assert "no deviations and 2 notes against the published setting" in lines
    assert "data not verified: /nonexistent/coco is not on this machine (no annotations/instances_train2017.json);" \
           " a real run needs COCO there" in words
    assert "pretrained weights not verified: not in the torch hub cache, and a dry run downloads nothing" in words
    assert "split not counted" not in words  # the missing root says it, once
    assert not (tmp_path / "torch").exists() and not root.exists()  # nothing downloaded, nothing written
    # the summary (command, sbatch script, deviations) first; no config without --config
    [command] = [line for line in lines if line.endswith("--launcher slurm")]  # whole on one line: data
    assert "/tools/train.py" in command
    order = [out.index(command), out.index("#SBATCH --nodes=1"), out.index("against the published setting")]
    assert order == sorted(order)
    assert "model = dict(" not in out and re.search(r"rendered config: \d+ lines, not shown \(--config prints it\)",
                                                    out)
    legend = next(line for line in lines if line.strip().startswith("marks: - a note, not a change"))
    assert len(legend) <= width


@pytest.mark.parametrize("width, terminal", [(80, False), (200, True)], ids=["80-piped", "200-terminal"])
def test_a_dry_run_with_config_prints_the_config_after_the_summary(tmp_path, width, terminal):
    done = swinctl("run", "maskrcnn-swin-t", "--smoke", "--executor", "local", "--runs-root", tmp_path / "runs",
                   "--dry-run", "--config", width=width, terminal=terminal)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("--launcher none") < out.index("against the published setting") < out.index("model = dict(")
    assert "rendered config:" not in out
    # a real run never takes --config
    wrong = swinctl("run", "maskrcnn-swin-t", "--smoke", "--config", "--runs-root", tmp_path / "runs")
    assert wrong.returncode == 2 and wrong.stderr.count("error:") == 1 and "add --dry-run" in wrong.stderr


def test_a_real_run_still_refuses_what_a_dry_run_could_not_check(tmp_path, no_network):
    from swinctl.data import demo

    root = tmp_path / "runs"
    missing = swinctl("run", "maskrcnn-swin-t", "--executor", "local", "--set", "data.root=/nonexistent/coco",
                      "--runs-root", root, env=no_network)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert missing.stderr.count("error:") == 1 and "COCO not found at /nonexistent/coco" in missing.stderr
    offline = swinctl("run", "maskrcnn-swin-t", "--executor", "local", "--set", f"data.root={demo.ensure('coco')}",
                      "--runs-root", root, env=no_network)
    assert offline.returncode == 2, offline.stdout + offline.stderr
    assert offline.stderr.count("error:") == 1 and "cannot be downloaded" in offline.stderr
    assert "SWINCTL_OFFLINE=1" in offline.stderr  # the way to queue it anyway
    assert not root.exists() or Ledger(root).list_runs() == []


# ---------------------------------------------------------------------------------------- --wait progress


def _stamp(line: str) -> float | None:
    try:
        return datetime.strptime(line[:19], "%Y/%m/%d %H:%M:%S").timestamp()
    except ValueError:
        return None


def replay(run_dir: Path, tmp_path: Path, state: str = "RUNNING") -> list[tuple[float, dict]]:
    """`run --wait`'s view of a recorded run, polled every second as it does: its text log is written out line by
    line at the times the lines carry (mtime too), and each poll reads it with the real parser."""
    [src] = list((run_dir / "work_dir").glob("2*/2*.log"))
    lines, stamps, last = src.read_text().splitlines(keepends=True), [], None
    for line in lines:
        last = _stamp(line) or last
        stamps.append(last)
    dst = tmp_path / "work_dir" / src.parent.name / src.name
    (dst.parent / "vis_data").mkdir(parents=True)
    shutil.copy(src.parent / "vis_data" / "config.py", dst.parent / "vis_data" / "config.py")
    eta, shown, written = Eta(), [], 0
    now = stamps[0] - 10  # submitted ten seconds before the log's first line
    while now <= stamps[-1] + 2:
        upto = sum(1 for t in stamps if t <= now)
        if upto != written:
            dst.write_text("".join(lines[:upto]))
            os.utime(dst, (stamps[upto - 1], stamps[upto - 1]))
            written = upto
        progress = results.read_progress(tmp_path / "work_dir") if written else None
        shown.append((now, follow_fields(state, progress, eta, now)))
        now += 1
    return shown


def _runs(values: list) -> list:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


@pytest.mark.parametrize("fixture", ["swinctl_smoke", "swinctl_smoke_loaded"])
def test_wait_says_starting_training_and_validating_and_its_eta_does_not_jump(fixture, tmp_path):
    shown = replay(LOGS / fixture / "maskrcnn-swin-t", tmp_path)
    notes = _runs([fields["note"] for _, fields in shown])
    assert notes[:2] == ["starting", "training"] and notes.count("validating") == 2, notes
    assert set(notes) <= {"starting", "training", "validating", "finishing"}, notes
    # no "0/?" while starting: the count appears with the first progress line, out of the whole schedule (2 x 8)
    assert {(f["count"], f["eta"]) for _, f in shown if f["note"] == "starting"} == {("", "")}
    counts = [f["count"] for _, f in shown if f["count"]]
    assert counts[0] == "2/16 iters" and counts[-1] == "16/16 iters"
    seconds = [(t, _seconds(f["eta"])) for t, f in shown if f["eta"]]
    log_etas = [_seconds(line) for line in _log(fixture).splitlines() if "Epoch(train)" in line and "eta:" in line]
    biggest_log_drop = max(a - b for a, b in zip(log_etas, log_etas[1:], strict=False))
    assert biggest_log_drop >= 5  # the log's own eta jumps (the first iterations are slow)
    for (t, a), (_, b) in zip(seconds, seconds[1:], strict=False):
        assert b <= a + 1, (t, a, b)  # never up by more than rounding
        assert a - b <= 1 + biggest_log_drop / 4, (t, a, b)  # and down steadily: not the log's own jumps
    # it holds still while validating
    stretches: list[set] = []
    for (_, before), (_, f) in zip(shown, shown[1:], strict=False):
        if f["note"] == "validating":
            if before["note"] != "validating":
                stretches.append(set())
            stretches[-1].add(f["eta"])
    assert len(stretches) == 2 and all(len(etas) == 1 for etas in stretches), stretches


def _seconds(text: str) -> int:
    h, m, s = (int(x) for x in re.search(r"(?:eta:? )(\d+):(\d\d):(\d\d)", text).groups())
    return h * 3600 + m * 60 + s


def _log(fixture: str) -> str:
    [src] = list((LOGS / fixture / "maskrcnn-swin-t" / "work_dir").glob("2*/2*.log"))
    return src.read_text()


# ------------------------------------------------------------------------------------------- smoke profiles


def test_the_learn_profile_is_the_recipes_smoke_learn_and_set_still_wins(tmp_path):
    from swinctl.recipes import load_recipe
    from swinctl.runs import lifecycle as runs

    learn = load_recipe("maskrcnn-swin-t").smoke.learn_overrides()
    options = dict(executor="local", root=tmp_path / "runs", fetch=False, run_id="x")
    by_profile = runs.prepare("maskrcnn-swin-t", smoke=True, smoke_profile="learn", **options)
    by_hand = runs.prepare("maskrcnn-swin-t", smoke=True, overrides=learn, **options)
    fast = runs.prepare("maskrcnn-swin-t", smoke=True, **options)
    assert by_profile.signature == by_hand.signature != fast.signature
    assert by_profile.recipe.model.backbone.embed_dims == 32 and fast.recipe.model.backbone.embed_dims == 16
    mine = runs.prepare("maskrcnn-swin-t", smoke=True, smoke_profile="learn", overrides=["schedule.max_epochs=2"],
                        **options)
    assert mine.recipe.schedule.max_epochs == 2 and mine.recipe.model.backbone.embed_dims == 32


def test_what_a_smoke_runs_numbers_mean_is_said_for_each_profile():
    from swinctl.cli.run import what_smoke_means
    from swinctl.recipes import load_recipe

    learn = what_smoke_means(load_recipe("maskrcnn-swin-t"), "learn")
    assert learn == ("smoke run (learn profile) on generated demo data: these numbers show that the pipeline learns; "
                     "they are not comparable with the published 42.6 bbox_mAP / 39.5 segm_mAP")
    assert what_smoke_means(load_recipe("upernet-swin-t"), "learn").endswith("the published 44.3 mIoU")
    fast = what_smoke_means(load_recipe("maskrcnn-swin-t"), "fast")
    assert "numbers near 0 are expected" in fast and fast.endswith("`--smoke-profile learn` trains one that does "
                                                                   "(about a minute on 2 idle CPU cores)")
    zoo = what_smoke_means(load_recipe("dino-swin-l-12e-coco"), "fast")
    assert zoo.endswith("not that it learns")  # no learning profile to offer


def test_help_names_the_smoke_profiles_and_config(tmp_path):
    for verb in ("run", "test"):
        done = swinctl(verb, "--help", width=200)
        text = " ".join(done.stdout.split())
        assert "--smoke-profile" in text and "[fast | learn]" in text and "--config" in text, text
