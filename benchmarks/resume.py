"""Restart to training again, for a job preempted early or late in a long epoch: replaying the trained batches (the
old way: load and drop them) against starting the sampler after them (swinctl's loops now), side by side.

    nice -n 10 .venv/bin/python benchmarks/resume.py [--repeat 2] [--times 256]

Mask R-CNN smoke config (the recipe's `--smoke`, batches of 2) on the demo COCO training images, repeated by
MMEngine's RepeatDataset into an epoch of 16 x times / 2 batches (2,048 by default). One signal checkpoint is made
by the job config swinctl writes (SIGUSR2 at the first iteration); copies of it, relabelled as saved at 10% and
90% of the epoch (only the position differs: what is measured is getting back to training, not the weights), are
each resumed by the codebase's train script (`--resume`, as a requeued job does) with swinctl's EpochBasedTrainLoop
(sampler) or with the old loop (replay, reproduced below), which exits once it has trained one iteration.

Measured per restart: from starting the process to the end of its first trained iteration (`restart_s`), and the
part of it from the checkpoint being loaded to the first batch in hand (`skip_s`). Goal (issue 24): with the
sampler, t(90%) / t(10%) <= 1.2. Timings depend on what else runs on the machine: each restart records the
1-minute load average before it. Writes benchmarks/results/resume.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = Path(__file__).parent / "results"
GOAL = 1.2
PROBE_ENV = "SWINCTL_BENCH_RESUME_PROBE"  # a file: the child's timestamps, as JSON lines
SIGNAL_ENV = "SWINCTL_BENCH_RESUME_SIGNAL"  # "1": SIGUSR2 at the first iteration (to make the checkpoint)

if os.environ.get(PROBE_ENV):  # imported by the training process (custom_imports): the probe hook and old loop
    import signal

    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS, LOOPS

    from swinctl.models.preemption import EpochBasedTrainLoop, restore_pending_rng

    def _stamp(event: str) -> None:
        with open(os.environ[PROBE_ENV], "a") as probe:
            probe.write(json.dumps({"event": event, "t": time.time()}) + "\n")

    @HOOKS.register_module()
    class ResumeProbe(Hook):
        """Timestamps: checkpoint loaded, first batch in hand, first iteration trained (then the process ends)."""

        priority = 'HIGHEST'

        def after_load_checkpoint(self, runner, checkpoint) -> None:
            _stamp("loaded")

        def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
            _stamp("batch")
            if os.environ.get(SIGNAL_ENV) == "1":
                os.kill(os.getpid(), signal.SIGUSR2)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            _stamp("trained")
            if os.environ.get(SIGNAL_ENV) != "1":
                os._exit(0)  # one iteration is what is measured: skip the rest and the teardown

    @LOOPS.register_module()
    class ReplayEpochBasedTrainLoop(EpochBasedTrainLoop):
        """swinctl's epoch loop before issue 24: the trained batches of the epoch are loaded and dropped."""

        def run_epoch(self) -> None:
            self.runner.call_hook('before_train_epoch')
            self.runner.model.train()
            trained = self._iter - self._epoch * len(self.dataloader)
            if trained <= 0:
                restore_pending_rng()
            for idx, data_batch in enumerate(self.dataloader):
                if idx < trained:
                    if idx == trained - 1:
                        restore_pending_rng()
                    continue
                self.run_iter(idx, data_batch)
            self.runner.call_hook('after_train_epoch')
            self._epoch += 1


def _job(work: Path, times: int):
    """The smoke job's spec, its job config with the probe, the demo training set repeated `times` times."""
    from mmengine.config import Config

    from swinctl.job import task as jobs
    from swinctl.runs import lifecycle as runs

    prepared = runs.prepare("maskrcnn-swin-t", overrides=["seed=7", "schedule.log_interval=50"], smoke=True,
                            executor="local", wandb="disabled", root=work / "runs")
    spec = prepared.spec
    spec.run_dir.mkdir(parents=True)
    spec.config.write_text(prepared.config_text)
    cfg = Config.fromfile(str(jobs.write_job_config(spec)), import_custom_modules=False)
    cfg.custom_imports["imports"].append("resume")
    cfg.custom_hooks.append(dict(type="ResumeProbe"))
    cfg.train_dataloader.dataset = dict(type="RepeatDataset", times=times, dataset=cfg.train_dataloader.dataset)
    cfg.dump(str(spec.job_config))
    return spec, cfg.train_dataloader.batch_size


