"""The job itself: what runs in every task of a job on a compute node (or here, for the local backend).

`CodebaseJob` is the submitit callable: in each task it runs the codebase's own train/test script (found through
mim, the script `mim train` runs) and writes its life into its run directory (:mod:`swinctl.job.files`) -- never
into the ledger, which only the submit host writes. Training gets `SignalCheckpointHook` (swinctl.models.preemption):
at the scheduler's warning (USR2) the job lets training run on until shortly before the time limit, then asks it to
save an iteration-exact checkpoint and exit, and requeues itself with `resume=True`; at SIGTERM (preemption)
training saves the same way.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import submitit

from swinctl.job import checkpoints as checkpoint_files
from swinctl.job import files as jobstate
from swinctl.job.checkpoints import SIGNAL_CHECKPOINT_ENV, SIGNAL_MARK
from swinctl.job.files import State
from swinctl.job.spec import After, JobSpec

ERROR_TAIL_LINES = 30
# MMEngine's loops -> swinctl's, which resume inside an epoch and restore random states (preemption.py)
_EXACT_LOOPS = {"EpochBasedTrainLoop": "swinctl.EpochBasedTrainLoop",
                "IterBasedTrainLoop": "swinctl.IterBasedTrainLoop"}


def write_job_config(spec: JobSpec) -> Path:
    """The rendered config with what execution adds, kept out of config.py (which is what the recipe trains, and
    what signatures and comparisons with the reference configs read): the signal checkpoint hook, and swinctl's
    exact-resume loops in place of MMEngine's. Written atomically (every task of a job writes the same file)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(spec.config), import_custom_modules=False)
    hooks = [dict(h) for h in cfg.get("custom_hooks") or []]
    if not any(h.get("type") == "swinctl.SignalCheckpointHook" for h in hooks):
        hooks.append(dict(type="swinctl.SignalCheckpointHook"))
    cfg.custom_hooks = hooks
    if spec.save_best:  # MMEngine picks the evaluator's first metric and its direction
        cfg.merge_from_dict(dict(default_hooks=dict(checkpoint=dict(save_best="auto"))))
    loop = dict(cfg.get("train_cfg") or {})
    kind = loop.get("type") or ("EpochBasedTrainLoop" if loop.get("by_epoch", True) else "IterBasedTrainLoop")
    if kind in _EXACT_LOOPS:
        loop.pop("by_epoch", None)
        loop["type"] = _EXACT_LOOPS[kind]
        cfg.train_cfg = loop
    # (the host too: tasks on two nodes of a shared file system may have the same pid)
    tmp = spec.job_config.with_name(f".{spec.job_config.name}.{socket.gethostname()}.{os.getpid()}.py")
    cfg.dump(str(tmp))
    os.replace(tmp, spec.job_config)
    return spec.job_config


def _has_checkpoint(work_dir: Path) -> bool:
    return (work_dir / checkpoint_files.LAST).is_file()


def _last_checkpoint(work_dir: Path) -> str:
    last = checkpoint_files.named(work_dir)
    return last.name if last is not None else "none"


def _saved(work_dir: Path) -> str:
    """What a requeued run resumes from, in words: the checkpoint the training saved at the signal, or the last one."""
    last = _last_checkpoint(work_dir)
    try:
        at_signal = (work_dir / SIGNAL_MARK).read_text().strip()
    except OSError:
        at_signal = ""
    if at_signal and at_signal == last:
        return f"checkpoint {last} saved at the signal"
    return f"training did not stop in time; resumes from {last}"


class NothingToTest(Exception):
    """A `--test-after` test whose training run did not complete, or left no such checkpoint."""


def wait_for_training(after: After) -> Path:
    """Block until the training run `after` names has ended (SLURM only starts the test then; a local test job
    waits here), then the checkpoint to evaluate; NothingToTest when training did not complete or saved none."""
    while True:
        state = jobstate.read_state(after.run_dir)
        if state is not None and state.state in jobstate.FINAL_STATES:
            break
        if jobstate.cancel_requested(after.run_dir):
            raise NothingToTest(f"not run: training run {after.run_dir.name} was cancelled")
        time.sleep(after.poll_s)
    if state.state != State.COMPLETED:
        raise NothingToTest(f"not run: training run {after.run_dir.name} ended {state.state}")
    if after.pick == "best":
        best = sorted(after.work_dir.glob("best_*.pth"), key=lambda p: p.stat().st_mtime)
        if not best:
            raise NothingToTest(f"not run: training run {after.run_dir.name} saved no best_*.pth in "
                                f"{after.work_dir}")
        return best[-1]
    last = checkpoint_files.named(after.work_dir)
    if last is None or not last.is_file():
        raise NothingToTest(f"not run: training run {after.run_dir.name} left no last checkpoint in {after.work_dir}")
    return last


