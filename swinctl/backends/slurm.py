"""The SLURM backend: sbatch through submitit (job arrays for sweeps), sacct for state, scancel to cancel."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from swinctl.backends.base import Backend, BackendError, Observed, Submitted, register
from swinctl.job.files import State

if TYPE_CHECKING:
    import submitit

    from swinctl.job.spec import JobSpec

# SLURM's states -> the ledger's; anything that is not final for SLURM is treated as still active.
_FINAL = {
    "COMPLETED": State.COMPLETED, "FAILED": State.FAILED, "CANCELLED": State.CANCELLED, "TIMEOUT": State.TIMEOUT,
    "OUT_OF_MEMORY": State.FAILED, "NODE_FAIL": State.FAILED, "BOOT_FAIL": State.FAILED, "DEADLINE": State.TIMEOUT,
}
_ACTIVE = {"PENDING": State.PENDING, "RUNNING": State.RUNNING, "REQUEUED": State.REQUEUED,
           "REQUEUE_HOLD": State.REQUEUED, "REQUEUE_FED": State.REQUEUED, "PREEMPTED": State.REQUEUED,
           "CONFIGURING": State.PENDING, "COMPLETING": State.RUNNING, "SUSPENDED": State.RUNNING,
           "RESIZING": State.RUNNING}


def one_line(text: str) -> str:
    """A SLURM client's multi-line complaint as one line: 'sbatch: error: A; B; Unable to ...'."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    rest = [re.sub(r"^\w+: (error|fatal|warning): ", "", line) for line in lines[1:]]
    return "; ".join([lines[0], *rest])


def controller_error(timeout: float = 30) -> str | None:
    """What SLURM's client says when its controller cannot be asked (a bad SLURM_CONF, slurmctld down); None when
    it answers."""
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return "sinfo is not on PATH"
    except OSError as exc:
        return f"sinfo could not run: {exc.strerror or exc}"
    except subprocess.TimeoutExpired:
        return f"sinfo did not answer within {timeout:g} s"
    if done.returncode:
        return one_line(done.stderr) or f"sinfo exited with code {done.returncode}"
    return None


# What sacct said when `status` could not ask it (None: it answered): the CLI says it once, with the last known states.
unreachable: str | None = None


@contextlib.contextmanager
def _asking_sacct() -> Iterator[None]:
    """sacct's own stderr and submitit's 'Bypassing sacct error' warnings are kept off the terminal; what they said
    is kept in `unreachable`."""
    global unreachable
    import logging

    logger = logging.getLogger("submitit")
    level = logger.level
    logger.setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            logger.setLevel(level)
            captured.seek(0)
            said = captured.read().decode(errors="replace")
    if "error" in said:
        unreachable = one_line("\n".join(line for line in said.splitlines() if line.startswith("sacct")) or said)


_max_array_sizes: dict[str | None, int] = {}  # per SLURM_CONF: what each controller said


def max_array_size() -> int | None:
    """The controller's MaxArraySize (array indices run below it), from `scontrol show config`, asked once per
    SLURM_CONF; None where it cannot be asked (no SLURM here: a dry run on a laptop) or does not say, which is not
    remembered (a long-lived process may reach the controller later)."""
    conf = os.environ.get("SLURM_CONF")
    if conf in _max_array_sizes:
        return _max_array_sizes[conf]
    try:
        done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.M)
    if not match or int(match.group(1)) <= 0:
        return None
    _max_array_sizes[conf] = int(match.group(1))
    return _max_array_sizes[conf]


def slurm_reachable() -> bool:
    """sbatch is installed and a controller answers (an installed client with no cluster is not SLURM)."""
    return bool(shutil.which("sbatch")) and controller_error(timeout=5) is None  # (`auto` must decide quickly)


def _executor_class(preview: bool):
    import submitit

    class _PreviewSlurmExecutor(submitit.SlurmExecutor):
        """submitit's SLURM executor where no SLURM is installed: it writes the same sbatch script (for dry runs)
        and is never asked to submit. submitit refuses to build its executor without `srun` on PATH."""

        @classmethod
        def affinity(cls) -> int:
            return 1

    return _PreviewSlurmExecutor if preview else submitit.SlurmExecutor


