"""Benchmark `swinctl status --all` over a ledger of 1,000 runs, 50 of them still active (real local jobs: process
groups that stay alive, each with the job-state files a job writes), in a fresh process each time.

    .venv/bin/python benchmarks/status.py [--runs 1000] [--active 50] [--repeats 3]

The first invocation folds every active run's job files into the ledger; the next ones are the steady state a user
sees. Ended runs are never looked at again (swinctl.runs.sync), so the time grows with the active runs, not the ledger.
Goal: at most 2 s for 1,000 runs.
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

BIN = Path(sys.executable).parent


def fill(root: Path, runs: int, active: int) -> list[subprocess.Popen]:
    """A ledger of `runs` runs; the last `active` are RUNNING local jobs (a sleeping process group each)."""
    from swinctl.job import files as jobstate
    from swinctl.runs.ledger import Ledger, RunRecord

    ledger = Ledger(root)
    sleepers = []
    for i in range(runs):
        run_id = f"upernet-swin-t-smoke-20261203-1200{i // 100 % 60:02d}-{i:04x}"
        run_dir = root / run_id
        (run_dir / "work_dir").mkdir(parents=True)
        running = i >= runs - active
        job_id = None
        if running:
            sleepers.append(subprocess.Popen(["sleep", "600"], start_new_session=True))
            job_id = str(sleepers[-1].pid)
            jobstate.update_state(run_dir, state="RUNNING", job_id=job_id, started_at=time.time())
            jobstate.add_event(run_dir, "running", f"job {job_id}")
        ledger.add(RunRecord(id=run_id, kind="train", recipe="upernet-swin-t", codebase="mmseg", overrides=[],
                             signature=f"{i:016x}", executor="local", job_id=job_id or str(100000 + i),
                             state="RUNNING" if running else "COMPLETED", smoke=True, run_dir=run_dir,
                             work_dir=run_dir / "work_dir", metrics={} if running else {"mIoU": 40.0 + i % 7}))
    return sleepers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--active", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swinctl-bench-status-") as tmp:
        root = Path(tmp) / "runs"
        sleepers = fill(root, args.runs, args.active)
        env = {**os.environ, "SWINCTL_RUNS": str(root), "COLUMNS": "80"}
        try:
            walls = []
            for _ in range(args.repeats + 1):
                start = time.perf_counter()
                done = subprocess.run([str(BIN / "swinctl"), "status", "--all"], env=env, capture_output=True,
                                      text=True)
                walls.append(time.perf_counter() - start)
                if done.returncode:
                    raise SystemExit(f"swinctl status failed:\n{done.stdout}\n{done.stderr}")
            running = done.stdout.count("RUNNING")
        finally:
            for sleeper in sleepers:
                sleeper.kill()
    steady = statistics.median(walls[1:])
    print(f"swinctl status --all, {args.runs} runs ({args.active} active local jobs), fresh process each:")
    print(f"  first (folds the job files): {walls[0]:.2f} s; then {', '.join(f'{w:.2f}' for w in walls[1:])} s")
    print(f"  {running} RUNNING rows shown")
    ok = steady <= 2.0 * args.runs / 1000 and running >= args.active
    print("RESULT", "PASS" if ok else "FAIL", f"{steady:.2f} s")


if __name__ == "__main__":
    main()