def _child(spec, work_dir: Path, resume: bool, loop: str | None, signal_first: bool) -> dict:
    """Run the training script; the probe's timestamps, relative to the start, and the load average before."""
    from swinctl.job import task as jobs

    spec = replace(spec, work_dir=work_dir)
    probe = work_dir.with_suffix(".probe")
    probe.unlink(missing_ok=True)
    command = spec.command(resume=resume)
    if loop:
        command += ["--cfg-options", f"train_cfg.type={loop}"]
    env = {**os.environ, jobs.SIGNAL_CHECKPOINT_ENV: "1", PROBE_ENV: str(probe), SIGNAL_ENV: "1" if signal_first
           else "", "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    load = os.getloadavg()[0]
    start = time.time()
    done = subprocess.run(command, env=env, cwd=spec.run_dir, capture_output=True, text=True)
    stamps = {}
    for line in probe.read_text().splitlines() if probe.is_file() else ():
        item = json.loads(line)
        stamps.setdefault(item["event"], item["t"] - start)
    if "trained" not in stamps:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode} before training:\n{done.stderr[-3000:]}")
    return {"exit": done.returncode, "load_1min": round(load, 2), **{k: round(v, 3) for k, v in stamps.items()}}


def _relabelled(seed: Path, work_dir: Path, at: int) -> None:
    """`seed`'s checkpoint in a work dir of its own, as if saved after iteration `at` of the first epoch."""
    import torch

    from swinctl.job.checkpoints import LAST, write_atomic
    from swinctl.models import safe_load

    checkpoint = safe_load.load(seed)
    checkpoint["meta"].update(epoch=0, iter=at)
    work_dir.mkdir(parents=True)
    torch.save(checkpoint, work_dir / f"iter_{at}.pth")
    write_atomic(work_dir / LAST, str(work_dir / f"iter_{at}.pth").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--times", type=int, default=256, help="RepeatDataset times (16 images each)")
    args = parser.parse_args()
    from swinctl.job.checkpoints import write_atomic

    work = Path(tempfile.mkdtemp(prefix="swinctl-bench-resume-"))
    spec, batch_size = _job(work, args.times)
    epoch = 16 * args.times // batch_size
    seed = spec.run_dir / "seed"
    made = _child(spec, seed, resume=False, loop=None, signal_first=True)
    assert made["exit"] == 75 and (seed / "iter_1.pth").is_file(), made
    points = {"10%": round(0.1 * epoch), "90%": round(0.9 * epoch)}
    ways = {"replay": "ReplayEpochBasedTrainLoop", "sampler": None}
    runs = []
    for i in range(args.repeat):  # interleaved, so background load hits every case alike
        for way, loop in ways.items():
            for point, at in points.items():
                work_dir = spec.run_dir / f"{way}-{point[:-1]}-{i}"
                _relabelled(seed / "iter_1.pth", work_dir, at)
                run = _child(spec, work_dir, resume=True, loop=loop, signal_first=False)
                run.update(way=way, point=point, resumed_at=at, restart_s=run["trained"],
                           skip_s=round(run["batch"] - run["loaded"], 3))
                runs.append(run)
                print(f"{way:8} at {point} (iteration {at} of {epoch}): {run['restart_s']:.1f} s to the first "
                      f"trained iteration, {run['skip_s']:.2f} s from the checkpoint to the first batch", flush=True)
    summary = {}
    for way in ways:
        median = {p: statistics.median(r["restart_s"] for r in runs if r["way"] == way and r["point"] == p)
                  for p in points}
        skip = {p: statistics.median(r["skip_s"] for r in runs if r["way"] == way and r["point"] == p)
                for p in points}
        summary[way] = {"restart_s": median, "skip_s": skip, "ratio_90_10": round(median["90%"] / median["10%"], 2)}
    ok = summary["sampler"]["ratio_90_10"] <= GOAL
    print(f"\nrestart -> first trained iteration, median of {args.repeat} (epoch of {epoch} batches, "
          f"{os.cpu_count()} CPUs)")
    print(f"{'way':8} {'at 10%':>9} {'at 90%':>9} {'t90/t10':>8}   {'skip 10%':>9} {'skip 90%':>9}")
    for way, s in summary.items():
        print(f"{way:8} {s['restart_s']['10%']:>7.1f} s {s['restart_s']['90%']:>7.1f} s {s['ratio_90_10']:>8.2f}   "
              f"{s['skip_s']['10%']:>7.2f} s {s['skip_s']['90%']:>7.2f} s")
    loads = [r["load_1min"] for r in runs]
    print(f"goal: sampler t90/t10 <= {GOAL}: {'ok' if ok else 'MISSED'} (1-min load {min(loads)}-{max(loads)})")
    result = {"recipe": "maskrcnn-swin-t --smoke", "epoch_batches": epoch, "batch_size": batch_size,
              "points": points, "repeat": args.repeat, "cpus": os.cpu_count(), "load_1min": [min(loads), max(loads)],
              "goal_ratio": GOAL, "summary": summary, "ok": ok, "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    write_atomic(RESULTS / "resume.json", (json.dumps(result, indent=2) + "\n").encode())
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
