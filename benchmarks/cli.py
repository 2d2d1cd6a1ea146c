"""CLI overhead against its peer, side by side: `swinctl --help` vs `mim --help`, and a whole
`swinctl run --smoke --wait` vs `mim train` on the very config swinctl rendered (same machine, interleaved runs).

    .venv/bin/python benchmarks/cli.py [--repeat 5] [--recipe upernet-swin-t]

Goals (issue 2): --help in at most half of mim's; a smoke run within 1.1x of calling `mim train` directly.
Writes benchmarks/results/cli.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--train-repeat", type=int, default=3)
    parser.add_argument("--recipe", default="upernet-swin-t")
    args = parser.parse_args()

    swinctl, mim = str(BIN / "swinctl"), str(BIN / "mim")
    help_times: dict[str, list[float]] = {"swinctl --help": [], "mim --help": []}
    for _ in range(args.repeat):  # interleaved, so background load hits both alike
        help_times["swinctl --help"].append(timed([swinctl, "--help"]))
        help_times["mim --help"].append(timed([mim, "--help"]))

    work = Path(tempfile.mkdtemp(prefix="swinctl-bench-"))
    env = {**os.environ, "SWINCTL_RUNS": str(work / "runs"), "WANDB_MODE": "disabled"}
    codebase = "mmdet" if args.recipe.startswith("maskrcnn") else "mmseg"
    train_times: dict[str, list[float]] = {"swinctl run --smoke --wait": [], "mim train (same config)": []}
    for i in range(args.train_repeat):
        train_times["swinctl run --smoke --wait"].append(timed(
            [swinctl, "run", args.recipe, "--smoke", "--executor", "local", "--wandb", "disabled", "--wait"], env))
        [run_dir] = sorted((work / "runs").glob(f"{args.recipe}-smoke-*"), key=lambda p: p.stat().st_mtime)[-1:]
        train_times["mim train (same config)"].append(timed(
            [mim, "train", codebase, str(run_dir / "config.py"), "--work-dir", str(work / f"mim-{i}"),
             "--launcher", "none", "--gpus", "0"],
            {**env, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}))
    shutil.rmtree(work, ignore_errors=True)

    def summary(times: dict[str, list[float]], ours: str, peer: str) -> dict:
        med = {k: statistics.median(v) for k, v in times.items()}
        return {"median_s": med, "all_s": times, "ratio_ours_over_peer": med[ours] / med[peer]}

    result = {
        "help": summary(help_times, "swinctl --help", "mim --help"),
        "smoke_run": summary(train_times, "swinctl run --smoke --wait", "mim train (same config)"),
        "recipe": args.recipe, "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(result, indent=2))
    for name, block in (("help", result["help"]), ("smoke run", result["smoke_run"])):
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in block["median_s"].items())
        print(f"{name}: {parts}; ratio {block['ratio_ours_over_peer']:.2f}x")


if __name__ == "__main__":
    main()