def make_executor(spec: JobSpec, folder: Path, *, preview: bool = False) -> submitit.SlurmExecutor:
    """The submitit executor for `spec`'s resources, logging under `folder`; `preview=True` for one that only
    writes its sbatch script (dry runs)."""
    r = spec.resources
    executor = _executor_class(preview)(folder=folder, max_num_timeout=r.max_requeues)
    params: dict = dict(job_name=f"swinctl:{spec.run_id}", comment=f"swinctl run {spec.run_id}", time=r.timeout_min,
                        nodes=r.nodes, ntasks_per_node=r.tasks_per_node, cpus_per_task=r.cpus_per_task,
                        signal_delay_s=r.signal_delay_s, setup=list(r.setup))
    if r.gpus:
        params["gpus_per_node"] = r.gpus_per_node
    if r.mem_gb:
        params["mem"] = f"{r.mem_gb}GB"
    for key in ("partition", "account", "qos", "constraint", "exclude"):
        if getattr(r, key):
            params[key] = getattr(r, key)
    additional: dict[str, str | bool] = dict(r.sbatch_args)
    if spec.after is not None and spec.after.job_id:  # `run --test-after`: starts once training completed; SLURM
        additional["dependency"] = f"afterok:{spec.after.job_id}"  # drops it if training fails instead
        additional["kill_on_invalid_dep"] = "yes"
    if r.exclusive:
        additional["exclusive"] = True  # submitit writes a bare `#SBATCH --exclusive` for True
    if additional:
        params["additional_parameters"] = additional
    executor.update_parameters(**params)
    return executor


def _group_executor(specs: Sequence[JobSpec], job_name: str, folder: Path, parallel: int, preview: bool = False):
    executor = make_executor(specs[0], folder, preview=preview)
    if len(specs) > 1 or job_name != f"swinctl:{specs[0].run_id}":
        executor.update_parameters(job_name=job_name, comment=f"swinctl {job_name} ({len(specs)} points)",
                                   array_parallelism=parallel)
    return executor


def sbatch_text(executor: submitit.SlurmExecutor) -> str:
    """The sbatch script `executor` would submit, without submitting (submitit writes it; we only read it)."""
    return executor._make_submission_file_text(executor._submitit_command_str, uid="DRY-RUN")


def _task_ids(array_id: str, n: int) -> list[str]:
    return [array_id] if n == 1 else [f"{array_id}_{i}" for i in range(n)]


def _job_by_name(job_name: str, since: float) -> str | None:
    """The job SLURM holds under `job_name` (queued: squeue; ended: sacct), as its base/array job id."""
    found: set[str] = set()
    queued = subprocess.run(["squeue", "--noheader", "--name", job_name, "--format", "%F"], capture_output=True,
                            text=True)
    found.update(line.strip() for line in queued.stdout.split() if line.strip().isdigit())
    if not found:
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - 120))
        ended = subprocess.run(["sacct", "--noheader", "--parsable2", "-X", "--name", job_name, "-S", start,
                                "--format", "JobID"], capture_output=True, text=True)
        for line in ended.stdout.split():
            match = re.match(r"(\d+)", line)
            if match:
                found.add(match.group(1))
    if len(found) > 1:
        raise BackendError(f"SLURM holds {len(found)} jobs named {job_name} ({', '.join(sorted(found))}); "
                           "cancel the extra ones with scancel and run the command again")
    return found.pop() if found else None


_OBSERVED_FOR_S = 2.0  # how long one batched sacct answers for the jobs it asked about
_observed: dict[str, float] = {}  # job id -> when `observe` last asked sacct about it


def sacct_state(folder: Path, job_id: str) -> str:
    """The scheduler's word on a job (via submitit, which reads sacct), as a bare state name."""
    import submitit

    fresh = time.monotonic() - _observed.get(job_id, float("-inf")) < _OBSERVED_FOR_S
    job = submitit.SlurmJob(folder=folder, job_id=job_id)
    with _asking_sacct():
        raw = job.get_info(mode="cache" if fresh else "force").get("State") or "UNKNOWN"
    return raw.split()[0].rstrip("+")  # "CANCELLED by 0" -> CANCELLED


