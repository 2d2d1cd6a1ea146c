"""What a job is: its resources, the training it may wait for, and the spec a backend pickles for the node.

A `JobSpec` is everything a job needs, picklable and free of recipe logic; the submit host builds it
(swinctl.runs.lifecycle) and the node runs it (swinctl.job.task).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from swinctl.errors import UserError

_PACKAGES = {"mmdet": "mmdet", "mmseg": "mmsegmentation"}


class JobError(UserError):
    """A job could not be prepared or submitted; the message says why."""


@dataclass(frozen=True)
class Resources:
    """What a job asks of the scheduler (a snapshot of the recipe's resources after flags)."""

    gpus: int = 0
    gpus_per_node: int = 0
    nodes: int = 1
    cpu_tasks_per_node: int = 1  # CPU-only jobs: processes per node, joined in a gloo process group
    cpus_per_task: int = 2
    mem_gb: int | None = None
    timeout_min: int = 60
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    exclusive: bool = False
    sbatch_args: dict[str, str] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    max_requeues: int = 3

    @property
    def tasks_per_node(self) -> int:
        """One task per GPU; a CPU job runs `cpu_tasks_per_node` tasks."""
        return max(self.gpus_per_node, 1) if self.gpus else self.cpu_tasks_per_node

    @property
    def world_size(self) -> int:
        return self.tasks_per_node * self.nodes

    @property
    def signal_delay_s(self) -> int:
        """How long before the time limit SLURM sends the checkpoint signal (USR2).

        Two minutes leaves time to stop cleanly. slurmctld acts on limits every 30 s and sends the signal up to one
        period early (measured here: `--time=1 --signal=USR2@30` signals at the first check, 10-20 s into the job),
        so a short limit gets a sixth of itself, at least 10 s: the job still runs most of its time each round.
        """
        return min(120, max(10, self.timeout_min * 10))


@dataclass(frozen=True)
class After:
    """A test that evaluates a training run's checkpoint once that run has ended (`run --test-after`)."""

    run_dir: Path  # the training run's
    work_dir: Path
    pick: Literal["last", "best"]  # its last checkpoint, or the best one by validation (CheckpointHook save_best)
    job_id: str | None = None  # the training job (SLURM submits the test with --dependency=afterok:<job_id>)
    poll_s: float = 2.0


@dataclass(frozen=True)
class JobSpec:
    run_id: str
    kind: Literal["train", "test"]
    codebase: str
    runs_root: Path
    run_dir: Path
    config: Path
    work_dir: Path
    resources: Resources
    executor: str  # the backend's name (swinctl.backends)
    launcher: str = "none"  # MMEngine's --launcher, chosen by the backend
    sigterm_requeues: bool = False  # the backend's SIGTERM means "preempted, back soon"
    checkpoint: Path | None = None  # test jobs: the weights to evaluate
    after: After | None = None  # test jobs: or the checkpoint a training run leaves (`checkpoint` is found then)
    save_best: bool = False  # training keeps its best checkpoint too (a `--test-after best` follows it)
    env: dict[str, str] = field(default_factory=dict)
    tta: bool = False  # test jobs: the codebase's test-time augmentation (its test script's --tta)
    cfg_options: tuple[str, ...] = ()  # key=value config overrides passed to the script (--cfg-options)

    @property
    def submitit_dir(self) -> Path:
        return self.run_dir / "submitit"

    @property
    def job_config(self) -> Path:
        """What training runs: the rendered config plus the job's own hook and loop (`write_job_config`)."""
        return self.run_dir / "job_config.py"

    @property
    def cpu_distributed(self) -> bool:
        return self.resources.gpus == 0 and self.resources.world_size > 1

    def command(self, resume: bool = False) -> list[str]:
        script = codebase_script(self.codebase, self.kind)
        # MMEngine's process-group set-up is CUDA-only; CPU tasks start through swinctl.job.cpu_dist, which joins a gloo
        # group first and then runs the same script.
        config = self.job_config if self.kind == "train" else self.config
        args = [sys.executable, *(["-m", "swinctl.job.cpu_dist"] if self.cpu_distributed else []), str(script),
                str(config)]
        if self.kind == "test":
            args.append(str(self.checkpoint))
        args += ["--work-dir", str(self.work_dir), "--launcher", self.launcher]
        if resume and self.kind == "train":
            args.append("--resume")  # mmdet/mmseg: resume from the latest checkpoint in the work dir
        if self.tta and self.kind == "test":
            args.append("--tta")  # the script swaps in the config's tta_model and tta_pipeline itself
        options = list(self.cfg_options)
        if self.cpu_distributed:
            options += ["model_wrapper_cfg.type=swinctl.CPUDistributedDataParallel", "env_cfg.dist_cfg.backend=gloo"]
        if options:  # one --cfg-options: a second one would replace the first (MMEngine's DictAction)
            args += ["--cfg-options", *options]
        return args


def codebase_script(codebase: str, kind: str) -> Path:
    """The train/test script that `mim train|test CODEBASE` runs: in the installed package's .mim/tools (found
    where Python imports the package from, as mim's `get_installed_path` does, without mim's 2 s of imports)."""
    import importlib.util

    package = _PACKAGES.get(codebase)
    if package is None:
        raise JobError(f"unknown codebase '{codebase}': choose one of {', '.join(_PACKAGES)}")
    found = importlib.util.find_spec(codebase)  # the module: mmdet, mmseg
    if found is None or not found.submodule_search_locations:
        raise JobError(f"{package} is not installed: `mim install {package}`")
    root = Path(found.submodule_search_locations[0])
    for candidate in (root / ".mim" / "tools" / f"{kind}.py", root / "tools" / f"{kind}.py"):
        if candidate.is_file():
            return candidate
    raise JobError(f"{package} has no {kind} script under {root}/.mim/tools: reinstall it with `mim install {package}`")
