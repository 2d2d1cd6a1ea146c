"""Job specs and their execution through submitit, locally or on SLURM.

A `JobSpec` is everything a job needs, picklable and free of recipe logic. `CodebaseJob` is the submitit callable: in
each task it runs the codebase's own train/test script (found through mim, the script `mim train` runs), records its
life in the ledger from inside the job (so the record holds when the submitting CLI is gone), and on preemption or
timeout asks submitit to requeue it with `resume=True`, so MMEngine resumes from the work dir's last checkpoint.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import submitit

from swinctl.errors import UserError
from swinctl.ledger import Ledger

ExecutorKind = Literal["local", "slurm"]
_PACKAGES = {"mmdet": "mmdet", "mmseg": "mmsegmentation"}
ERROR_TAIL_LINES = 30


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
class JobSpec:
    run_id: str
    kind: Literal["train", "test"]
    codebase: str
    runs_root: Path
    run_dir: Path
    config: Path
    work_dir: Path
    resources: Resources
    executor: ExecutorKind
    checkpoint: Path | None = None  # test jobs: the weights to evaluate
    env: dict[str, str] = field(default_factory=dict)

    @property
    def submitit_dir(self) -> Path:
        return self.run_dir / "submitit"

    def launcher(self) -> str:
        if self.resources.world_size == 1:
            return "none"
        # Several tasks: MMEngine reads SLURM_PROCID/NTASKS/NODELIST on SLURM, and the env that
        # submitit's TorchDistributedEnvironment exports when run locally or on CPUs.
        return "slurm" if self.executor == "slurm" and self.resources.gpus else "pytorch"

    @property
    def cpu_distributed(self) -> bool:
        return self.resources.gpus == 0 and self.resources.world_size > 1

    def command(self, resume: bool = False) -> list[str]:
        script = codebase_script(self.codebase, self.kind)
        # MMEngine's process-group set-up is CUDA-only; CPU tasks start through swinctl.cpu_dist, which joins a gloo
        # group first and then runs the same script.
        args = [sys.executable, *(["-m", "swinctl.cpu_dist"] if self.cpu_distributed else []), str(script),
                str(self.config)]
        if self.kind == "test":
            args.append(str(self.checkpoint))
        args += ["--work-dir", str(self.work_dir), "--launcher", self.launcher()]
        if resume and self.kind == "train":
            args.append("--resume")  # mmdet/mmseg: resume from the latest checkpoint in the work dir
        if self.cpu_distributed:
            args += ["--cfg-options", "model_wrapper_cfg.type=swinctl.CPUDistributedDataParallel",
                     "env_cfg.dist_cfg.backend=gloo"]
        return args


def codebase_script(codebase: str, kind: str) -> Path:
    """The train/test script that `mim train|test CODEBASE` runs, found the way mim finds it."""
    from mim.utils import get_installed_path

    package = _PACKAGES.get(codebase)
    if package is None:
        raise JobError(f"unknown codebase '{codebase}': choose one of {', '.join(_PACKAGES)}")
    root = Path(get_installed_path(package))
    for candidate in (root / ".mim" / "tools" / f"{kind}.py", root / "tools" / f"{kind}.py"):
        if candidate.is_file():
            return candidate
    raise JobError(f"{package} has no {kind} script under {root}/.mim/tools: reinstall it with `mim install {package}`")


def _has_checkpoint(work_dir: Path) -> bool:
    return (work_dir / "last_checkpoint").is_file()


def _die_with_parent() -> None:
    """Runs in the training child before exec: if the job task dies (SIGKILL, node loss), so does training."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _tee(stream, sink, tail: collections.deque) -> None:
    for line in iter(stream.readline, ""):
        sink.write(line)
        sink.flush()
        tail.append(line.rstrip("\n"))