def _die_with_parent() -> None:
    """Runs in the training child before exec: if the job task dies (SIGKILL, node loss), so does training."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _tee(stream, sink, tail: collections.deque) -> None:
    for line in iter(stream.readline, ""):
        sink.write(line)
        sink.flush()
        tail.append(line.rstrip("\n"))


def _slurm_end_time() -> float | None:
    """When SLURM ends this job (its time limit), from squeue; None where it cannot tell."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=10)
        return time.mktime(time.strptime(out.stdout.strip(), "%Y-%m-%dT%H:%M:%S"))
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


class CodebaseJob(submitit.helpers.Checkpointable):
    """The callable submitit runs in every task of a job."""

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self._proc: subprocess.Popen | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)

    def __getstate__(self) -> dict:  # the running process stays with this task
        return {"spec": self.spec}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["spec"])

    def __call__(self, resume: bool = False) -> dict[str, float]:
        spec = self.spec
        job_env = submitit.JobEnvironment()
        rank = job_env.global_rank
        env = dict(os.environ, **spec.env, **{SIGNAL_CHECKPOINT_ENV: "1"})
        if spec.launcher == "pytorch":
            dist = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            env.update(MASTER_ADDR=dist.master_addr, MASTER_PORT=str(dist.master_port), RANK=str(dist.rank),
                       WORLD_SIZE=str(dist.world_size), LOCAL_RANK=str(dist.local_rank))
        elif spec.launcher == "slurm":
            env["MASTER_PORT"] = str(_master_port(job_env.job_id))
        if job_env.num_tasks > 1:  # which node each task ran on, and where the group met, in each task's log
            print(_where(job_env, env), file=sys.stderr, flush=True)
        # A job that died mid-save may have left a temporary file, or (before atomic saves) a partial checkpoint
        # that last_checkpoint names: clean up and resume from the newest whole checkpoint (every task does this
        # before its training starts; the result is the same in each).
        recovered = checkpoint_files.recover(spec.work_dir) if spec.kind == "train" else []
        resume = resume or (spec.kind == "train" and _has_checkpoint(spec.work_dir))
        if spec.after is not None:
            try:
                spec = self.spec = replace(spec, checkpoint=wait_for_training(spec.after))
            except NothingToTest as exc:
                if rank == 0:
                    jobstate.update_state(spec.run_dir, state=State.CANCELLED, finished_at=time.time(), error=str(exc))
                    jobstate.add_event(spec.run_dir, "cancelled", str(exc))
                return {}
        if rank == 0:
            jobstate.reserve_space(spec.run_dir)  # to record its end even on a disk that fills up meanwhile
            previous = jobstate.read_state(spec.run_dir)
            restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
            if previous is not None and restarts > previous.requeues:
                # requeued while the last allocation was killed before it could say so (SLURM's KillWait is short)
                jobstate.update_state(spec.run_dir, state=State.REQUEUED, requeues=restarts)
                jobstate.add_event(spec.run_dir, "requeue", f"SLURM requeued the job: {_saved(spec.work_dir)}")
                previous = jobstate.read_state(spec.run_dir)
            jobstate.update_state(spec.run_dir, state=State.RUNNING, job_id=str(job_env.job_id),
                                  started_at=(previous and previous.started_at) or time.time(),
                                  host=socket.gethostname())
            nodes = f" ({job_env.num_nodes} nodes: {os.environ.get('SLURM_JOB_NODELIST')})" \
                if job_env.num_nodes > 1 else ""
            jobstate.add_event(spec.run_dir, "running", f"job {job_env.job_id} on {socket.gethostname()}{nodes}")
            if spec.after is not None:
                jobstate.add_event(spec.run_dir, "test", f"the {spec.after.pick} checkpoint of "
                                                         f"{spec.after.run_dir.name}: {spec.checkpoint}")
            for what in recovered:
                jobstate.add_event(spec.run_dir, "checkpoint", what)
            if resume:
                jobstate.add_event(spec.run_dir, "resume", f"from {_last_checkpoint(spec.work_dir)}")
        if spec.kind == "train":
            write_job_config(spec)
        self._proc = subprocess.Popen(spec.command(resume=resume), env=env, cwd=spec.run_dir, text=True,
                                      stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        reader = threading.Thread(target=_tee, args=(self._proc.stderr, sys.stderr, self._tail), daemon=True)
        reader.start()
        while (code := self._proc.poll()) is None:  # (a poll loop: the USR2 handler may wait on it too)
            time.sleep(0.5)
        reader.join(timeout=5)
        if code == jobstate.EXIT_CHECKPOINTED or (code == -signal.SIGTERM and spec.sigterm_requeues):
            # Stopped at SIGTERM (SLURM's preemption or requeue; submitit's checkpoint() only sees USR2): the job
            # comes back under the same id and resumes from the checkpoint saved at the signal.
            if rank == 0:
                self._record_requeue("SIGTERM")
            raise RuntimeError("training was stopped by SIGTERM (preemption or requeue)")
        if rank != 0:
            if code:
                raise RuntimeError(f"task {rank}: {spec.kind} script exited with code {code}")
            return {}
        return self._finish(code)

    def _record_requeue(self, why: str) -> None:
        spec = self.spec
        previous = jobstate.read_state(spec.run_dir) or jobstate.JobState()
        if previous.state == State.REQUEUED:
            return  # (USR2 was handled already; the SIGTERM of the requeue itself follows)
        jobstate.update_state(spec.run_dir, state=State.REQUEUED, requeues=previous.requeues + 1)
        jobstate.add_event(spec.run_dir, "requeue", f"{why}: {_saved(spec.work_dir)}")

    def _finish(self, code: int) -> dict[str, float]:
        from swinctl import results

        spec = self.spec
        started = (jobstate.read_state(spec.run_dir) or jobstate.JobState()).started_at
        now = time.time()
        elapsed = now - (started or now)
        if code != 0:
            reason = f"{spec.kind} script exited with code {code}"
            if code == jobstate.EXIT_CHECKPOINTED:
                reason += f" (stopped at a signal after saving {_last_checkpoint(spec.work_dir)})"
            tail = "\n".join(self._tail)
            cause = jobstate.no_space_cause(spec.work_dir, tail, look=False)
            if cause:  # the training's own output filled the disk
                reason += f": {cause}"
            self._record_end("failed", reason, state=State.FAILED, finished_at=now, elapsed_s=elapsed,
                             error=jobstate.cap(reason + "\n" + tail))
            raise RuntimeError(reason + ":\n" + tail)
        # (a NaN or infinite metric is not a result: the host would not fold a state file that held one)
        metrics = jobstate.finite_metrics(results.read_work_dir(spec.work_dir).final_metrics())
        self._record_end("completed", "", state=State.COMPLETED, finished_at=now, elapsed_s=elapsed, metrics=metrics)
        return metrics

    def _record_end(self, event: str, detail: str, **changes) -> None:
        """The job's last state and event; where even the state cannot be written, its cause goes to stderr (the
        submit host reads the log's tail) and the job fails with it."""
        run_dir = self.spec.run_dir
        try:
            jobstate.update_state(run_dir, **changes)
        except jobstate.NoSpaceError as exc:
            print(f"swinctl job: {exc}", file=sys.stderr, flush=True)
            raise RuntimeError(f"the job could not record its end ({changes['state']}): {exc}") from None
        try:
            jobstate.add_event(run_dir, event, detail)
        except jobstate.NoSpaceError:
            pass  # (the state, written, is what the host folds)
        jobstate.release_space(run_dir)

    def checkpoint(self, resume: bool = False) -> submitit.helpers.DelayedSubmission | None:
        """Called by submitit (in the rank-0 task) at USR2, SLURM's warning before the time limit, which may come a
        minute early: training runs on until shortly before the limit, then saves at the end of its iteration and
        exits; the job is requeued and resumes from that checkpoint."""
        spec, proc = self.spec, self._proc
        delay = spec.resources.signal_delay_s
        margin = max(5, min(60, delay // 2))  # to finish the iteration, save and requeue
        end = _slurm_end_time() or time.time() + delay
        while proc is not None and proc.poll() is None and time.time() < end - margin:
            time.sleep(0.5)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGUSR2)
            deadline = time.time() + margin
            while proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
        if proc is not None and proc.poll() == 0:  # finished while it ran on: nothing to requeue
            self._finish(0)
            return None
        self._record_requeue("USR2 before the time limit")
        return submitit.helpers.DelayedSubmission(CodebaseJob(spec), resume=True)


def _where(job_env: submitit.JobEnvironment, env: dict[str, str]) -> str:
    """'swinctl job: task 1 of 2 on node gpu-2 (2 of 2); rendezvous gpu-1:20012', the node as SLURM names it."""
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    where = (f"swinctl job: task {job_env.global_rank} of {job_env.num_tasks} on node {node} "
             f"({job_env.node + 1} of {job_env.num_nodes})")
    if env.get("MASTER_ADDR"):  # (GPU tasks: MMEngine finds it from the node list itself)
        where += f"; rendezvous {env['MASTER_ADDR']}:{env.get('MASTER_PORT')}"
    return where


def _master_port(job_id: str | int) -> int:
    """A rendezvous port unique per job (two jobs on one node must not collide)."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return 20000 + int(digits) % 20000