def _requeues(job_id: str) -> int | None:
    """How often SLURM requeued (or preempted) the job: its earlier incarnations in `sacct --duplicates`."""
    try:
        done = subprocess.run(["sacct", "--duplicates", "--allocations", "--noheader", "--parsable2", "-j", job_id,
                               "--format", "State"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode:
        return None
    states = [line.split()[0].rstrip("+") for line in done.stdout.splitlines() if line.strip()]
    return sum(state in ("REQUEUED", "PREEMPTED", "REQUEUE_HOLD") for state in states)


@register
class SlurmBackend(Backend):
    name = "slurm"
    title = "SLURM"
    sigterm_requeues = True  # SLURM preempts and requeues with SIGTERM; the job comes back under the same id
    group_noun = "job"

    @classmethod
    def available(cls) -> bool:
        return slurm_reachable()

    def require(self) -> None:
        if not shutil.which("sbatch"):
            raise BackendError("--executor slurm: `sbatch` is not on PATH; use a SLURM login node or "
                               "--executor local")
        problem = controller_error()  # before anything is written: a bad SLURM_CONF, a controller that is down
        if problem is not None:
            raise BackendError(f"--executor slurm: SLURM does not answer ({problem}); check SLURM_CONF and the "
                               "controller (sinfo), or use --executor local")

    def max_array_size(self) -> int | None:
        return max_array_size()

    def launcher(self, resources) -> str:
        if resources.world_size == 1:
            return "none"
        # GPU tasks: MMEngine reads SLURM_PROCID/NTASKS/NODELIST; CPU tasks join a gloo group (swinctl.job.cpu_dist)
        # from the env submitit's TorchDistributedEnvironment exports.
        return "slurm" if resources.gpus else "pytorch"

    def submit(self, specs, *, job_name, folder, parallel) -> Submitted:
        import submitit

        from swinctl.job.task import CodebaseJob

        executor = _group_executor(specs, job_name, folder, parallel)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr before raising it
                if len(specs) == 1:
                    jobs = [executor.submit(CodebaseJob(specs[0]))]
                else:
                    with executor.batch():
                        jobs = [executor.submit(CodebaseJob(spec)) for spec in specs]
        except submitit.core.utils.FailedJobError as exc:
            raise BackendError(one_line(str(exc)) or "sbatch failed without a message") from None
        ids = [str(job.job_id) for job in jobs]
        return Submitted(ids[0].split("_")[0], dict(zip((s.run_id for s in specs), ids, strict=True)))

    def preview(self, specs, *, job_name, folder, parallel) -> str:
        executor = _group_executor(specs, job_name, folder, parallel, preview=True)
        if len(specs) > 1:
            executor.parameters["map_count"] = len(specs)  # what `--array=0-N%P` is written from
        return sbatch_text(executor)

    def observe(self, records) -> None:
        import submitit

        ids = [r.job_id for r in records if r.job_id is not None]
        if not ids:
            return
        watcher = submitit.SlurmJob.watcher  # submitit's shared watcher: one sacct for every job registered with it
        for job_id in ids:
            watcher.register_job(job_id)
        with _asking_sacct():
            watcher.update()
        now = time.monotonic()
        _observed.update((job_id, now) for job_id in ids)

    def state(self, record, submission) -> Observed | None:
        if record.job_id is None:
            return None
        folder = Path(submission.folder) if submission is not None else record.run_dir / "submitit"
        state = sacct_state(folder, record.job_id)
        if state in _FINAL:
            final = _FINAL[state]
            if final == State.COMPLETED:  # finished without writing its result (e.g. killed at the very end)
                return Observed(State.FAILED, "SLURM reports COMPLETED but the job did not report metrics")
            if final == State.CANCELLED:  # its SIGTERM reads as a preemption to the job: SLURM counts the real ones
                return Observed(final, "SLURM state CANCELLED (scancel), not a preemption",
                                requeues=_requeues(record.job_id))
            return Observed(final, f"SLURM state {state}")
        return Observed(_ACTIVE[state]) if state in _ACTIVE else None

    def cancel(self, record, submission) -> str:
        if record.job_id is None:
            return "cancelled before submission"
        done = subprocess.run(["scancel", record.job_id], capture_output=True, text=True)
        if done.returncode:
            raise BackendError(f"scancel failed: {done.stderr.strip()}")
        return f"scancel {record.job_id}"

    def adopt(self, submission) -> Submitted | None:
        job_id = _job_by_name(submission.job_name, submission.created_at)
        if job_id is None:
            return None
        tasks = _task_ids(job_id, len(submission.run_ids))
        if not all((Path(submission.folder) / f"{task}_submitted.pkl").is_file() for task in tasks):
            # Killed inside submitit between sbatch and writing the tasks' inputs: those tasks cannot run.
            subprocess.run(["scancel", job_id], capture_output=True)
            return None
        return Submitted(job_id, dict(zip(submission.run_ids, tasks, strict=True)))

    def describe(self, submitted: Submitted, points: int) -> str:
        return f"SLURM job {submitted.job_id}" if points == 1 else f"SLURM job array {submitted.job_id}"