class CodebaseJob(submitit.helpers.Checkpointable):
    """The callable submitit runs in every task of a job."""

    def __init__(self, spec: JobSpec):
        self.spec = spec

    def __call__(self, resume: bool = False) -> dict[str, float]:
        spec = self.spec
        job_env = submitit.JobEnvironment()
        rank = job_env.global_rank
        ledger = Ledger(spec.runs_root)
        env = dict(os.environ, **spec.env)
        if spec.launcher() == "pytorch":
            dist = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            env.update(MASTER_ADDR=dist.master_addr, MASTER_PORT=str(dist.master_port), RANK=str(dist.rank),
                       WORLD_SIZE=str(dist.world_size), LOCAL_RANK=str(dist.local_rank))
        elif spec.launcher() == "slurm":
            env["MASTER_PORT"] = str(_master_port(job_env.job_id))
        resume = resume or (spec.kind == "train" and _has_checkpoint(spec.work_dir))
        started = time.time()
        if rank == 0:
            record = ledger.get(spec.run_id)
            ledger.update(spec.run_id, event="state", state="RUNNING", job_id=str(job_env.job_id),
                          started_at=record.started_at or started)
            if resume:
                ledger.add_event(spec.run_id, "resume", f"from {spec.work_dir / 'last_checkpoint'}")
        tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
        proc = subprocess.Popen(spec.command(resume=resume), env=env, cwd=spec.run_dir, text=True,
                                stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        reader = threading.Thread(target=_tee, args=(proc.stderr, sys.stderr, tail), daemon=True)
        reader.start()
        code = proc.wait()
        reader.join(timeout=5)
        if code == -signal.SIGTERM and spec.executor == "slurm":
            # SLURM preempts or requeues with SIGTERM (submitit's checkpoint() only sees USR2): the job comes back
            # under the same id and resumes from the last checkpoint, so this is a requeue, not a failure.
            if rank == 0:
                ledger.count_requeue(spec.run_id)
            raise RuntimeError("training was stopped by SIGTERM (preemption or requeue)")
        if rank != 0:
            if code:
                raise RuntimeError(f"task {rank}: {spec.kind} script exited with code {code}")
            return {}
        return self._finish(ledger, code, tail)

    def _finish(self, ledger: Ledger, code: int, tail: collections.deque) -> dict[str, float]:
        from swinctl import results

        spec = self.spec
        record = ledger.get(spec.run_id)
        now = time.time()
        elapsed = now - (record.started_at or now)
        if code != 0:
            reason = f"{spec.kind} script exited with code {code}"
            ledger.update(spec.run_id, event="state", state="FAILED", finished_at=now, elapsed_s=elapsed,
                          error=reason + "\n" + "\n".join(tail))
            raise RuntimeError(reason + ":\n" + "\n".join(tail))
        metrics = results.read_work_dir(spec.work_dir).final_metrics()
        ledger.update(spec.run_id, event="state", state="COMPLETED", finished_at=now, elapsed_s=elapsed,
                      metrics=metrics)
        return metrics

    def checkpoint(self, resume: bool = False) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on preemption/timeout: requeue, resuming from the last checkpoint."""
        Ledger(self.spec.runs_root).count_requeue(self.spec.run_id)
        return submitit.helpers.DelayedSubmission(CodebaseJob(self.spec), resume=True)


def _master_port(job_id: str | int) -> int:
    """A rendezvous port unique per job (two jobs on one node must not collide)."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return 20000 + int(digits) % 20000


class _PreviewSlurmExecutor(submitit.SlurmExecutor):
    """submitit's SLURM executor where no SLURM is installed: it writes the same sbatch script (for dry runs) and is
    never asked to submit. submitit refuses to build its executor without `srun` on PATH."""

    @classmethod
    def affinity(cls) -> int:
        return 1


def make_executor(spec: JobSpec, *, preview: bool = False) -> submitit.Executor:
    """The submitit executor for `spec`; `preview=True` for one that only writes its sbatch script (dry runs)."""
    r = spec.resources
    if spec.executor == "local":
        executor = submitit.LocalExecutor(folder=spec.submitit_dir, max_num_timeout=r.max_requeues)
        executor.update_parameters(timeout_min=r.timeout_min, gpus_per_node=r.gpus_per_node if r.gpus else 0,
                                   tasks_per_node=r.tasks_per_node, setup=list(r.setup))
        return executor
    slurm_executor = _PreviewSlurmExecutor if preview else submitit.SlurmExecutor
    executor = slurm_executor(folder=spec.submitit_dir, max_num_timeout=r.max_requeues)
    params: dict = dict(
        job_name=f"swinctl:{spec.run_id}",
        comment=f"swinctl run {spec.run_id}",
        time=r.timeout_min,
        nodes=r.nodes,
        ntasks_per_node=r.tasks_per_node,
        cpus_per_task=r.cpus_per_task,
        signal_delay_s=r.signal_delay_s,
        setup=list(r.setup),
    )
    if r.gpus:
        params["gpus_per_node"] = r.gpus_per_node
    if r.mem_gb:
        params["mem"] = f"{r.mem_gb}GB"
    for key in ("partition", "account", "qos", "constraint", "exclude"):
        if getattr(r, key):
            params[key] = getattr(r, key)
    additional: dict[str, str | bool] = dict(r.sbatch_args)
    if r.exclusive:
        additional["exclusive"] = True  # submitit writes a bare `#SBATCH --exclusive` for True
    if additional:
        params["additional_parameters"] = additional
    executor.update_parameters(**params)
    return executor


def submit(spec: JobSpec) -> submitit.Job:
    """Submit `spec` and record its job id; the ledger row must exist already."""
    executor = make_executor(spec)
    job = executor.submit(CodebaseJob(spec))
    Ledger(spec.runs_root).update(spec.run_id, event="submitted", job_id=str(job.job_id))
    return job


def sbatch_preview(spec: JobSpec) -> str:
    """The sbatch script submitit would write for `spec` (for --dry-run)."""
    return sbatch_text(make_executor(spec, preview=True))


def sbatch_text(executor: submitit.SlurmExecutor) -> str:
    """The sbatch script `executor` would submit, without submitting (submitit writes it; we only read it)."""
    return executor._make_submission_file_text(executor._submitit_command_str, uid="DRY-RUN")
