"""Benchmark `swinctl sweep`: a 100-point grid, from the command line to 100 array tasks queued on local SLURM.

    .venv/bin/python benchmarks/sweep.py [--points 100] [--repeats 3] [--naive 3] [--plan-points 1000] [--plan-only]

Each repeat runs the real command in a fresh process (interpreter start and imports included) against a fresh runs
root on the cluster started by scripts/local-slurm.sh (tests/slurm_cluster.py; $SWINCTL_SLURM_DIR honoured):

    swinctl sweep upernet-swin-t --smoke --grid optim_wrapper.optimizer.lr=<10 values>
                  --grid optim_wrapper.optimizer.weight_decay=<10 values> --executor slurm --wandb disabled
                  --set resources.sbatch_args.begin=now+1hour      # held: queued, never started

and stops the clock when the command returns; it then checks that squeue holds all the points as tasks of one array
and that `sbatch` ran once (PATH leads to a shim that counts calls and execs the real sbatch), and cancels them.
A second, in-process pass times the phases (plan; run dirs, ledger rows, sbatch and job ids), and `--naive N` times
N points through `runs.prepare` one by one (a full render and format per point) for comparison. Goal: at most 3 s
from command to all points queued, one sbatch call. First, `planning` times planning and signing a 1,000-point
sweep over two recipe fields, where every point is a recipe variant of its own (goal: at most 5 s); `--plan-only`
runs just that, without a cluster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tests/slurm_cluster.py: the local cluster's start/env helpers
CLI = "from swinctl import cli\ncli.app(prog_name='swinctl')\n"


def grid_args(points: int) -> list[str]:
    side = max(1, round(points ** 0.5))
    other = points // side
    lrs = ",".join(f"{(i + 1) * 1e-5:.1e}" for i in range(side))
    wds = ",".join(f"{(i + 1) * 1e-2:.2f}" for i in range(other))
    return ["--grid", f"optim_wrapper.optimizer.lr={lrs}", "--grid", f"optim_wrapper.optimizer.weight_decay={wds}"]


def command(points: int, name: str) -> list[str]:
    return ["sweep", "upernet-swin-t", "--smoke", *grid_args(points), "--executor", "slurm", "--wandb", "disabled",
            "--set", "resources.sbatch_args.begin=now+1hour", "--name", name]


def sbatch_shim(folder: Path, real: str) -> Path:
    log = folder / "sbatch-calls.log"
    shim = folder / "sbatch"
    shim.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    return log


def queued(job_name: str, env: dict) -> list[str]:
    out = subprocess.run(["squeue", "-r", "-h", "--name", job_name, "-o", "%i"], capture_output=True, text=True,
                         env=env).stdout
    return out.split()


def one_repeat(points: int, env: dict, index: int) -> dict:
    from swinctl import sweep as sw
    from swinctl.runs.ledger import Ledger

    with tempfile.TemporaryDirectory(prefix="swinctl-bench-") as tmp:
        tmp = Path(tmp)
        root = tmp / "runs"
        log = sbatch_shim(tmp, "/usr/bin/sbatch" if Path("/usr/bin/sbatch").exists() else "sbatch")
        run_env = {**env, "SWINCTL_RUNS": str(root), "PATH": f"{tmp}{os.pathsep}{env['PATH']}",
                   "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}
        name = f"bench-{os.getpid()}-{index}"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CLI, *command(points, name)], capture_output=True, text=True,
                              env=run_env)
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"swinctl sweep failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        ledger = Ledger(root)
        [sub] = ledger.submissions()
        job_name, job_id = sub.job_name, sub.job_id
        tasks = queued(job_name, run_env)
        calls = len(log.read_text().splitlines()) if log.exists() else 0
        subprocess.run(["scancel", "--name", job_name], capture_output=True, env=run_env)
        runs = ledger.list_runs(sweep=name)
        assert len(runs) == points and all(r.job_id and r.job_id.startswith(f"{job_id}_") for r in runs)
        assert sw.sweep_rows is not None
        return {"wall_s": wall, "tasks": len(tasks), "arrays": len({t.split("_")[0] for t in tasks}),
                "sbatch_calls": calls, "job_id": job_id}


def phases(points: int, env: dict) -> dict[str, float]:
    """The same sweep in-process, phase by phase (imports already paid)."""
    os.environ.update(env)
    from swinctl import sweep as sw
    from swinctl.runs.ledger import Ledger

    with tempfile.TemporaryDirectory(prefix="swinctl-bench-") as tmp:
        root = Path(tmp) / "runs"
        args = command(points, "bench-phases")
        grid = [args[i + 1] for i, a in enumerate(args) if a == "--grid"]
        space = sw.load_space("upernet-swin-t", smoke=True, grid=grid, name="bench-phases",
                              sets=["resources.sbatch_args.begin=now+1hour"])
        out = {}
        t = time.perf_counter()
        plan = sw.plan(space, executor="slurm", wandb="disabled", root=root)
        out["plan (render once, patch per point)"] = time.perf_counter() - t
        ledger = Ledger(root)
        sw.decide(plan, ledger, retry_failed=False, force=False)
        t = time.perf_counter()
        [submitted] = sw.submit(plan, ledger)
        out["run dirs, ledger rows, one sbatch, job ids"] = time.perf_counter() - t
        [sub] = ledger.submissions(sweep="bench-phases")
        subprocess.run(["scancel", "--name", sub.job_name], capture_output=True)
        assert submitted.job_id == sub.job_id
        return out


def planning(points: int) -> tuple[float, int]:
    """Seconds to plan and sign a `points`-point sweep over two recipe fields (every point its own recipe variant),
    in-process; no cluster needed. Goal: at most 5 s for 1,000 points."""
    from swinctl import sweep as sw

    side = max(d for d in range(1, int(points ** 0.5) + 1) if points % d == 0)  # 1,000 = 25 x 40
    lrs = ",".join(f"{(i + 1) * 1e-5:.2e}" for i in range(side))
    wds = ",".join(f"{(i + 1) * 1e-3:.3f}" for i in range(points // side))
    space = sw.load_space("upernet-swin-t", smoke=True, grid=[f"optimizer.lr={lrs}", f"optimizer.weight_decay={wds}"],
                          name="bench-plan")
    with tempfile.TemporaryDirectory(prefix="swinctl-bench-") as tmp:
        t = time.perf_counter()
        plan = sw.plan(space, executor="local", wandb="disabled", root=Path(tmp))
        seconds = time.perf_counter() - t
    assert len({p.signature for p in plan.points}) == len(plan.points)
    return seconds, len(plan.points)


def naive(n: int) -> float:
    """Seconds per point through runs.prepare (a full render and format per point)."""
    from swinctl.runs import lifecycle as runs

    t = time.perf_counter()
    for i in range(n):
        runs.prepare("upernet-swin-t", overrides=[f"optim_wrapper.optimizer.lr={(i + 1) * 1e-5:.1e}"], smoke=True,
                     executor="slurm", wandb="disabled", root=Path(tempfile.gettempdir()) / "swinctl-bench-naive")
    return (time.perf_counter() - t) / max(n, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive", type=int, default=3, help="points to time through runs.prepare (0: skip)")
    parser.add_argument("--plan-points", type=int, default=1000, help="points of the recipe-field planning run")
    parser.add_argument("--plan-only", action="store_true", help="only the planning measurement (no cluster)")
    args = parser.parse_args()
    seconds, planned = planning(args.plan_points)
    print(f"planning: {planned} points over recipe fields (one variant each) planned and signed in {seconds:.2f} s "
          f"(goal: <= 5 s for 1,000)")
    if args.plan_only:
        print("RESULT", "PASS" if seconds <= 5.0 * args.plan_points / 1000 else "FAIL", f"{seconds:.2f} s")
        return

    from slurm_cluster import start_cluster

    env = {**os.environ, **start_cluster()}
    results = [one_repeat(args.points, env, i) for i in range(args.repeats)]
    walls = [r["wall_s"] for r in results]
    print(f"swinctl sweep, {args.points}-point grid -> local SLURM ({args.repeats} repeats, fresh process each):")
    for r in results:
        print(f"  {r['wall_s']:.2f} s   {r['tasks']} tasks queued in {r['arrays']} array (job {r['job_id']}), "
              f"{r['sbatch_calls']} sbatch call(s)")
    print(f"  min {min(walls):.2f} s, median {statistics.median(walls):.2f} s   (goal: <= 3 s, one sbatch call)")
    print("phases, in-process:")
    for what, seconds in phases(args.points, env).items():
        print(f"  {what:40s} {seconds:6.2f} s")
    if args.naive:
        per = naive(args.naive)
        print(f"naive: runs.prepare per point {per:.2f} s -> {per * args.points:.0f} s for {args.points} points")
    ok = seconds <= 5.0 * args.plan_points / 1000 and all(
        r["tasks"] == args.points and r["arrays"] == 1 and r["sbatch_calls"] == 1 for r in results)
    print("RESULT", "PASS" if ok and min(walls) <= 3.0 else "FAIL", f"{statistics.median(walls):.2f} s")


if __name__ == "__main__":
    main()
