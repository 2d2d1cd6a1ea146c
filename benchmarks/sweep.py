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

Large sweeps (no cluster needed), each in a fresh process through the CLI:

    .venv/bin/python benchmarks/sweep.py --dry-run-points 1000 10000 [--ledger-points 10000] [--tree DIR]

`--dry-run-points`: `swinctl sweep upernet-swin-t --smoke --grid optimizer.lr=... --grid optimizer.weight_decay=...
--dry-run` (two recipe fields: every point a recipe variant of its own), wall time and peak RSS (goals: 1,000 points
<= 3 s, 10,000 points <= 10 s and <= 500 MB). `--ledger-points N`: a ledger holding a sweep of N recorded points
(ended smoke runs with small logs), then `swinctl status SWEEP` and `swinctl report SWEEP` (goal: <= 2 s each for
10,000). `--tree DIR` runs the CLI from another checkout (e.g. a `git worktree` of the base commit) to measure it
side by side under the same load.
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def cli_run(args: list[str], env: dict, tree: Path | None) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, peak RSS in MB, result) of `swinctl ARGS` in a fresh process (from `tree` when given)."""
    env = {**env, "PYTHONWARNINGS": "ignore", "COLUMNS": "100"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        # (in the checkout's folder: `python -c` puts the working directory first on sys.path, before PYTHONPATH)
        proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=out, stderr=err, text=True, env=env,
                                cwd=tree or REPO)
        _, status, usage = os.wait4(proc.pid, 0)  # (the child's own peak RSS)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, usage.ru_maxrss / 1024, subprocess.CompletedProcess(args, proc.returncode, out.read(), err.read())


def recipe_grid(points: int) -> list[str]:
    side = max(d for d in range(1, int(points ** 0.5) + 1) if points % d == 0)  # 10,000 = 100 x 100
    lrs = ",".join(f"{(i + 1) * 1e-5:.2e}" for i in range(side))
    wds = ",".join(f"{(i + 1) * 1e-3:.3f}" for i in range(points // side))
    return ["--grid", f"optimizer.lr={lrs}", "--grid", f"optimizer.weight_decay={wds}"]


def dry_runs(sizes: list[int], tree: Path | None) -> list[tuple[int, float, float, int]]:
    """(points, seconds, peak MB, lines printed) of a CLI dry run of each size, smallest first."""
    out = []
    with tempfile.TemporaryDirectory(prefix="swinctl-bench-") as tmp:
        env = {**os.environ, "SWINCTL_RUNS": str(Path(tmp) / "runs")}
        for points in sorted(sizes):
            wall, rss, done = cli_run(["sweep", "upernet-swin-t", "--smoke", *recipe_grid(points), "--dry-run",
                                       "--executor", "local", "--wandb", "disabled", "--yes"], env, tree)
            if done.returncode:
                raise SystemExit(f"dry run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            out.append((points, wall, rss, done.stdout.count("\n")))
    return out


def sweep_ledger(root: Path, points: int, name: str = "big") -> None:
    """A ledger with a sweep of `points` recorded points, each served by an ended smoke run (95% COMPLETED with a
    mIoU, 5% FAILED) whose work dir holds a small MMEngine log, written in one transaction."""
    from swinctl import recipes
    from swinctl.runs.ledger import _COLUMNS, Ledger, RunRecord, SweepPoint, _to_row

    ledger = Ledger(root)
    recipe_text = recipes.dump_recipe(recipes.load_recipe("upernet-swin-t"))
    logs = REPO / "tests" / "fixtures" / "logs" / "mmengine" / "det_epoch"
    now = time.time()
    smoke = [{"kind": "smoke", "message": "smoke run: tiny model and schedule on generated demo data, no pretrained "
              "weights, learning rate not scaled: never a reproduction", "severity": "warning", "published": None,
              "actual": None}]  # what every smoke run records
    records, sweep_points = [], []
    for i in range(points):
        run_id = f"upernet-swin-t-smoke-20261206-{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}-{i:05x}"
        run_dir = root / run_id
        (run_dir / "work_dir").mkdir(parents=True)
        (run_dir / "recipe.yaml").write_text(recipe_text)
        if i % 10 == 0:  # (a tenth with logs to read: copying 10,000 would take minutes to set up)
            shutil.copytree(logs, run_dir / "work_dir", dirs_exist_ok=True)
        failed = i % 20 == 7
        overrides = [f"optimizer.lr={(i // 100 + 1) * 1e-5:.2e}", f"optimizer.weight_decay={(i % 100 + 1) * 1e-3:.3f}"]
        records.append(RunRecord(
            id=run_id, kind="train", recipe="upernet-swin-t", codebase="mmseg", overrides=overrides,
            signature=f"{i:016x}", executor="local", job_id=str(100000 + i), state="FAILED" if failed else "COMPLETED",
            smoke=True, run_dir=run_dir, work_dir=run_dir / "work_dir", sweep=name, created_at=now + i,
            started_at=now + i, finished_at=now + i + 60, elapsed_s=60.0,
            metrics={} if failed else {"mIoU": round(30 + (i * 7919 % 1000) / 50, 2)},
            error="Traceback: RuntimeError: boom" if failed else None, deviations=smoke))
        sweep_points.append(SweepPoint(i, overrides, f"{i:016x}", run_id))
    with ledger.transaction() as db:
        db.executemany(f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
                       [[_to_row(r)[c] for c in _COLUMNS] for r in records])
    ledger.register_sweep(name, "upernet-swin-t", {"recipe": "upernet-swin-t"}, sweep_points)


def looks(points: int, tree: Path | None, repeats: int) -> dict[str, list[float]]:
    """Seconds of `status SWEEP` and `report SWEEP` over a ledger of a `points`-point sweep (first call included)."""
    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="swinctl-bench-") as tmp:
        root = Path(tmp) / "runs"
        sweep_ledger(root, points)
        env = {**os.environ, "SWINCTL_RUNS": str(root)}
        for verb in ("status", "report"):
            for _ in range(repeats):
                wall, _, done = cli_run([verb, "big"], env, tree)
                if done.returncode:
                    raise SystemExit(f"{verb} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
                out.setdefault(f"{verb} SWEEP", []).append(wall)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive", type=int, default=3, help="points to time through runs.prepare (0: skip)")
    parser.add_argument("--plan-points", type=int, default=1000, help="points of the recipe-field planning run")
    parser.add_argument("--plan-only", action="store_true", help="only the planning measurement (no cluster)")
    parser.add_argument("--dry-run-points", type=int, nargs="*", help="CLI dry runs of these sizes (no cluster)")
    parser.add_argument("--ledger-points", type=int, help="status and report over a sweep of N recorded points")
    parser.add_argument("--tree", type=Path, help="run the CLI from this checkout (e.g. the base commit's worktree)")
    args = parser.parse_args()
    if args.dry_run_points or args.ledger_points:
        print(f"CLI from {args.tree or REPO}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        ok = True
        for points, wall, rss, lines in dry_runs(args.dry_run_points or [], args.tree):
            goal = (3.0, None) if points <= 1000 else (10.0 * points / 10000, 500)
            ok &= wall <= goal[0] and (goal[1] is None or rss <= goal[1])
            print(f"  sweep --dry-run, {points:,} recipe-variant points: {wall:.2f} s, peak {rss:.0f} MB, "
                  f"{lines} lines printed")
        if args.ledger_points:
            for what, walls in looks(args.ledger_points, args.tree, args.repeats).items():
                ok &= min(walls) <= 2.0 * args.ledger_points / 10000
                print(f"  {what} over {args.ledger_points:,} points: {', '.join(f'{w:.2f}' for w in walls)} s")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        print("RESULT", "PASS" if ok else "FAIL")
        return
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
